//! The accept-and-fork loop.
//!
//! Runs in: parent only. One `ppoll` waits on every listener and on the
//! signal pipe together, so a signal is never lost and the parent never
//! blocks anywhere else: not in `accept` (the listeners are non-blocking)
//! and not in `waitpid` (children are reaped with `WNOHANG` after
//! `SIGCHLD` wakes the loop). For each connection the parent has the
//! spawner fork a child (`spawner`: the child is the parent's, born in the
//! sandbox); the child serves it (`child::serve`, which never returns) and
//! the parent closes its copy of the socket and records the child's pid
//! once the spawner answers. A wake-up's whole batch of connections goes
//! to the spawner before the parent reads the answers (`settle`), so the
//! spawner forks while the parent accepts, and neither waits for the
//! scheduler to run the other once per connection; the parent waits at
//! most a second for an answer: the spawner does nothing else.
//! The parent's own `503` (when it will not fork) is in `refuse`; `SIGHUP`
//! and `SIGUSR1` are in `reload`; the certificate files' watch in `watch`;
//! asking idle keep-alive children to close under pressure in `give_back`.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags};
use nix::sys::prctl::set_dumpable;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpid, pipe2};

use crate::child::Inherited;
use crate::config::{Config, Overrides};
use crate::conn::Buffers;
use crate::daemon::PidFile;
use crate::error::StartupError;
use crate::generation::Generation;
use crate::http::request;
use crate::listener::{self, Listener, Wire};
use crate::log::{self as logging, AccessLog};
use crate::notify::Notifier;
use crate::scoreboard::{Counter, Scoreboard, SlotId};
use crate::signals::{self, GIVE_BACK_SIGNAL, Signals};
use crate::spawner::{SpawnError, Spawner};
use crate::sys;
use crate::tls::keys::KeyProcesses;

mod children;
mod give_back;
mod keys;
mod refuse;
mod reload;
mod watch;

/// Connections accepted from one listener per wake-up before the others
/// get a turn.
const ACCEPT_BATCH: usize = 64;
/// Pause after `accept` fails for lack of descriptors or memory: long
/// enough for children to exit and free some, short enough to recover fast.
const RESOURCE_BACKOFF: Duration = Duration::from_secs(1);
/// Pause after `fork` fails (`EAGAIN`: process limit or memory).
const FORK_BACKOFF: Duration = Duration::from_millis(250);
/// At `max_children` with every child busy, how often the parent looks at
/// the scoreboard again for a child gone idle that it could ask to close
/// (a child turning idle sends the parent nothing).
const IDLE_RECHECK: Duration = Duration::from_millis(25);
/// How often "max_children reached" may be logged at most.
const CAP_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// The signals the parent handles: children exiting, graceful stop (TERM,
/// INT), fast stop (QUIT), reload (HUP), reopen logs (USR1).
pub const SIGNALS: [Signal; 6] =
    [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGHUP, Signal::SIGUSR1];

/// Listeners watched from an array on the stack; more spill to the heap.
const POLL_INLINE: usize = 8;

/// The listeners `wait` found ready: a bit for each of the first
/// `Ready::BITS`; any beyond those are always tried (a non-blocking
/// `accept` with nothing queued says `EAGAIN`), so none is ever starved.
#[derive(Clone, Copy, Debug, Default)]
struct Ready {
    bits: u128,
    /// How many listeners were watched (none while not accepting).
    count: usize,
}

impl Ready {
    const BITS: usize = u128::BITS as usize;

    /// The indexes of the listeners to accept from, in order.
    fn indexes(self) -> impl Iterator<Item = usize> {
        (0..self.count).filter(move |&i| i >= Ready::BITS || (self.bits >> i) & 1 == 1)
    }
}

