//! The accept-and-fork loop.
//!
//! Runs in: parent only. One `poll` waits on every listener and on the
//! signal pipe together, so a signal is never lost and the parent never
//! blocks anywhere else: not in `accept` (the listeners are non-blocking)
//! and not in `waitpid` (children are reaped with `WNOHANG` after
//! `SIGCHLD` wakes the loop). For each connection the parent forks; the
//! child serves it (`child::run`, which never returns) and the parent
//! closes its copy of the socket at once and records the child's pid.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

use crate::child::{self, Inherited};
use crate::config::Config;
use crate::error::{StartupError, Status};
use crate::listener::Listener;
use crate::log::AccessLog;
use crate::response::{Connection, Writer};
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
/// How often "max_children reached" may be logged at most.
const CAP_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// The signals the parent handles.
const SIGNALS: [Signal; 3] = [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT];

/// The parent's state: listeners, signals, and the table of live children.
#[derive(Debug)]
pub struct Server {
    config: Config,
    listeners: Vec<Listener>,
    signals: Signals,
    access_log: AccessLog,
    /// Children hold the read end; when the parent closes the write end
    /// (at stop, or by dying), every child sees a hang-up and drains.
    lifeline_read: OwnedFd,
    lifeline_write: Option<OwnedFd>,
    /// Live children and the address each serves: the parent's only
    /// per-connection state.
    children: HashMap<Pid, IpAddr>,
    /// Descriptors a child must close: listeners, signal pipe, lifeline writer.
    parent_fds: Vec<RawFd>,
    /// Not accepting until then (after a resource error).
    paused_until: Option<Instant>,
    /// When the cap was last logged, and how often it was hit since.
    cap_logged: Option<Instant>,
    cap_hits: u64,
}

impl Server {
    /// Installs the signal handlers and creates the lifeline. Call after
    /// binding, with everything the children will inherit already open.
    pub fn new(
        config: Config,
        listeners: Vec<Listener>,
        access_log: AccessLog,
    ) -> Result<Server, StartupError> {
        let signals = Signals::install(&SIGNALS).map_err(StartupError::Signals)?;
        let (lifeline_read, lifeline_write) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| StartupError::Signals(e.into()))?;
        let mut server = Server {
            config,
            listeners,
            signals,
            access_log,
            lifeline_read,
            lifeline_write: Some(lifeline_write),
            children: HashMap::new(),
            parent_fds: Vec::new(),
            paused_until: None,
            cap_logged: None,
            cap_hits: 0,
        };
        server.parent_fds = server.collect_parent_fds();
        Ok(server)
    }

    fn collect_parent_fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self
            .listeners
            .iter()
            .map(|l| l.socket.as_raw_fd())
            .collect();
        fds.extend(self.signals.fds());
        fds.extend(self.lifeline_write.as_ref().map(|w| w.as_raw_fd()));
        fds
    }

    /// Runs the accept loop until `SIGTERM` or `SIGINT`, then stops
    /// gracefully. Returns an error only if `poll` itself fails.
    pub fn run(mut self) -> Result<(), StartupError> {
        loop {
            let accepting = self.accepting();
            let (signalled, ready) = self.wait(accepting)?;
            if signalled {
                for sig in self.signals.pending() {
                    match sig {
                        Signal::SIGCHLD => self.reap(),
                        _ => {
                            self.stop(sig);
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
        self.cap_hits += 1;
        if self
            .cap_logged
            .is_none_or(|t| t.elapsed() >= CAP_LOG_INTERVAL)
        {
            log::warn!(
                "max_children ({}) reached ({} times since last report): not accepting until a child exits",
                self.config.max_children,
                self.cap_hits
            );
            self.cap_logged = Some(Instant::now());
            self.cap_hits = 0;
        }
        false
    }

    /// Waits for a signal or a connection. Returns whether the signal pipe
    /// is readable, and the indexes of the listeners with connections.
    fn wait(&self, accepting: bool) -> Result<(bool, Vec<usize>), StartupError> {
        let mut fds = vec![PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
        if accepting {
            fds.extend(
                self.listeners
                    .iter()
                    .map(|l| PollFd::new(l.socket.as_fd(), PollFlags::POLLIN)),
            );
        }
        let timeout = match self.paused_until {
            Some(until) => timeout_ms(until.saturating_duration_since(Instant::now())),
            None => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            // Only a signal interrupts poll, and its flag is read on the next round.
            Err(Errno::EINTR) => return Ok((true, Vec::new())),
            Err(e) => return Err(StartupError::Poll(e)),
        }
        let signalled = fds[0].any() == Some(true);
        let ready = fds[1..]
            .iter()
            .enumerate()
            .filter(|(_, f)| f.any() == Some(true))
            .map(|(i, _)| i)
            .collect();
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
                    // The client gave up before we got to it, or a signal came: next.
                    Some(Errno::EINTR | Errno::ECONNABORTED) => continue,
                    Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM) => {
                        log::error!("accept: {e}; pausing {RESOURCE_BACKOFF:?}");
                        self.paused_until = Some(Instant::now() + RESOURCE_BACKOFF);
                        return;
                    }
                    _ => {
                        log::warn!("accept on {}: {e}", self.listeners[i].addr);
                        return;
                    }
                },
            }
        }
    }

    /// Forks a child to serve `stream`.
    fn spawn(&mut self, stream: TcpStream, peer: SocketAddr) {
        match sys::fork() {
            Ok(Forked::Child) => {
                let inherited = Inherited {
                    config: &self.config,
                    access_log: &self.access_log,
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
                    if let Some(pid) = status.pid() {
                        self.children.remove(&pid);
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

    /// Graceful stop: close the listeners at once, hang up the lifeline so
    /// children close after the response in flight, wait up to
    /// `shutdown_grace` for them, then kill what is left.
    fn stop(&mut self, sig: Signal) {
        let grace = self.config.shutdown_grace;
        log::info!(
            "{sig}: stopping; {} connections get up to {grace:?} to finish",
            self.children.len()
        );
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
            match poll(&mut fds, timeout_ms(left)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    log::error!("poll while stopping: {e}");
                    break;
                }
            }
            self.signals.pending();
            self.reap();
        }
        self.kill_children();
        log::info!("stopped");
    }

    /// Kills every remaining child and waits for each: after `SIGKILL` the
    /// wait is bounded by the kernel tearing the process down.
    fn kill_children(&mut self) {
        if self.children.is_empty() {
            return;
        }
        log::warn!("killing {} children still running", self.children.len());
        for (&pid, _) in self.children.iter() {
            if let Err(e) = kill(pid, Signal::SIGKILL) {
                log::warn!("kill {pid}: {e}");
            }
        }
        for (pid, _) in self.children.drain() {
            // EINTR is the only error worth retrying; ECHILD means already gone.
            while let Err(Errno::EINTR) = waitpid(pid, None) {}
        }
    }
}

/// The parent's own answer when it cannot fork: a best-effort `503`,
/// written without blocking, then the socket is closed.
fn refuse(stream: TcpStream, server_version: bool) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let mut out = Vec::new();
    Writer::new(server_version).page(
        &mut out,
        Status::ServiceUnavailable,
        None,
        Connection::Close,
        false,
    );
    (&stream).write_all(&out)
}

/// A poll timeout of at least `d`, rounded up to whole milliseconds.
fn timeout_ms(d: Duration) -> PollTimeout {
    let ms = d.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}
