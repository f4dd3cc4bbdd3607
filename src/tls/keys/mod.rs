//! The key process: the one process that holds the sites' private keys,
//! and signs for children that ask, as OpenBSD relayd's CA process does.
//! A child taken over by its client holds certificates and a signing
//! stub, never a key: it can have handshakes signed while it lives, but
//! cannot read a key, nor take one with it.
//!
//! Runs in: parent (this handle: starting, loading, one channel per
//! child, restarting), key process (`serve`) and child (`remote`, the
//! stub rustls signs through).
//!
//! **Channels.** The parent makes one `SOCK_SEQPACKET` socket pair per
//! HTTPS connection just before it forks the child: the child keeps one
//! end, and the other goes to the key process over its control socket,
//! with `SCM_RIGHTS`, tagged with the generation the child was forked
//! with. So each child has a connection of its own, and an answer can
//! only reach the child that asked (a pair shared by every child would
//! let one read another's answers, and interleave their questions); the
//! child needs no `socket` or `connect`, which its sandbox forbids, and
//! no name in any namespace that another process could connect to. The
//! key process reads a child's records with no room for descriptors
//! (any sent are discarded), answers only "sign these bytes with key N
//! by scheme S", and only with the keys of that child's generation; an
//! answer it cannot send at once (a child that asks without reading)
//! ends that channel, so no child can stall the others.
//!
//! **Keys.** The parent reads each key file into a buffer it wipes
//! (`zeroize`) once the key process has the bytes; it never parses one
//! (a parsed key would leave its numbers in memory the parent does not
//! own, which every later child would inherit): the key process parses
//! it and answers with its public half, which the parent checks against
//! the certificate, and the schemes it signs with. A reload hands over
//! the new generation's keys; the old generation's are kept while a
//! channel of it is open, so its children finish their handshakes.
//!
//! **Failures.** A key process that dies is reaped like a child and
//! started again (at most once a second), with the current generation's
//! key files read again; meanwhile, and for children whose channel went
//! with it, a handshake fails at once (the channel is closed), and a key
//! process that does not answer fails it after `remote::SIGN_TIMEOUT`.
//!
//! `tls_key_process = false` keeps the keys in every child instead (the
//! faster choice only where signing itself dominates, and the baseline
//! the benchmark compares with): see forkhttpd(8), SECURITY.

pub mod remote;
mod serve;
pub mod wire;

use std::fmt;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, recv, send, sendmsg, socketpair,
};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, getpid};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::sign::SigningKey;

use crate::privileges::DropPlan;
use crate::sys::{self, Forked};
use wire::{Answer, Control, Loaded, MAX_RECORD};

/// How long the parent waits for the key process to load a key.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time between two starts of the key process: one that dies
/// at once is not restarted in a busy loop.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// Why the key process could not be started or did not load a key.
#[derive(Debug)]
pub enum KeyError {
    /// Its control socket could not be made, or the fork failed.
    Start(Errno),
    /// It is not running (it died, and has not been restarted yet).
    NotRunning,
    /// Talking to it failed.
    Control(Errno),
    /// It did not answer within `LOAD_TIMEOUT`.
    Timeout,
    /// It refused the key, saying why.
    Refused(String),
    /// The key file is larger than a record may be.
    TooLarge(usize),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Start(e) => write!(f, "cannot start the key process: {e}"),
            KeyError::NotRunning => write!(f, "the key process is not running"),
            KeyError::Control(e) => write!(f, "the key process cannot be reached: {e}"),
            KeyError::Timeout => write!(f, "the key process did not answer within {LOAD_TIMEOUT:?}"),
            KeyError::Refused(why) => write!(f, "{why}"),
            KeyError::TooLarge(n) => write!(f, "is {n} bytes, more than a private key file can be"),
        }
    }
}

impl std::error::Error for KeyError {}

/// The largest key file read: a record's room, less its header.
pub const MAX_KEY_FILE: usize = MAX_RECORD - 32;

/// Parses a PEM private key and makes rustls's signing key of it (ring
/// provider): in the key process, and in the parent where keys stay in
/// the children (`tls_key_process = false`, `--check-config`).
pub fn signing_key(pem: &[u8]) -> Result<Arc<dyn SigningKey>, String> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("holds no PEM private key: {e}"))?;
    // See `tls::Tls::load` on the deprecation.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    provider.key_provider.load_private_key(der).map_err(|e| format!("not a usable private key: {e}"))
}

/// The running key process.
#[derive(Debug)]
struct Running {
    pid: Pid,
    /// The parent's end of the control socket.
    control: OwnedFd,
}

/// The parent's handle on the key process.
#[derive(Debug, Default)]
pub struct KeyProcess {
    running: Option<Running>,
    /// The last generation number given out (each hand-over takes one).
    generation: u64,
    /// The last `Load` request number.
    request: u64,
    /// When it was last started, for `RESTART_BACKOFF`.
    started: Option<Instant>,
    /// When to start it again, after it died.
    restart_at: Option<Instant>,
    /// The last generation number given out before the running process
    /// started: it holds later generations' keys only.
    started_after: u64,
}

impl KeyProcess {
    /// A handle on no process yet.
    pub fn new() -> KeyProcess {
        KeyProcess::default()
    }

    /// The key process's pid, while it runs.
    pub fn pid(&self) -> Option<Pid> {
        self.running.as_ref().map(|r| r.pid)
    }