/// Everything the parent starts the accept loop with.
#[derive(Debug)]
pub struct Setup {
    /// The configuration, its sites (their roots opened and probed before
    /// anything was bound, so that a root the server cannot serve fails
    /// first) and how children give up root.
    pub generation: Generation,
    /// The command-line values, re-applied on every reload.
    pub overrides: Overrides,
    /// Bound (or inherited) listening sockets.
    pub listeners: Vec<Listener>,
    /// Whether the listeners came from systemd (a reload then keeps them).
    pub socket_activated: bool,
    /// The opened access log.
    pub access_log: AccessLog,
    /// systemd's notification socket, if started by systemd.
    pub notifier: Option<Notifier>,
    /// The handlers for `SIGNALS`, installed as early as possible so that
    /// no signal can take its default action once the server has said a word.
    pub signals: Signals,
    /// The locked pid file, removed when the server ends.
    pub pid_file: Option<PidFile>,
    /// The buffers every child takes over, made first thing (see
    /// `Buffers::new`).
    pub buffers: Buffers,
}

/// The parent's state: listeners, signals, and the table of live children.
#[derive(Debug)]
pub struct Server {
    /// The generation new children are forked with.
    generation: Generation,
    overrides: Overrides,
    listeners: Vec<Listener>,
    socket_activated: bool,
    signals: Signals,
    access_log: AccessLog,
    notifier: Option<Notifier>,
    /// This process's pid, for children to check that it is still theirs.
    pid: Pid,
    /// Children hold the read end; when the parent closes the write end
    /// (at stop, or by dying), every child sees a hang-up and drains.
    lifeline_read: OwnedFd,
    lifeline_write: Option<OwnedFd>,
    /// Live children and the address each serves, and the count per
    /// address: the parent's only per-connection state.
    children: children::Children,
    /// Connections answered `503` by the parent, shut down for writing, and
    /// when each is closed, oldest first.
    refused: VecDeque<(TcpStream, Instant)>,
    /// The locked pid file: held, never read, for the server's life; dropping
    /// it (when the server ends) removes the file if it is still ours.
    _pid_file: Option<PidFile>,
    /// Not accepting until then (after a resource error).
    paused_until: Option<Instant>,
    /// When reaching the cap was last logged.
    cap_logged: Option<Instant>,
    /// The certificate and key files watched for a renewal.
    watch: watch::Watch,
    /// The buffers every child takes over (see `Buffers`); the parent
    /// never uses them.
    buffers: Buffers,
    /// The key processes, which hold the private keys and sign for
    /// HTTPS children (`tls::keys`).
    keys: KeyProcesses,
    /// What the children are doing, and the counters.
    scoreboard: Scoreboard,
    /// Children asked to give their idle connection back that have not
    /// exited yet.
    asked: usize,
    /// Whether the parent stopped accepting at `max_children` (counted
    /// once each time it does).
    stalled: bool,
    /// When to look at the scoreboard again for an idle child, while
    /// stalled at `max_children` (see `IDLE_RECHECK`).
    idle_recheck: Option<Instant>,
    /// The process that forks the children (`spawner`), while it runs.
    spawner: Option<Spawner>,
    /// Whether what children inherit changed since the spawner was
    /// forked (a reload, reopened logs, rotated ticket keys): a new one
    /// must be started before the next child.
    spawner_stale: bool,
    /// Not before then is a spawner started again (after a failed start
    /// or a death).
    spawner_retry_at: Option<Instant>,
    /// Connections passed to the spawner whose child's pid has not come
    /// back yet, oldest first (see `settle`). Empty between batches.
    in_flight: Vec<InFlight>,
}

/// A connection passed to the spawner, kept until its answer: recorded
/// as a child then, or refused if the fork failed.
#[derive(Debug)]
struct InFlight {
    stream: TcpStream,
    peer: SocketAddr,
    wire: Wire,
    slot: Option<SlotId>,
}

