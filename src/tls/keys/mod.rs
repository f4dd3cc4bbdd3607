//! The key processes: the only processes that hold the sites' private
//! keys, and sign for children that ask, as OpenBSD relayd's CA process
//! does. A child taken over by its client holds certificates and a
//! signing stub, never a key: it can have handshakes signed while it
//! lives, but cannot read a key, nor take one with it.
//!
//! Runs in: parent (this handle: starting, loading, one channel per
//! child, restarting), key process (`serve`) and child (`remote`, the
//! stub rustls signs through).
//!
//! **How many.** One per CPU the server may run on by default
//! (`tls_key_processes`): a key process signs one handshake at a time,
//! and with one alone every RSA signature of the server waits for one
//! core while the children's handshakes spread over all of them. Each is
//! started, handed the keys, sandboxed and restarted on its own, and
//! each HTTPS child is given a channel to one of them, in turn (round
//! robin, skipping one that is down or lacks the child's generation), so
//! the signatures spread as the children do. A reload that asks for
//! fewer retires the extra ones: closed to new channels, each exits once
//! the handshakes it is signing are done.
//!
//! **Channels.** The parent makes one `SOCK_SEQPACKET` socket pair per
//! HTTPS connection just before it forks the child: the child keeps one
//! end, and the other goes to one key process over its control socket,
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
//! (`zeroize`) once every key process has the bytes; it never parses one
//! (a parsed key would leave its numbers in memory the parent does not
//! own, which every later child would inherit): each key process parses
//! it and answers with its public half, which the parent checks against
//! the certificate, and the schemes it signs with. A reload hands over
//! the new generation's keys to each; the old generation's are kept
//! while a channel of it is open, so its children finish their
//! handshakes.
//!
//! **Failures.** A key process that dies is reaped like a child and
//! started again (at most once a second), with the current generation's
//! key files read again and handed to it alone; meanwhile new children
//! get channels to the others, and children whose channel went with it
//! fail their handshake at once (the channel is closed). With none
//! running a handshake fails at once, and a key process that does not
//! answer fails it after `remote::SIGN_TIMEOUT`.
//!
//! `tls_key_process = false` keeps the keys in every child instead (the
//! faster choice only where signing itself dominates, and the baseline
//! the benchmark compares with): see forkhttpd(8), SECURITY.

pub mod remote;
mod serve;
pub mod wire;

use std::fmt;
use std::io::IoSlice;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, MultiHeaders, SockFlag, SockType, recv, send, sendmmsg,
    socketpair,
};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, getpid};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::sign::SigningKey;

use crate::privileges::DropPlan;
use crate::sys::{self, Forked};
use wire::{Answer, Control, Loaded, MAX_RECORD, connect_record};

/// How long the parent waits for the key process to load a key.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time between two starts of a key process: one that dies at
/// once is not restarted in a busy loop, and one whose fork failed is
/// tried again after it.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// Why the key process could not be started or did not load a key.
#[derive(Debug)]
pub enum KeyError {
    /// Its control socket could not be made, or the fork failed.
    Start(Errno),
    /// None is running (each died, and has not been restarted yet).
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
            KeyError::NotRunning => write!(f, "no key process is running"),
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

/// How many key processes `tls_key_processes` asks for: `configured`,
/// or with 0 one per CPU this process may run on (its affinity mask and
/// cgroup quota, as `available_parallelism` reads them).
pub fn count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        n => n,
    }
}

/// How key processes are started.
#[derive(Clone, Copy, Debug)]
pub struct Launch<'a> {
    /// The privilege drop each applies, as children do.
    pub plan: Option<&'a DropPlan>,
    /// Whether each confines itself (`sandbox::enter_key_process`).
    pub sandbox: bool,
    /// How many there are to be (`count`): at least one.
    pub count: usize,
}

/// A running key process.
#[derive(Debug)]
struct Running {
    pid: Pid,
    /// The parent's end of its control socket.
    control: OwnedFd,
}

/// One place in the pool: a key process, running or due to be started.
#[derive(Debug, Default)]
struct Slot {
    running: Option<Running>,
    /// When it was last started, for `RESTART_BACKOFF`.
    started: Option<Instant>,
    /// When to start it again, after it died or its start failed.
    restart_at: Option<Instant>,
    /// The first and last generation handed to the running process: it
    /// holds the keys of those between (every hand-over goes to each
    /// process running then); `None` before its first.
    held: Option<(u64, u64)>,
}

impl Slot {
    fn holds(&self, generation: u64) -> bool {
        self.running.is_some() && self.held.is_some_and(|(first, last)| (first..=last).contains(&generation))
    }
}

/// The message header a channel is passed with, its room for one
/// descriptor included, made once: passing a channel (once per HTTPS
/// connection accepted) allocates nothing, where `sendmsg` would make
/// its control buffer each time.
#[derive(Debug)]
struct PassHeader(MultiHeaders<()>);

impl Default for PassHeader {
    fn default() -> PassHeader {
        PassHeader(MultiHeaders::preallocate(1, Some(nix::cmsg_space!(RawFd))))
    }
}

