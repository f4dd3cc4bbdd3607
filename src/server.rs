//! The accept-and-fork loop.
//!
//! Runs in: parent only. One `ppoll` waits on every listener and on the
//! signal pipe together, so a signal is never lost and the parent never
//! blocks anywhere else: not in `accept` (the listeners are non-blocking)
//! and not in `waitpid` (children are reaped with `WNOHANG` after
//! `SIGCHLD` wakes the loop). For each connection the parent forks; the
//! child serves it (`child::run`, which never returns) and the parent
//! closes its copy of the socket at once and records the child's pid.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

use crate::child::{self, Inherited};
use crate::config::{Config, Overrides};
use crate::daemon::PidFile;
use crate::error::{StartupError, Status};
use crate::file;
use crate::listener::{self, Listener};
use crate::log::{self as logging, AccessLog};
use crate::notify::Notifier;
use crate::privileges::DropPlan;
use crate::request;
use crate::response::{Connection, Writer};
use crate::safeopen::Guard;
use crate::signals::Signals;
use crate::sys::{self, Forked};

/// Connections accepted from one listener per wake-up before the others
/// get a turn.
const ACCEPT_BATCH: usize = 64;
/// Pause after `accept` fails for lack of descriptors or memory: long
/// enough for children to exit and free some, short enough to recover fast.
const RESOURCE_BACKOFF: Duration = Duration::from_secs(1);
/// Pause after `fork` fails (`EAGAIN`: process limit or memory).
const FORK_BACKOFF: Duration = Duration::from_millis(250);
/// Reads of already-arrived request bytes before the parent's own `503`
/// (16 KiB at most: the parent must never wait on a client).
const REFUSE_DRAIN_READS: usize = 4;
/// How often "max_children reached" may be logged at most.
const CAP_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// The signals the parent handles: children exiting, graceful stop (TERM,
/// INT), fast stop (QUIT), reload (HUP), reopen logs (USR1).
pub const SIGNALS: [Signal; 6] =
    [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGHUP, Signal::SIGUSR1];

/// Everything the parent starts the accept loop with.
#[derive(Debug)]
pub struct Setup {
    /// The validated configuration.
    pub config: Config,
    /// The command-line values, re-applied on every reload.
    pub overrides: Overrides,
    /// Bound (or inherited) listening sockets.
    pub listeners: Vec<Listener>,
    /// Whether the listeners came from systemd (a reload then keeps them).
    pub socket_activated: bool,
    /// The opened access log.
    pub access_log: AccessLog,
    /// How children give up root, if the parent has it.
    pub drop_plan: Option<DropPlan>,
    /// systemd's notification socket, if started by systemd.
    pub notifier: Option<Notifier>,
    /// The handlers for `SIGNALS`, installed as early as possible so that
    /// no signal can take its default action once the server has said a word.
    pub signals: Signals,
    /// The locked pid file, removed when the server ends.
    pub pid_file: Option<PidFile>,
}

/// The parent's state: listeners, signals, and the table of live children.
#[derive(Debug)]
pub struct Server {
    config: Config,
    overrides: Overrides,
    listeners: Vec<Listener>,
    socket_activated: bool,
    signals: Signals,
    access_log: AccessLog,
    drop_plan: Option<DropPlan>,
    notifier: Option<Notifier>,
    pid_file: Option<PidFile>,
    /// The document root, opened once; children resolve every path beneath it.
    root: OwnedFd,
    /// Children hold the read end; when the parent closes the write end
    /// (at stop, or by dying), every child sees a hang-up and drains.
    lifeline_read: OwnedFd,
    lifeline_write: Option<OwnedFd>,
    /// Live children and the address each serves, and the count per
    /// address: the parent's only per-connection state.
    children: HashMap<Pid, IpAddr>,
    per_ip: HashMap<IpAddr, usize>,
    /// Descriptors a child must close: listeners, signal pipe, lifeline
    /// writer, notify socket, pid file.
    parent_fds: Vec<RawFd>,
    /// Not accepting until then (after a resource error).
    paused_until: Option<Instant>,
    /// When reaching the cap was last logged.
    cap_logged: Option<Instant>,
}