impl Server {
    /// Starts the key processes with the generation's private keys (before
    /// any child, and before the first accept), and creates the lifeline.
    /// Call with everything the children inherit already open.
    pub fn new(setup: Setup) -> Result<Server, StartupError> {
        let mut generation = setup.generation;
        // Stamped first, as near as can be to the files' reading: a file
        // changed from then on is seen by the first look.
        let watch = watch::Watch::new(&generation);
        let mut keys = KeyProcesses::new();
        keys::hand_over(&mut keys, &mut generation)?;
        let (lifeline_read, lifeline_write) = pipe2(OFlag::O_CLOEXEC).map_err(StartupError::Lifeline)?;
        let scoreboard =
            Scoreboard::new(generation.config.limits.max_children).map_err(StartupError::Scoreboard)?;
        let server = Server {
            scoreboard,
            asked: 0,
            stalled: false,
            idle_recheck: None,
            spawner: None,
            spawner_stale: false,
            spawner_retry_at: None,
            in_flight: Vec::with_capacity(ACCEPT_BATCH),
            watch,
            generation,
            overrides: setup.overrides,
            listeners: setup.listeners,
            socket_activated: setup.socket_activated,
            signals: setup.signals,
            access_log: setup.access_log,
            notifier: setup.notifier,
            _pid_file: setup.pid_file,
            pid: getpid(),
            lifeline_read,
            lifeline_write: Some(lifeline_write),
            children: children::Children::default(),
            refused: VecDeque::new(),
            paused_until: None,
            cap_logged: None,
            buffers: setup.buffers,
            keys,
        };
        server.commit_keys();
        request::warm_up();
        Ok(server)
    }

    /// Tells systemd (if it started us) that the server is ready, then runs
    /// the accept loop until a stop signal. Returns an error only if `poll`
    /// itself fails.
    pub fn run(mut self) -> Result<(), StartupError> {
        // STATUS= travels in READY's datagram, so `systemctl status` shows
        // it from the moment systemd reports the service started.
        let status = self.watch.status("STATUS=serving", &self.generation);
        self.notify(&format!("READY=1\n{status}"));
        loop {
            self.close_refused();
            self.watch_certificates();
            if let Some(n) = &mut self.notifier {
                n.feed_watchdog();
            }
            if self.generation.rotate_ticket_keys(Instant::now()) {
                self.spawner_stale = true;
            }
            self.restart_key_process(Instant::now());
            self.ensure_spawner();
            let accepting = self.accepting();
            let (signalled, mut ready) = self.wait(accepting)?;
            if signalled {
                for sig in self.signals.pending() {
                    match sig {
                        Signal::SIGCHLD => self.reap(),
                        Signal::SIGHUP => {
                            self.reload();
                            // The indexes name the listeners before the
                            // reload; the next wait finds the new ones.
                            ready = Ready::default();
                        }
                        Signal::SIGUSR1 => self.reopen_logs(),
                        Signal::SIGQUIT => {
                            self.stop(sig, Duration::ZERO);
                            return Ok(());
                        }
                        _ => {
                            self.stop(sig, self.config().limits.shutdown_grace);
                            return Ok(());
                        }
                    }
                }
            }
            for i in ready.indexes() {
                self.accept_from(i);
            }
        }
    }

    /// Whether the listeners should be watched now: not while paused after
    /// a resource error, and not at the children cap (the kernel's backlog
    /// holds new connections meanwhile), unless a child idle between
    /// requests can be asked to make room (see `give_back`).
    fn accepting(&mut self) -> bool {
        if let Some(until) = self.paused_until {
            if Instant::now() < until {
                return false;
            }
            self.paused_until = None;
        }
        self.idle_recheck = None;
        if self.children.len() < self.config().limits.max_children || self.may_give_back() {
            self.stalled = false;
            return true;
        }
        if self.config().limits.give_back_from > 0 && self.asked == 0 {
            self.idle_recheck = Some(Instant::now() + IDLE_RECHECK);
        }
        if !self.stalled && self.asked == 0 {
            self.stalled = true;
            self.scoreboard.count(Counter::RefusedMaxChildren);
        }
        if self.cap_logged.is_none_or(|t| t.elapsed() >= CAP_LOG_INTERVAL) {
            log::warn!(
                "max_children ({}) reached: not accepting until a child exits or is idle to ask back",
                self.config().limits.max_children
            );
            self.cap_logged = Some(Instant::now());
        }
        false
    }

