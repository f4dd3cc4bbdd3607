//! The key process's life: confine itself, then answer the parent's
//! control records and the children's signing requests until the parent
//! goes.
//!
//! Runs in: key process only (forked by `KeyProcess::ensure_started`).
//! It keeps no descriptor but its control socket, the daemon log's and
//! the channels it is sent; it drops root as children do, is not
//! dumpable, and enters its own sandbox (`sandbox::enter_key_process`:
//! no filesystem, no network, a few system calls).

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::prctl::{set_dumpable, set_name, set_no_new_privs, set_pdeathsig};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::Signal;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recv, recvmsg, send};
use nix::unistd::{Pid, getppid};
use rustls::SignatureScheme;
use rustls::sign::SigningKey;
use zeroize::{Zeroize, Zeroizing};

use super::signing_key;
use super::wire::{self, Answer, Control, Loaded, MAX_RECORD, SignRequest};
use crate::log as logging;
use crate::privileges::DropPlan;
use crate::sandbox;
use crate::signals;
use crate::sys;

/// Exit status of a key process whose set-up failed.
const EXIT_SETUP: i32 = 71;

/// Every scheme a key may sign by, in the order rustls's ring provider
/// prefers them for a key that has several (RSA: PSS before PKCS#1 v1.5,
/// longer hashes first).
const SCHEMES: [SignatureScheme; 10] = [
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP521_SHA512,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
];

/// One generation's keys, and how many channels may sign with them.
#[derive(Default)]
struct Keys {
    by_index: HashMap<u32, Arc<dyn SigningKey>>,
    channels: usize,
}

/// Every generation the key process holds keys of.
#[derive(Default)]
struct Keyring {
    generations: HashMap<u64, Keys>,
    /// The generation new children are forked with.
    committed: u64,
}

impl Keyring {
    fn load(&mut self, generation: u64, index: u32, key: Arc<dyn SigningKey>) {
        if !self.generations.contains_key(&generation) {
            // A load for a new generation: an uncommitted one before it
            // was a reload that failed half-way.
            let committed = self.committed;
            self.generations.retain(|&g, k| g <= committed || k.channels > 0);
        }
        self.generations.entry(generation).or_default().by_index.insert(index, key);
    }

    fn commit(&mut self, generation: u64) {
        self.committed = generation;
        self.generations.retain(|&g, k| g == generation || k.channels > 0);
    }

    fn open(&mut self, generation: u64) {
        if let Some(k) = self.generations.get_mut(&generation) {
            k.channels += 1;
        }
    }

    fn close(&mut self, generation: u64) {
        if let Some(k) = self.generations.get_mut(&generation) {
            k.channels = k.channels.saturating_sub(1);
            if k.channels == 0 && generation != self.committed {
                self.generations.remove(&generation);
            }
        }
    }

    fn key(&self, generation: u64, index: u32) -> Option<&Arc<dyn SigningKey>> {
        self.generations.get(&generation)?.by_index.get(&index)
    }
}

/// A child's channel and the generation it signs with.
struct Channel {
    fd: OwnedFd,
    generation: u64,
}

/// The key process: set up, then serve (see `serve`). Never returns.
pub(super) fn run(control: OwnedFd, plan: Option<&DropPlan>, sandboxed: bool, parent: Pid) -> ! {
    if let Err(e) = set_up(&control, plan, sandboxed, parent) {
        log::error!("key process: {e}; it exits");
        sys::exit_child(EXIT_SETUP);
    }
    serve(control)
}

/// The child's ritual (`child::confine`, `child::serve`), for a process with no client: the
/// signals back to their child dispositions, every descriptor closed but
/// the control socket and the daemon log's, no new privileges, root
/// given up, not dumpable, dead with the parent, and confined.
fn set_up(control: &OwnedFd, plan: Option<&DropPlan>, sandboxed: bool, parent: Pid) -> Result<(), String> {
    signals::reset_after_fork().map_err(|e| format!("cannot reset its signals: {e}"))?;
    // Named apart from the children in ps(1) and /proc/PID/comm.
    let _ = set_name(c"forkhttpd-keys");
    let keep = [control.as_raw_fd()].into_iter().chain(logging::syslog_fd()).chain(logging::error_file_fd());
    sys::close_all_except(keep).map_err(|e| format!("cannot close the parent's descriptors: {e}"))?;
    // One descriptor per handshake in progress (up to max_children):
    // the soft limit (often 1024) up to the hard one, while it may.
    let (_, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("cannot read its file limit: {e}"))?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
        .map_err(|e| format!("cannot raise its file limit: {e}"))?;
    set_no_new_privs().map_err(|e| format!("cannot set no_new_privs: {e}"))?;
    if let Some(plan) = plan {
        plan.apply().map_err(|e| format!("cannot drop privileges: {e}"))?;
    }
    set_dumpable(false).map_err(|e| format!("cannot make itself non-dumpable: {e}"))?;
    set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("cannot set the parent-death signal: {e}"))?;
    if getppid() != parent {
        sys::exit_child(0);
    }
    if sandboxed {
        sandbox::enter_key_process().map_err(|e| format!("cannot enter its sandbox: {e}"))?;
    }
    Ok(())
}