    /// Starts the key process unless it runs: forked from this process,
    /// it drops root by `plan` as children do, and confines itself when
    /// `sandbox` says so.
    pub fn ensure_started(&mut self, plan: Option<&DropPlan>, sandbox: bool) -> Result<(), KeyError> {
        if self.running.is_some() {
            return Ok(());
        }
        let (ours, theirs) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
                .map_err(KeyError::Start)?;
        let parent = getpid();
        match sys::fork().map_err(KeyError::Start)? {
            Forked::Child => {
                drop(ours);
                serve::run(theirs, plan, sandbox, parent)
            }
            Forked::Parent(pid) => {
                drop(theirs);
                log::info!("key process {pid} started");
                self.running = Some(Running { pid, control: ours });
                self.started = Some(Instant::now());
                self.restart_at = None;
                self.started_after = self.generation;
                Ok(())
            }
        }
    }

    /// Whether the running key process was handed `generation`'s keys
    /// (`false` when it was started since, or is not running).
    pub fn holds(&self, generation: u64) -> bool {
        self.running.is_some() && generation > self.started_after
    }

    /// A new generation number for a hand-over.
    pub fn new_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Has the key process load the PEM key `pem` as key `index` of
    /// `generation`; returns what it found (no secret). The caller wipes
    /// `pem`.
    pub fn load(&mut self, generation: u64, index: u32, pem: &[u8]) -> Result<Loaded, KeyError> {
        if pem.len() > MAX_KEY_FILE {
            return Err(KeyError::TooLarge(pem.len()));
        }
        let control = self.running.as_ref().ok_or(KeyError::NotRunning)?.control.as_fd();
        self.request += 1;
        let request = self.request;
        let record = Control::Load { request, generation, index, pem }.encode();
        send(control.as_raw_fd(), &record, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL)
            .map_err(KeyError::Control)?;
        drop(record);
        let deadline = Instant::now() + LOAD_TIMEOUT;
        let mut buf = vec![0; MAX_RECORD];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(KeyError::Timeout);
            }
            let mut fds = [PollFd::new(control, PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(left.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(KeyError::Control(e)),
            }
            let n = match recv(control.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return Err(KeyError::Control(Errno::EPIPE)),
                Ok(n) => n,
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => return Err(KeyError::Control(e)),
            };
            match Answer::decode(&buf[..n]) {
                Some(a) if a.request == request => return a.result.map_err(KeyError::Refused),
                // An answer to a load that timed out earlier.
                _ => continue,
            }
        }
    }

    /// Tells the key process that `generation` serves new connections
    /// from now on (see `wire::Control::Commit`).
    pub fn commit(&self, generation: u64) {
        if let Some(r) = &self.running {
            let record = Control::Commit { generation }.encode();
            if let Err(e) =
                send(r.control.as_raw_fd(), &record, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL)
            {
                log::warn!("key process {}: cannot switch it to the new keys: {e}", r.pid);
            }
        }
    }

    /// A channel for a child about to be forked with `generation`'s
    /// keys: the child's end, the other sent to the key process. `None`
    /// when the key process cannot take it (it is down): that child's
    /// handshake fails.
    pub fn channel(&self, generation: u64) -> Option<OwnedFd> {
        let r = self.running.as_ref()?;
        let (ours, theirs) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).ok()?;
        let record = Control::Connect { generation }.encode();
        let fds = [theirs.as_raw_fd()];
        let sent = sendmsg::<()>(
            r.control.as_raw_fd(),
            &[IoSlice::new(&record)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            None,
        );
        match sent {
            Ok(_) => Some(ours),
            Err(e) => {
                crate::log::crash_warning(format_args!("key process {}: cannot pass a channel: {e}", r.pid));
                None
            }
        }
    }

    /// Whether `status` (from the parent's reaping) is the key process's
    /// end: then it is logged, and a restart is due.
    pub fn exited(&mut self, status: WaitStatus) -> bool {
        let Some(pid) = status.pid() else {
            return false;
        };
        if self.pid() != Some(pid) {
            return false;
        }
        self.running = None;
        let how = match status {
            WaitStatus::Exited(_, code) => format!("exited with status {code}"),
            WaitStatus::Signaled(_, sig, _) => format!("was killed by {sig}"),
            other => format!("ended ({other:?})"),
        };
        log::error!("key process {pid} {how}; HTTPS handshakes fail until it is started again");
        let earliest = self.started.map_or_else(Instant::now, |t| t + RESTART_BACKOFF);
        self.restart_at = Some(earliest.max(Instant::now()));
        true
    }

    /// Tries to start it again at `at` (its start failed).
    pub fn retry_at(&mut self, at: Instant) {
        self.restart_at = Some(at);
    }

    /// When the key process is due to be started again, if it died.
    pub fn restart_due(&self) -> Option<Instant> {
        self.restart_at
    }

    /// Ends the key process (at the server's stop, after the children)
    /// and reaps it.
    pub fn stop(&mut self) {
        let Some(r) = self.running.take() else {
            return;
        };
        self.restart_at = None;
        match kill(r.pid, Signal::SIGKILL) {
            Ok(()) => while let Err(Errno::EINTR) = waitpid(r.pid, None) {},
            Err(e) => log::warn!("kill the key process {}: {e}; it ends when this process exits", r.pid),
        }
    }
}