    /// Waits for a signal or a connection. Returns whether the signal pipe
    /// is readable, and the listeners with connections. The descriptors
    /// are watched from an array on the stack (up to `POLL_INLINE`
    /// listeners) and the answer is a bit set: the loop writes no heap page
    /// per wake-up, for each page the parent writes after a fork is copied,
    /// and the copy left behind counts in that child's memory.
    fn wait(&self, accepting: bool) -> Result<(bool, Ready), StartupError> {
        let listeners = if accepting { &self.listeners[..] } else { &[] };
        let watch = |i: usize| match i.checked_sub(1) {
            None => PollFd::new(self.signals.fd(), PollFlags::POLLIN),
            Some(l) => PollFd::new(listeners[l].socket.as_fd(), PollFlags::POLLIN),
        };
        // Slots past the listeners repeat the last one and are not polled.
        let mut inline: [PollFd<'_>; 1 + POLL_INLINE] =
            std::array::from_fn(|i| watch(i.min(listeners.len())));
        let mut spilled = Vec::new();
        let fds: &mut [PollFd<'_>] = if listeners.len() <= POLL_INLINE {
            &mut inline[..=listeners.len()]
        } else {
            spilled.extend((0..=listeners.len()).map(watch));
            &mut spilled
        };
        let watchdog = self.notifier.as_ref().and_then(Notifier::watchdog_due);
        let wake_at = self
            .paused_until
            .into_iter()
            .chain(self.refused.front().map(|r| r.1))
            .chain(watchdog)
            .chain(self.generation.ticket_rotation_due())
            .chain(self.watch.due())
            .chain(self.keys.restart_due())
            .chain(self.idle_recheck)
            .chain(self.spawner_retry_at.filter(|_| self.spawner.is_none()))
            .min();
        let timeout = wake_at.map(|at| at.saturating_duration_since(Instant::now()));
        match self.signals.poll(fds, timeout) {
            Ok(_) => {}
            // Only a signal interrupts poll, and its flag is read on the next round.
            Err(Errno::EINTR) => return Ok((true, Ready::default())),
            Err(e) => return Err(StartupError::Poll(e)),
        }
        let signalled = fds[0].any() == Some(true) || self.signals.arrived();
        let mut ready = Ready { bits: 0, count: listeners.len() };
        for (i, f) in fds[1..].iter().enumerate().take(Ready::BITS) {
            if f.any() == Some(true) {
                ready.bits |= 1 << i;
            }
        }
        Ok((signalled, ready))
    }

    /// Accepts what is waiting on listener `i`, forking a child for each:
    /// the whole batch is passed to the spawner before the parent waits
    /// for its answers, so that the spawner forks while the parent accepts.
    fn accept_from(&mut self, i: usize) {
        self.accept_batch(i);
        self.settle();
    }

    /// `accept_from`'s accepting.
    fn accept_batch(&mut self, i: usize) {
        for _ in 0..ACCEPT_BATCH {
            if self.paused_until.is_some() {
                return;
            }
            if self.live() >= self.config().limits.max_children {
                // Someone waits (the listener was ready): make room.
                if self.may_give_back() {
                    self.give_back();
                }
                return;
            }
            match self.listeners[i].accept() {
                Ok((stream, peer)) => {
                    let wire = self.listeners[i].wire;
                    self.spawn(stream, peer, wire)
                }
                Err(e) => match e.raw_os_error().map(Errno::from_raw) {
                    Some(Errno::EAGAIN) => return,
                    _ if skip_accept_error(&e) => continue,
                    Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM) => {
                        log::error!("accept: {e}; pausing {RESOURCE_BACKOFF:?}");
                        self.paused_until = Some(Instant::now() + RESOURCE_BACKOFF);
                        return;
                    }
                    _ => {
                        log::error!(
                            "accept on {}: {e}; pausing {RESOURCE_BACKOFF:?}",
                            self.listeners[i].addr
                        );
                        self.paused_until = Some(Instant::now() + RESOURCE_BACKOFF);
                        return;
                    }
                },
            }
        }
    }