/// Answers the parent and the children until the parent closes the
/// control socket (it is stopping, or took this process out of its
/// pool), then until the last channel it holds is closed.
fn serve(control: OwnedFd) -> ! {
    let mut control = Some(control);
    let mut keyring = Keyring::default();
    let mut channels: Vec<Channel> = Vec::new();
    // Holds a private key between a load's receipt and its parsing.
    let mut buf = Zeroizing::new(vec![0u8; MAX_RECORD]);
    loop {
        if control.is_none() && channels.is_empty() {
            sys::exit_child(0);
        }
        // The control socket first, while it is open.
        let first = usize::from(control.is_some());
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = control
                .iter()
                .map(AsFd::as_fd)
                .chain(channels.iter().map(|c| c.fd.as_fd()))
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("key process: poll: {e}; it exits");
                    sys::exit_child(EXIT_SETUP);
                }
            }
            fds.iter().map(|f| f.any() == Some(true)).collect()
        };
        // Channels first, from the last: removing one moves only a later
        // one, already served; the control record may add one at the end.
        for i in (0..channels.len()).rev() {
            if ready[first + i] && !answer(&channels[i], &keyring, &mut buf) {
                let gone = channels.swap_remove(i);
                keyring.close(gone.generation);
            }
        }
        if let Some(c) = control.as_ref().filter(|_| ready[0])
            && !obey(c, &mut keyring, &mut channels, &mut buf)
        {
            control = None;
        }
    }
}

/// Reads one record from a child's channel and answers it. `false` when
/// the channel is done with: closed, broken, or not taking answers.
fn answer(channel: &Channel, keyring: &Keyring, buf: &mut [u8]) -> bool {
    // A plain `recv`: a descriptor a child sends along is discarded.
    let n = match recv(channel.fd.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(Errno::EAGAIN | Errno::EINTR) => return true,
        Err(_) => return false,
    };
    let Some(request) = SignRequest::decode(&buf[..n]) else {
        return false;
    };
    let signature = keyring
        .key(channel.generation, request.index)
        .and_then(|key| key.choose_scheme(&[request.scheme]))
        .and_then(|signer| signer.sign(request.message).ok());
    let record = wire::encode_signature(request.seq, signature.as_deref());
    send(channel.fd.as_raw_fd(), &record, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL).is_ok()
}

/// Reads one control record and does what it says; `false` when the
/// parent has closed its end.
fn obey(control: &OwnedFd, keyring: &mut Keyring, channels: &mut Vec<Channel>, buf: &mut [u8]) -> bool {
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let (n, passed) = {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            control.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(msg) => msg,
            Err(Errno::EAGAIN | Errno::EINTR) => return true,
            Err(e) => {
                log::error!("key process: reading from the parent: {e}; it exits");
                sys::exit_child(EXIT_SETUP);
            }
        };
        let mut passed = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    passed.extend(fds.into_iter().map(sys::adopt_received_fd));
                }
            }
        }
        (msg.bytes, passed)
    };
    if n == 0 {
        return false;
    }
    match Control::decode(&buf[..n]) {
        Some(Control::Load { request, generation, index, pem }) => {
            let result = signing_key(pem).map(|key| {
                let loaded = describe(key.as_ref());
                keyring.load(generation, index, key);
                loaded
            });
            let record = Answer { request, result }.encode();
            if let Err(e) = send(control.as_raw_fd(), &record, MsgFlags::MSG_NOSIGNAL) {
                log::error!("key process: answering the parent: {e}");
            }
        }
        Some(Control::Connect { generation }) => {
            for fd in passed {
                keyring.open(generation);
                channels.push(Channel { fd, generation });
            }
        }
        Some(Control::Commit { generation }) => keyring.commit(generation),
        None => log::error!("key process: the parent sent a record it does not know"),
    }
    buf[..n].zeroize();
    true
}

/// What the stub in a child must know of `key`.
fn describe(key: &dyn SigningKey) -> Loaded {
    Loaded {
        algorithm: key.algorithm(),
        schemes: SCHEMES.into_iter().filter(|&s| key.choose_scheme(&[s]).is_some()).collect(),
        spki: key.public_key().map(|k| k.as_ref().to_vec()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::SignatureAlgorithm;
    use rustls::sign::Signer;

    #[derive(Debug)]
    struct NoKey;

    impl SigningKey for NoKey {
        fn choose_scheme(&self, _: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
            None
        }

        fn algorithm(&self) -> SignatureAlgorithm {
            SignatureAlgorithm::ECDSA
        }
    }

    fn held(ring: &Keyring) -> Vec<u64> {
        let mut g: Vec<u64> = ring.generations.keys().copied().collect();
        g.sort_unstable();
        g
    }

    /// A generation's keys stay while a channel of it is open, and go
    /// with its last one once another serves; a reload that failed
    /// half-way leaves nothing behind.
    #[test]
    fn generations_live_as_long_as_their_channels() {
        let mut ring = Keyring::default();
        ring.load(1, 0, Arc::new(NoKey));
        ring.commit(1);
        ring.open(1);
        ring.load(2, 0, Arc::new(NoKey));
        ring.commit(2);
        assert_eq!(held(&ring), [1, 2], "generation 1 still has a child");
        assert!(ring.key(1, 0).is_some() && ring.key(1, 1).is_none());
        ring.close(1);
        assert_eq!(held(&ring), [2], "its last child is gone");
        // A reload that loaded generation 3 and then failed.
        ring.load(3, 0, Arc::new(NoKey));
        ring.load(4, 0, Arc::new(NoKey));
        assert_eq!(held(&ring), [2, 4]);
        ring.commit(4);
        assert_eq!(held(&ring), [4]);
        // The generation in force stays with no channel open.
        ring.open(4);
        ring.close(4);
        assert_eq!(held(&ring), [4]);
    }
}