/// The parent's handle on the key processes.
#[derive(Debug, Default)]
pub struct KeyProcesses {
    slots: Vec<Slot>,
    /// Key processes a reload took out of the pool: each exits once its
    /// channels are closed, and is reaped as the others are.
    retired: Vec<Pid>,
    /// The last generation number given out (each hand-over takes one).
    generation: u64,
    /// The last `Load` request number.
    request: u64,
    /// The slot the next channel is tried on first.
    next: usize,
    header: PassHeader,
}

impl KeyProcesses {
    /// A handle on no process yet.
    pub fn new() -> KeyProcesses {
        KeyProcesses::default()
    }

    /// The running key processes' pids, in the pool's order.
    pub fn pids(&self) -> impl Iterator<Item = Pid> + '_ {
        self.slots.iter().filter_map(|s| s.running.as_ref().map(|r| r.pid))
    }

    /// Makes the pool `launch.count` key processes and starts each that
    /// is not running (forked from this process, each drops root by
    /// `launch.plan` as children do, and confines itself when
    /// `launch.sandbox` says so). One whose start fails is logged and
    /// tried again after `RESTART_BACKOFF`; an error only when none runs.
    pub fn ensure_started(&mut self, launch: Launch<'_>) -> Result<(), KeyError> {
        self.resize(launch.count.max(1));
        let mut failed = None;
        for slot in &mut self.slots {
            if slot.running.is_some() {
                continue;
            }
            if let Err(e) = start(slot, launch) {
                log::error!("{e}; trying again in {RESTART_BACKOFF:?}");
                slot.restart_at = Some(Instant::now() + RESTART_BACKOFF);
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) if self.pids().next().is_none() => Err(e),
            _ => Ok(()),
        }
    }

    /// Starts each key process whose restart is due at `now`, as
    /// `ensure_started` does (but the pool keeps its size).
    pub fn restart_due_ones(&mut self, now: Instant, plan: Option<&DropPlan>, sandbox: bool) {
        let launch = Launch { plan, sandbox, count: self.slots.len() };
        for slot in &mut self.slots {
            if slot.running.is_some() || slot.restart_at.is_none_or(|at| at > now) {
                continue;
            }
            if let Err(e) = start(slot, launch) {
                log::error!("{e}; trying again in {RESTART_BACKOFF:?}");
                slot.restart_at = Some(now + RESTART_BACKOFF);
            }
        }
    }

    /// Grows the pool with slots to be started, or retires the key
    /// processes past `count`: their control sockets are closed, so they
    /// take no new channel and exit once the handshakes in flight on
    /// theirs are done.
    fn resize(&mut self, count: usize) {
        if count >= self.slots.len() {
            self.slots.resize_with(count, Slot::default);
            return;
        }
        for slot in self.slots.drain(count..) {
            if let Some(r) = slot.running {
                log::info!("key process {} retired: it exits once its handshakes in flight are done", r.pid);
                self.retired.push(r.pid);
            }
        }
        self.next = 0;
    }

    /// Whether every running key process was handed `generation`'s keys
    /// (`false` while none runs).
    pub fn all_hold(&self, generation: u64) -> bool {
        let running = || self.slots.iter().filter(|s| s.running.is_some());
        running().next().is_some() && running().all(|s| s.holds(generation))
    }

    /// A new generation number for a hand-over.
    pub fn new_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Has every running key process that lacks `generation` load the
    /// PEM key `pem` as key `index` of it; returns what they found (no
    /// secret). The caller wipes `pem`, and calls `handed` once every
    /// key of the generation is loaded. A key process that cannot be
    /// talked to is killed, to be started again, and the others' answer
    /// stands.
    pub fn load(&mut self, generation: u64, index: u32, pem: &[u8]) -> Result<Loaded, KeyError> {
        if pem.len() > MAX_KEY_FILE {
            return Err(KeyError::TooLarge(pem.len()));
        }
        let mut found = None;
        let mut broken = None;
        for slot in self.slots.iter().filter(|s| !s.holds(generation)) {
            let Some(r) = &slot.running else {
                continue;
            };
            self.request += 1;
            match load_into(r, self.request, generation, index, pem) {
                Ok(loaded) => found = Some(loaded),
                Err(e @ KeyError::Refused(_)) => return Err(e),
                Err(e) => {
                    log::error!("key process {}: {e}; killing it, to start it again", r.pid);
                    let _ = kill(r.pid, Signal::SIGKILL);
                    broken.get_or_insert(e);
                }
            }
        }
        found.ok_or(broken.unwrap_or(KeyError::NotRunning))
    }

    /// Records that every running key process that lacked `generation`
    /// was handed its keys (by `load`).
    pub fn handed(&mut self, generation: u64) {
        for slot in self.slots.iter_mut().filter(|s| s.running.is_some() && !s.holds(generation)) {
            slot.held = Some(match slot.held {
                Some((first, last)) => (first.min(generation), last.max(generation)),
                None => (generation, generation),
            });
        }
    }

    /// Tells every key process that `generation` serves new connections
    /// from now on (see `wire::Control::Commit`).
    pub fn commit(&self, generation: u64) {
        let record = Control::Commit { generation }.encode();
        for r in self.slots.iter().filter_map(|s| s.running.as_ref()) {
            if let Err(e) =
                send(r.control.as_raw_fd(), &record, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL)
            {
                log::warn!("key process {}: cannot switch it to the new keys: {e}", r.pid);
            }
        }
    }

    /// A channel for a child about to be forked with `generation`'s
    /// keys: the child's end, the other sent to the next key process in
    /// turn that holds them (one that cannot take it, as one that just
    /// died, is passed over). `None` when none can: that child's
    /// handshake fails. Looks at each key process at most once, and
    /// allocates nothing of its own.
    pub fn channel(&mut self, generation: u64) -> Option<OwnedFd> {
        let count = self.slots.len();
        if count == 0 {
            return None;
        }
        let (ours, theirs) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).ok()?;
        let record = connect_record(generation);
        let iov = [IoSlice::new(&record)];
        let fds = [theirs.as_raw_fd()];
        let rights = [ControlMessage::ScmRights(&fds)];
        for k in 0..count {
            let i = (self.next + k) % count;
            let slot = &self.slots[i];
            let Some(r) = slot.running.as_ref().filter(|_| slot.holds(generation)) else {
                continue;
            };
            let sent = sendmmsg(
                r.control.as_raw_fd(),
                &mut self.header.0,
                [&iov],
                [None],
                rights,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            )
            .map(|sent| sent.count());
            match sent {
                Ok(1) => {
                    self.next = (i + 1) % count;
                    return Some(ours);
                }
                Ok(_) => {
                    crate::log::crash_warning(format_args!("key process {}: cannot pass a channel", r.pid))
                }
                Err(e) => crate::log::crash_warning(format_args!(
                    "key process {}: cannot pass a channel: {e}",
                    r.pid
                )),
            }
        }
        None
    }

    /// Whether `status` (from the parent's reaping) is a key process's
    /// end: then it is logged, and that one's restart is due.
    pub fn exited(&mut self, status: WaitStatus) -> bool {
        let Some(pid) = status.pid() else {
            return false;
        };
        let how = || match status {
            WaitStatus::Exited(_, code) => format!("exited with status {code}"),
            WaitStatus::Signaled(_, sig, _) => format!("was killed by {sig}"),
            other => format!("ended ({other:?})"),
        };
        if let Some(at) = self.retired.iter().position(|&p| p == pid) {
            self.retired.swap_remove(at);
            match status {
                WaitStatus::Exited(_, 0) => log::info!("key process {pid}, retired, has exited"),
                _ => log::warn!("key process {pid}, retired, {}", how()),
            }
            return true;
        }
        let Some(slot) = self.slots.iter_mut().find(|s| s.running.as_ref().is_some_and(|r| r.pid == pid))
        else {
            return false;
        };
        slot.running = None;
        slot.held = None;
        let earliest = slot.started.map_or_else(Instant::now, |t| t + RESTART_BACKOFF);
        slot.restart_at = Some(earliest.max(Instant::now()));
        let meanwhile = match self.pids().count() {
            0 => "HTTPS handshakes fail".to_string(),
            1 => "the other key process signs".to_string(),
            n => format!("the {n} others sign"),
        };
        log::error!("key process {pid} {}; {meanwhile} until it is started again", how());
        true
    }

    /// When a key process is next due to be started again, if one died.
    pub fn restart_due(&self) -> Option<Instant> {
        self.slots.iter().filter_map(|s| s.restart_at).min()
    }

    /// Ends every key process, retired ones too (at the server's stop,
    /// after the children), and reaps them.
    pub fn stop(&mut self) {
        let running = self.slots.drain(..).filter_map(|s| s.running.map(|r| r.pid));
        let pids: Vec<Pid> = running.chain(self.retired.drain(..)).collect();
        for pid in pids {
            match kill(pid, Signal::SIGKILL) {
                Ok(()) => while let Err(Errno::EINTR) = waitpid(pid, None) {},
                Err(e) => log::warn!("kill the key process {pid}: {e}; it ends when this process exits"),
            }
        }
    }
}

/// Forks a key process into `slot`.
fn start(slot: &mut Slot, launch: Launch<'_>) -> Result<(), KeyError> {
    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(KeyError::Start)?;
    let parent = getpid();
    match sys::fork().map_err(KeyError::Start)? {
        Forked::Child => {
            drop(ours);
            serve::run(theirs, launch.plan, launch.sandbox, parent)
        }
        Forked::Parent(pid) => {
            drop(theirs);
            log::info!("key process {pid} started");
            *slot = Slot {
                running: Some(Running { pid, control: ours }),
                started: Some(Instant::now()),
                restart_at: None,
                held: None,
            };
            Ok(())
        }
    }
}

/// Has the key process `r` load `pem` as key `index` of `generation`,
/// and waits for its answer up to `LOAD_TIMEOUT`.
fn load_into(r: &Running, request: u64, generation: u64, index: u32, pem: &[u8]) -> Result<Loaded, KeyError> {
    let control = r.control.as_fd();
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