    /// Forks a child to serve `stream`, unless the server is under
    /// pressure (`per_ip_cap_from` children or more) and its address already
    /// has `max_children_per_ip` connections: then the parent answers `503`
    /// itself, without forking, so one client cannot take every slot. With
    /// room to spare, one address (an office, a carrier's NAT, a benchmark)
    /// may hold any number; so it tops out at `per_ip_cap_from` or
    /// `max_children_per_ip`, whichever is larger, and the rest of the
    /// server stays for the others.
    /// From a PROXY listener (`wire.proxy`), `peer` is the proxy,
    /// and the child reads the client's address from the PROXY header.
    fn spawn(&mut self, stream: TcpStream, peer: SocketAddr, wire: Wire) {
        if self.in_flight.len() >= ACCEPT_BATCH {
            self.settle();
        }
        self.scoreboard.count(Counter::Accepted);
        let limit = self.config().limits.max_children_per_ip;
        if limit > 0
            && self.live() >= self.config().limits.per_ip_cap_from
            && self.children.count_from(peer.ip())
                + self.in_flight.iter().filter(|f| f.peer.ip() == peer.ip()).count()
                >= limit
        {
            log::debug!(
                "{peer}: max_children_per_ip ({limit}) reached with {} children live; answered 503",
                self.live()
            );
            self.scoreboard.count(Counter::RefusedPerAddress);
            self.refuse(stream, peer, wire);
            return;
        }
        if let Err(e) = self.children.reserve(self.in_flight.len() + 1) {
            log::error!(
                "no memory to record a child for {peer}: {e}; answered 503, pausing {FORK_BACKOFF:?}"
            );
            self.refuse(stream, peer, wire);
            self.paused_until = Some(Instant::now() + FORK_BACKOFF);
            return;
        }
        self.ensure_spawner();
        let key_channel = if self.spawner.is_some() { self.key_channel(wire) } else { None };
        let Some(spawner) = &self.spawner else {
            self.scoreboard.count(Counter::RefusedFork);
            log::error!("no spawner running to fork a child for {peer}; answered 503");
            self.refuse(stream, peer, wire);
            return;
        };
        let slot = self.scoreboard.take(peer.ip(), wire.tls);
        let asked = spawner.ask(stream.as_fd(), peer, wire, slot, key_channel.as_ref().map(AsFd::as_fd));
        // The spawner has its own copy; ours must go now, or the key
        // process would keep the channel open after the child.
        drop(key_channel);
        let conn = InFlight { stream, peer, wire, slot };
        match asked {
            Ok(()) => self.in_flight.push(conn),
            Err(e) => {
                // Those passed before may have their children already.
                self.settle();
                self.not_spawned(conn, &e);
                self.stop_spawner();
            }
        }
    }

    /// Children live, and those the spawner is forking.
    fn live(&self) -> usize {
        self.children.len() + self.in_flight.len()
    }

    /// Reads the spawner's answer for each connection in flight, oldest
    /// first: records its child, or refuses the connection if the fork
    /// failed. A spawner that does not answer is stopped (the next round
    /// starts another), and the connections behind are refused.
    fn settle(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let mut in_flight = std::mem::take(&mut self.in_flight);
        let mut broken = None;
        for conn in in_flight.drain(..) {
            let answer = match (&self.spawner, broken) {
                (Some(spawner), None) => spawner.answer(),
                (_, Some(e)) => Err(e),
                (None, None) => Err(SpawnError::Channel(Errno::EPIPE)),
            };
            match answer {
                Ok(pid) => {
                    // The child has its own copy; ours must go, or the
                    // connection would outlive the child that serves it.
                    drop(conn.stream);
                    if let Some(id) = conn.slot {
                        self.scoreboard.set_pid(id, pid);
                    }
                    self.children.insert(pid, conn.peer.ip(), conn.slot);
                    if self.under_pressure() {
                        self.give_back();
                    }
                }
                Err(e) => {
                    if matches!(e, SpawnError::Channel(_)) {
                        broken = Some(e);
                    }
                    self.not_spawned(conn, &e);
                }
            }
        }
        self.in_flight = in_flight;
        if broken.is_some() {
            // Stuck or gone: the next round starts another.
            self.stop_spawner();
        }
    }

    /// Refuses `conn`, for which no child could be spawned (`e`), and
    /// pauses accepting for `FORK_BACKOFF`.
    fn not_spawned(&mut self, conn: InFlight, e: &SpawnError) {
        let peer = conn.peer;
        if let Some(id) = conn.slot {
            self.scoreboard.release(id);
        }
        self.scoreboard.count(Counter::RefusedFork);
        match e {
            SpawnError::Fork(errno) => {
                log::error!("fork for {peer}: {errno}; answered 503, pausing {FORK_BACKOFF:?}");
            }
            _ => log::error!("spawning a child for {peer}: {e}; answered 503, pausing {FORK_BACKOFF:?}"),
        }
        self.refuse(conn.stream, peer, conn.wire);
        self.paused_until = Some(Instant::now() + FORK_BACKOFF);
    }

