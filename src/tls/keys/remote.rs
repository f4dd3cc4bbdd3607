//! The signing key a child holds when the keys are in the key process:
//! rustls's `SigningKey` and `Signer` over the child's channel. It knows
//! the key's public half and schemes (from the key process, through the
//! parent), never the key.
//!
//! Runs in: parent (made per generation, filled in when the key process
//! has loaded the key) and child (the signing, during its handshake,
//! over the channel the parent made for it: `use_channel`).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, recv, send};
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use super::wire::{self, Loaded, MAX_RECORD, SignRequest};

/// The longest a child waits for a signature: a key process that is
/// stopped or stuck fails the handshake after this, rather than holding
/// the child until its client gives up.
pub const SIGN_TIMEOUT: Duration = Duration::from_secs(3);

/// This child's channel to the key process (never set in the parent).
static CHANNEL: Mutex<Option<OwnedFd>> = Mutex::new(None);
/// The number of this child's next request.
static SEQ: AtomicU32 = AtomicU32::new(0);

/// Makes `fd` the channel this child's signing keys ask through. Call in
/// the child, once, before its handshake.
pub fn use_channel(fd: OwnedFd) {
    *CHANNEL.lock().unwrap_or_else(PoisonError::into_inner) = Some(fd);
}

/// Closes this child's channel: a connection signs once, in its full
/// handshake, and a keep-alive connection must not hold one of the key
/// process's descriptors for the rest of its life. Call once the
/// handshake is done.
pub fn hang_up() {
    CHANNEL.lock().unwrap_or_else(PoisonError::into_inner).take();
}

/// One site's key, as the key process described it.
#[derive(Debug)]
pub struct RemoteKey {
    /// The key's number in its generation (its site's index).
    index: u32,
    /// What the key process said of it, once it has loaded it.
    loaded: OnceLock<Loaded>,
}

impl RemoteKey {
    /// Key `index`, not yet loaded.
    pub fn new(index: u32) -> RemoteKey {
        RemoteKey { index, loaded: OnceLock::new() }
    }

    /// Records what the key process found in the key file. A later load
    /// (after the key process restarted) must find the same key, or the
    /// certificate would no longer match it.
    pub fn accept(&self, loaded: Loaded) -> Result<(), String> {
        match self.loaded.get() {
            Some(known) if known.spki != loaded.spki => {
                Err("changed since its certificate was loaded: reload to serve the new pair".to_string())
            }
            Some(_) => Ok(()),
            None => {
                let _ = self.loaded.set(loaded);
                Ok(())
            }
        }
    }
}

impl SigningKey for RemoteKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let loaded = self.loaded.get()?;
        let scheme = loaded.schemes.iter().copied().find(|s| offered.contains(s))?;
        Some(Box::new(RemoteSigner { index: self.index, scheme }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        self.loaded.get().map(|l| SubjectPublicKeyInfoDer::from(l.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.loaded.get().map_or(SignatureAlgorithm::Unknown(0), |l| l.algorithm)
    }
}

/// One signature to be made by the key process.
#[derive(Debug)]
struct RemoteSigner {
    index: u32,
    scheme: SignatureScheme,
}

impl Signer for RemoteSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        ask(self.index, self.scheme, message)
            .map_err(|why| rustls::Error::General(format!("key process: {why}")))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// Sends the request and waits for its answer, up to `SIGN_TIMEOUT`.
fn ask(index: u32, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, &'static str> {
    let channel = CHANNEL.lock().unwrap_or_else(PoisonError::into_inner);
    let fd = channel.as_ref().ok_or("not reachable")?;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let record = SignRequest { seq, index, scheme, message }.encode();
    if record.len() > MAX_RECORD {
        return Err("message too long to sign");
    }
    send(fd.as_raw_fd(), &record, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL).map_err(|_| "gone")?;
    let deadline = Instant::now() + SIGN_TIMEOUT;
    let mut buf = vec![0; MAX_RECORD];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no answer in time");
        }
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(left.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return Err("gone"),
        }
        let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => return Err("gone"),
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(_) => return Err("gone"),
        };
        match wire::decode_signature(&buf[..n]) {
            Some((s, Some(signature))) if s == seq => return Ok(signature.to_vec()),
            Some((s, None)) if s == seq => return Err("refused"),
            // The answer to an earlier request that timed out.
            _ => continue,
        }
    }
}