impl Server {
    /// Opens the document root and creates the lifeline. Call with
    /// everything the children inherit already open.
    pub fn new(setup: Setup) -> Result<Server, StartupError> {
        let (lifeline_read, lifeline_write) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| StartupError::Daemon(format!("lifeline pipe: {e}")))?;
        let root = open_root(&setup.config)?;
        let mut server = Server {
            config: setup.config,
            overrides: setup.overrides,
            listeners: setup.listeners,
            socket_activated: setup.socket_activated,
            signals: setup.signals,
            access_log: setup.access_log,
            drop_plan: setup.drop_plan,
            notifier: setup.notifier,
            pid_file: setup.pid_file,
            root,
            lifeline_read,
            lifeline_write: Some(lifeline_write),
            children: HashMap::new(),
            per_ip: HashMap::new(),
            parent_fds: Vec::new(),
            paused_until: None,
            cap_logged: None,
        };
        server.parent_fds = server.collect_parent_fds();
        request::warm_up();
        Ok(server)
    }

    fn collect_parent_fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.listeners.iter().map(|l| l.socket.as_raw_fd()).collect();
        fds.extend(self.signals.fds());
        fds.extend(self.lifeline_write.as_ref().map(|w| w.as_raw_fd()));
        fds.extend(self.notifier.as_ref().map(Notifier::as_raw_fd));
        fds.extend(self.pid_file.as_ref().map(PidFile::as_raw_fd));
        fds
    }

    /// Tells systemd (if it started us) that the server is ready, then runs
    /// the accept loop until a stop signal. Returns an error only if `poll`
    /// itself fails.
    pub fn run(mut self) -> Result<(), StartupError> {
        self.signals.block_outside_poll().map_err(|e| StartupError::Signals(e.into()))?;
        self.notify("READY=1");
        loop {
            let accepting = self.accepting();
            let (signalled, ready) = self.wait(accepting)?;
            if signalled {
                for sig in self.signals.pending() {
                    match sig {
                        Signal::SIGCHLD => self.reap(),
                        Signal::SIGHUP => self.reload(),
                        Signal::SIGUSR1 => self.reopen_logs(),
                        Signal::SIGQUIT => {
                            self.stop(sig, Duration::ZERO);
                            return Ok(());
                        }
                        _ => {
                            self.stop(sig, self.config.shutdown_grace);
                            return Ok(());
                        }
                    }
                }
            }
            for i in ready {
                self.accept_from(i);
            }
        }
    }

    /// Whether the listeners should be watched now: not while paused after
    /// a resource error, and not at the children cap (the kernel's backlog
    /// holds new connections meanwhile).
    fn accepting(&mut self) -> bool {
        if let Some(until) = self.paused_until {
            if Instant::now() < until {
                return false;
            }
            self.paused_until = None;
        }
        if self.children.len() < self.config.max_children {
            return true;
        }
        if self.cap_logged.is_none_or(|t| t.elapsed() >= CAP_LOG_INTERVAL) {
            log::warn!(
                "max_children ({}) reached: not accepting until a child exits",
                self.config.max_children
            );
            self.cap_logged = Some(Instant::now());
        }
        false
    }

    /// Waits for a signal or a connection. Returns whether the signal pipe
    /// is readable, and the indexes of the listeners with connections.
    fn wait(&self, accepting: bool) -> Result<(bool, Vec<usize>), StartupError> {
        let mut fds = vec![PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
        if accepting {
            fds.extend(self.listeners.iter().map(|l| PollFd::new(l.socket.as_fd(), PollFlags::POLLIN)));
        }
        let timeout = self.paused_until.map(|until| until.saturating_duration_since(Instant::now()));
        match self.signals.poll(&mut fds, timeout) {
            Ok(_) => {}
            // Only a signal interrupts poll, and its flag is read on the next round.
            Err(Errno::EINTR) => return Ok((true, Vec::new())),
            Err(e) => return Err(StartupError::Poll(e)),
        }
        let signalled = fds[0].any() == Some(true);
        let ready =
            fds[1..].iter().enumerate().filter(|(_, f)| f.any() == Some(true)).map(|(i, _)| i).collect();
        Ok((signalled, ready))
    }

    /// Accepts what is waiting on listener `i`, forking a child for each.
    fn accept_from(&mut self, i: usize) {
        for _ in 0..ACCEPT_BATCH {
            if self.children.len() >= self.config.max_children || self.paused_until.is_some() {
                return;
            }
            match self.listeners[i].socket.accept() {
                Ok((stream, peer)) => self.spawn(stream, peer),
                Err(e) => match e.raw_os_error().map(Errno::from_raw) {
                    Some(Errno::EAGAIN) => return,
                    // The client gave up before we got to it, a signal came, or a
                    // network error already pending on the new socket (accept(2)
                    // says to treat those like EAGAIN): next.
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
                        | Errno::EOPNOTSUPP,
                    ) => continue,
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

    /// Forks a child to serve `stream`, unless its address already has
    /// `max_children_per_ip` connections: then the parent answers `503`
    /// itself, without forking, so one client cannot take every slot.
    fn spawn(&mut self, stream: TcpStream, peer: SocketAddr) {
        let limit = self.config.max_children_per_ip;
        if limit > 0 && self.per_ip.get(&peer.ip()).is_some_and(|&n| n >= limit) {
            log::debug!("{peer}: max_children_per_ip ({limit}) reached; answered 503");
            if let Err(e) = refuse(stream, self.config.server_version) {
                log::debug!("503 to {peer} not delivered: {e}");
            }
            return;
        }
        match sys::fork() {
            Ok(Forked::Child) => {
                let inherited = Inherited {
                    signals: &self.signals,
                    config: &self.config,
                    access_log: &self.access_log,
                    root: self.root.as_fd(),
                    drop_plan: self.drop_plan.as_ref(),
                    lifeline: self.lifeline_read.as_fd(),
                    parent_fds: &self.parent_fds,
                };
                child::run(stream, peer, &inherited)
            }
            Ok(Forked::Parent(pid)) => {
                // The child has its own copy; ours must go now, or the
                // connection would outlive the child that serves it.
                drop(stream);
                self.children.insert(pid, peer.ip());
                *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
            }
            Err(e) => {
                log::error!("fork for {peer}: {e}; answered 503, pausing {FORK_BACKOFF:?}");
                if let Err(e) = refuse(stream, self.config.server_version) {
                    log::debug!("503 to {peer} not delivered: {e}");
                }
                self.paused_until = Some(Instant::now() + FORK_BACKOFF);
            }
        }
    }

    /// Collects every child that has exited, without blocking.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) => {
                    if let Some(ip) = status.pid().and_then(|pid| self.children.remove(&pid)) {
                        self.forget_ip(ip);
                    }
                    match status {
                        WaitStatus::Exited(pid, code) if code != 0 => {
                            log::warn!("child {pid} exited with status {code}");
                        }
                        WaitStatus::Signaled(pid, sig, _)
                            if sig != Signal::SIGKILL && sig != Signal::SIGTERM =>
                        {
                            log::warn!("child {pid} killed by {sig}");
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

    fn forget_ip(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// `SIGHUP`: reads the config again. A bad config is logged and the
    /// old one stays. A good one applies to connections accepted from now
    /// on (existing children keep the one they were forked with): new root,
    /// limits and timeouts, listeners rebound where the list changed. Log
    /// files are reopened either way.
    fn reload(&mut self) {
        self.notify("RELOADING=1");
        let source = self.config.source.clone();
        log::info!(
            "reloading configuration from {}",
            source.as_deref().map_or("built-in defaults".into(), |p| p.display().to_string())
        );
        match self.apply_reload(Config::load(source.as_deref(), &self.overrides)) {
            Ok(()) => log::info!("configuration reloaded"),
            Err(e) => log::error!("reload failed: {e}; keeping the previous configuration"),
        }
        self.reopen_logs();
        self.notify("READY=1");
    }

    fn apply_reload(&mut self, loaded: Result<Config, StartupError>) -> Result<(), StartupError> {
        let config = loaded?;
        let drop_plan = DropPlan::for_config(&config)?;
        let root = open_root(&config)?;
        let access_log = AccessLog::open(&config.access_log, Guard::for_plan(drop_plan.as_ref()))?;
        if self.socket_activated {
            if config.listen != self.config.listen {
                log::warn!(
                    "listen addresses come from systemd socket activation; the changed list is ignored"
                );
            }
        } else {
            self.rebind(&config);
        }
        self.config = config;
        self.drop_plan = drop_plan;
        self.root = root;
        self.access_log = access_log;
        self.parent_fds = self.collect_parent_fds();
        Ok(())
    }

    /// Makes the listeners match `config.listen` (see `listener::rebind`);
    /// if nothing at all could be bound, the old listeners stay.
    fn rebind(&mut self, config: &Config) {
        let old = std::mem::take(&mut self.listeners);
        let (new, dropped) = listener::rebind(old, &config.listen, config.backlog);
        if new.is_empty() {
            log::error!("no listen address could be bound; keeping the previous listeners");
            self.listeners = dropped;
            return;
        }
        for l in &dropped {
            log::info!("no longer listening on {}", l.addr);
        }
        self.listeners = new;
    }

    /// `SIGUSR1` (and every reload): reopens the access log (and an
    /// `error_log` file) by its path, so that after logrotate renames the
    /// file new lines go to a new one. On failure the old file stays in use.
    fn reopen_logs(&mut self) {
        let guard = Guard::for_plan(self.drop_plan.as_ref());
        logging::reopen_error_log(&self.config.error_log, guard);
        match AccessLog::open(&self.config.access_log, guard) {
            Ok(log) => {
                self.access_log = log;
                log::info!("reopened log files");
            }
            Err(e) => log::error!("{e}; still writing to the previous access log"),
        }
    }

    /// Stops: close the listeners at once, hang up the lifeline so children
    /// close after the response in flight, wait up to `grace` for them
    /// (zero: a fast stop), then kill what is left.
    fn stop(&mut self, sig: Signal, grace: Duration) {
        self.notify("STOPPING=1");
        log::info!("{sig}: stopping; {} connections get up to {grace:?} to finish", self.children.len());
        self.listeners.clear();
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
        for (pid, _) in std::mem::take(&mut self.children) {
            match kill(pid, Signal::SIGKILL) {
                // EINTR is the only error worth retrying; ECHILD means already gone.
                Ok(()) => while let Err(Errno::EINTR) = waitpid(pid, None) {},
                Err(e) => log::warn!("kill {pid}: {e}; it ends when this process exits"),
            }
        }
        self.per_ip.clear();
    }

    fn notify(&self, state: &str) {
        if let Some(n) = &self.notifier {
            n.notify(state);
        }
    }
}

/// Opens the document root for children to resolve paths beneath.
/// `O_PATH`: the descriptor grants lookups, not reads, of the directory.
/// Also checks, once, that the kernel has `openat2` (Linux 5.6), which
/// every request relies on, so its absence is a start-up error rather than
/// a 500 on every request.
fn open_root(config: &Config) -> Result<OwnedFd, StartupError> {
    let fail = |e: Errno| StartupError::Root { path: config.root.clone(), source: e.into() };
    let root = open(&config.root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(fail)?;
    file::probe(root.as_fd()).map_err(fail)?;
    Ok(root)
}

/// The parent's own answer when it cannot or will not fork: a best-effort
/// `503`, written without blocking. What the client already sent is read
/// and discarded first: closing with unread input would make the kernel
/// send a reset that can destroy the answer before the client reads it.
fn refuse(stream: TcpStream, server_version: bool) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let mut sink = [0u8; 4096];
    for _ in 0..REFUSE_DRAIN_READS {
        match (&stream).read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
    let mut out = Vec::new();
    Writer::new(server_version).page(&mut out, Status::ServiceUnavailable, None, Connection::Close, false);
    (&stream).write_all(&out)?;
    stream.shutdown(std::net::Shutdown::Write)
}