    /// Starts a spawner if what children inherit changed since the
    /// running one was forked (the old one exits when its channel
    /// closes), or if none runs, unless a start failed or one died
    /// moments ago (`spawner_retry_at`).
    fn ensure_spawner(&mut self) {
        if self.spawner.is_some() && !self.spawner_stale {
            return;
        }
        // The running one's answers first: they come on its channel only.
        self.settle();
        let now = Instant::now();
        if self.spawner.is_none() && self.spawner_retry_at.is_some_and(|at| now < at) {
            return;
        }
        self.spawner = None;
        self.spawner_stale = false;
        self.spawner_retry_at = None;
        let inherited = Inherited {
            scoreboard: &self.scoreboard,
            slot: None,
            generation: &self.generation,
            access_log: &self.access_log,
            lifeline: self.lifeline_read.as_fd(),
            parent: self.pid,
        };
        match Spawner::start(&inherited, &mut self.buffers) {
            Ok(s) => {
                log::debug!("spawner {} started", s.pid());
                self.spawner = Some(s);
            }
            Err(e) => {
                log::error!("{e}; trying again in {FORK_BACKOFF:?}");
                self.spawner_retry_at = Some(now + FORK_BACKOFF);
            }
        }
    }

    /// Lets the spawner go: closing its channel ends it, and it is reaped
    /// like a child. Another is started no sooner than `FORK_BACKOFF`.
    fn stop_spawner(&mut self) {
        self.spawner = None;
        self.spawner_retry_at = Some(Instant::now() + FORK_BACKOFF);
    }

    /// Collects every child that has exited, without blocking.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) if self.keys.exited(status) => {}
                Ok(status) if self.spawner.as_ref().is_some_and(|s| status.pid() == Some(s.pid())) => {
                    log::error!("the spawner died ({status:?}); starting another");
                    self.stop_spawner();
                }
                Ok(status) => {
                    if let Some(child) = status.pid().and_then(|pid| self.children.remove(pid)) {
                        self.forget(child);
                    }
                    if let WaitStatus::Signaled(_, sig, _) = status {
                        self.scoreboard.death(sig as i32);
                    }
                    match status {
                        WaitStatus::Exited(pid, code) if code != 0 => {
                            log::warn!("child {pid} exited with status {code}");
                        }
                        WaitStatus::Signaled(pid, sig, _)
                            if sig != Signal::SIGKILL && sig != Signal::SIGTERM =>
                        {
                            // A client can make this happen once per request
                            // (a request that crashes its child): rate-limited.
                            logging::crash_warning(format_args!("child {pid} killed by {sig}"));
                        }
                        _ => {}
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("waitpid: {e}");
                    return;
                }
            }
        }
    }

    /// Lets go of what the parent held for `child`, reaped.
    fn forget(&mut self, child: children::Child) {
        if let Some(id) = child.slot {
            self.scoreboard.release(id);
        }
        if child.asked {
            self.asked -= 1;
        }
    }

    /// Stops: close the listeners at once, hang up the lifeline so children
    /// close after the response in flight, wait up to `grace` for them
    /// (zero: a fast stop), then kill what is left.
    fn stop(&mut self, sig: Signal, grace: Duration) {
        self.notify("STOPPING=1");
        if grace.is_zero() {
            log::info!("{sig}: stopping now; {} connections are closed without waiting", self.children.len());
        } else {
            log::info!("{sig}: stopping; {} connections get up to {grace:?} to finish", self.children.len());
        }
        self.listeners.clear();
        self.stop_spawner();
        self.lifeline_write = None;
        let deadline = Instant::now() + grace;
        self.reap();
        while !self.children.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = [PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
            match self.signals.poll(&mut fds, Some(left)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    log::error!("poll while stopping: {e}");
                    break;
                }
            }
            if self.signals.pending().contains(&Signal::SIGQUIT) {
                log::info!("SIGQUIT: not waiting any longer");
                break;
            }
            self.reap();
        }
        self.kill_children();
        self.keys.stop();
        log::info!("stopped");
    }

    /// Kills every remaining child and waits for those it could signal:
    /// after `SIGKILL` that wait is bounded by the kernel tearing the
    /// process down. A child it may not signal (a parent without
    /// `CAP_KILL`, children running as another user) dies with the parent
    /// anyway, through the parent-death signal it set (`child.rs`).
    fn kill_children(&mut self) {
        if self.children.is_empty() {
            return;
        }
        log::warn!("killing {} children still running", self.children.len());
        for pid in self.children.pids() {
            match kill(pid, Signal::SIGKILL) {
                // EINTR is the only error worth retrying; ECHILD means already gone.
                Ok(()) => while let Err(Errno::EINTR) = waitpid(pid, None) {},
                Err(e) => log::warn!("kill {pid}: {e}; it ends when this process exits"),
            }
        }
        self.children.clear();
    }

    /// The configuration in force.
    fn config(&self) -> &Config {
        &self.generation.config
    }

    fn notify(&self, state: &str) {
        if let Some(n) = &self.notifier {
            n.notify(state);
        }
    }
}

/// Whether an `accept` error concerns only the connection it was for: the
/// client gave up before we got to it, a signal came, or a network error
/// already pending on the new socket (accept(2) says to treat those like
/// `EAGAIN`). The next connection may be fine.
fn skip_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(
            Errno::EINTR
                | Errno::ECONNABORTED
                | Errno::EPROTO
                | Errno::ENETDOWN
                | Errno::ENETUNREACH
                | Errno::EHOSTDOWN
                | Errno::EHOSTUNREACH
                | Errno::ENONET
                | Errno::ENOPROTOOPT
                | Errno::EOPNOTSUPP
        )
    )
}

/// The first thing `main` does, before anything can arrive or be copied:
/// take the signal mask and dispositions over from the launcher (see
/// `signals::take_over`), close the descriptors it left open (see
/// `listener::close_strays`), and make the process non-dumpable: under
/// the shipped unit every child runs as the parent's own account, and a
/// dumpable parent's memory is open to them read-write through
/// `/proc/PID/mem` (non-dumpable, it takes `CAP_SYS_PTRACE`; children
/// inherit the flag, and set it again after their privilege drop, which
/// can reset it). It also means the parent writes no core dump. And it
/// installs the do-nothing handler of `GIVE_BACK_SIGNAL` that every child
/// inherits (see `give_back`); one sent to the parent only wakes its wait.
pub fn take_over_process() -> Result<(), StartupError> {
    signals::take_over(&SIGNALS).map_err(|e| StartupError::Signals(e.into()))?;
    sys::set_wake_handler(GIVE_BACK_SIGNAL).map_err(|e| StartupError::Signals(e.into()))?;
    set_dumpable(false).map_err(StartupError::Dumpable)?;
    listener::close_strays().map_err(StartupError::Descriptors)
}

/// Blocks `SIGNALS`. The binary's constructor (`main.rs`), which the C
/// library runs right after the dynamic loader, before the Rust runtime
/// and `main`: a signal that arrives from then on waits for the accept
/// loop instead of taking its default action (death, for `SIGHUP`). Only
/// the time before stays open, while `execve` completes and the loader
/// runs (about a millisecond): no code of ours runs yet. Its error cannot
/// be reported this early (and `pthread_sigmask` only fails on a bad
/// argument); `take_over_process` sets the mask again, checked.
pub extern "C" fn block_signals_at_load() {
    let _ = signals::block(&SIGNALS);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ready listeners come out in order; while not accepting (no
    /// listener watched) none; past the bit set every one is tried.
    #[test]
    fn ready_listeners() {
        let ready = Ready { bits: 0b1010, count: 4 };
        assert_eq!(ready.indexes().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(Ready { bits: 0b1010, count: 0 }.indexes().count(), 0);
        assert_eq!(Ready::default().indexes().count(), 0);
        let many = Ready { bits: 1, count: Ready::BITS + 2 };
        assert_eq!(many.indexes().collect::<Vec<_>>(), [0, Ready::BITS, Ready::BITS + 1]);
    }
}
