//! Session tickets whose keys the parent owns, so that a client resumes
//! its session on whichever child serves its next connection.
//!
//! Runs in: parent (the keys are made before any child exists, and
//! rotated by the accept loop on a schedule, `tls_ticket_rotation`) and
//! child (it seals and opens tickets with the keys it inherited through
//! `fork`; it never changes them).
//!
//! Not rustls's own ticketer: that one rotates lazily, in the process that
//! encrypts. The parent never encrypts, so once a lifetime had passed,
//! every child would roll a key of its own at its first ticket, which no
//! other child can open: resumption would silently stop.
//!
//! A ticket is `key name (16) ‖ nonce (12) ‖ sealed state ‖ tag (16)`,
//! sealed with ChaCha20-Poly1305 under the key the name picks, the name
//! authenticated as associated data. Nonces are random: a counter would
//! need state every child shares, and would link a client's tickets.
//! Two keys are accepted, the current one and the one before it, so a
//! ticket is good for between one and two rotation periods.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

/// The longest `tls_ticket_rotation`: a ticket lives two periods, and
/// RFC 8446 (4.6.1) lets it live 7 days at most.
pub const MAX_ROTATION: Duration = Duration::from_secs(7 * 86_400 / 2);

/// The sealing algorithm.
static ALGORITHM: &aead::Algorithm = &aead::CHACHA20_POLY1305;
/// Bytes of a key's name, the ticket's first.
const NAME_LEN: usize = 16;
/// The longest ticket opened. A sealed session state is a few hundred
/// bytes (a server name, a secret, the ALPN protocol); anything much
/// longer did not come from here, and is refused before any work.
const MAX_TICKET_LEN: usize = 2048;

/// The system's random source (getrandom(2)) could not give bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomFailed;

impl fmt::Display for RandomFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot make a session-ticket key: the system's random source (getrandom) failed")
    }
}

impl std::error::Error for RandomFailed {}

/// One ticket key and its public name.
struct Key {
    name: [u8; NAME_LEN],
    key: LessSafeKey,
}

impl Key {
    /// A key and a name, both random.
    fn generate() -> Result<Key, RandomFailed> {
        let random = SystemRandom::new();
        let mut name = [0u8; NAME_LEN];
        random.fill(&mut name).map_err(|_| RandomFailed)?;
        let mut secret = [0u8; 32];
        random.fill(&mut secret).map_err(|_| RandomFailed)?;
        let key = UnboundKey::new(ALGORITHM, &secret).map_err(|_| RandomFailed)?;
        // ring keeps its own copy; this one is erased now (black_box keeps
        // the writes from being optimised away; the copies ring's key
        // leaves on the stack on its way into place are not reached).
        secret.fill(0);
        std::hint::black_box(&secret);
        Ok(Key { name, key: LessSafeKey::new(key) })
    }

    /// Seals `plain` into a ticket; `None` if no nonce could be drawn.
    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let head = NAME_LEN + nonce.len();
        let mut ticket = Vec::with_capacity(head + plain.len() + ALGORITHM.tag_len());
        ticket.extend_from_slice(&self.name);
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.name),
                &mut ticket[head..],
            )
            .ok()?;
        ticket.extend_from_slice(tag.as_ref());
        Some(ticket)
    }

    /// Opens a ticket this key sealed (its name already matched); `None`
    /// if it is cut short or was altered.
    fn open(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let (nonce, sealed) = ticket.get(NAME_LEN..)?.split_at_checked(aead::NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut plain = sealed.to_vec();
        let len = self.key.open_in_place(nonce, Aad::from(self.name), &mut plain).ok()?.len();
        plain.truncate(len);
        Some(plain)
    }
}

/// The keys in force, shared by the parent and every TLS configuration
/// it made.
struct Keys {
    /// What new tickets are sealed with.
    current: Key,
    /// The key before it, still accepted until the next rotation.
    previous: Option<Key>,
}

/// Reads shared keys.
fn read(keys: &RwLock<Keys>) -> RwLockReadGuard<'_, Keys> {
    keys.read().unwrap_or_else(PoisonError::into_inner)
}

/// The session-ticket keys of the server: made once by the parent before
/// any fork, kept across reloads, rotated by the parent. Clones share the
/// keys: every generation's TLS configuration reads the same ones, and a
/// child reads the copy it inherited at fork.
#[derive(Clone)]
pub struct TicketKeys {
    keys: Arc<RwLock<Keys>>,
    /// When the current key was made. Out of the lock: the accept loop
    /// reads it at every wake-up, and taking even a read lock writes to
    /// the lock, a page each child forked after would copy.
    rotated_at: Instant,
}

impl TicketKeys {
    /// A first key, made at `now`, with none before it.
    pub fn new(now: Instant) -> Result<TicketKeys, RandomFailed> {
        let keys = Keys { current: Key::generate()?, previous: None };
        Ok(TicketKeys { keys: Arc::new(RwLock::new(keys)), rotated_at: now })
    }

    /// When the current key was made.
    pub fn rotated_at(&self) -> Instant {
        self.rotated_at
    }

    /// Makes a new current key at `now`; the current one becomes the
    /// previous one, written over it in place, so that the dropped key
    /// is not left in the parent's heap for children to inherit. If no
    /// key can be made, the keys stay as they are until the next period
    /// (the schedule moves on either way, so the caller never spins).
    pub fn rotate(&mut self, now: Instant) -> Result<(), RandomFailed> {
        self.rotated_at = now;
        let fresh = Key::generate()?;
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        keys.previous = Some(std::mem::replace(&mut keys.current, fresh));
        Ok(())
    }

    /// The ticket producer for a TLS configuration whose keys rotate
    /// every `period`: its tickets are announced to live two periods, the
    /// longest the previous key can still open them.
    pub fn ticketer(&self, period: Duration) -> Arc<dyn ProducesTickets> {
        let lifetime = u32::try_from(period.as_secs().saturating_mul(2)).unwrap_or(u32::MAX);
        Arc::new(Ticketer { keys: Arc::clone(&self.keys), lifetime })
    }
}

impl fmt::Debug for TicketKeys {
    /// Never the keys themselves.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKeys").field("rotated_at", &self.rotated_at).finish_non_exhaustive()
    }
}

/// rustls's view of the keys: seals with the current key, opens with the
/// key the ticket names, if it is still held.
struct Ticketer {
    keys: Arc<RwLock<Keys>>,
    /// Seconds a ticket is announced to live.
    lifetime: u32,
}

impl fmt::Debug for Ticketer {
    /// Never the keys themselves.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticketer").field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        read(&self.keys).current.seal(plain)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() > MAX_TICKET_LEN {
            return None;
        }
        let name = ticket.get(..NAME_LEN)?;
        let keys = read(&self.keys);
        // Names are public (every ticket carries one): comparing them in
        // variable time leaks nothing; the tag is what authenticates.
        std::iter::once(&keys.current).chain(&keys.previous).find(|k| k.name == name)?.open(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &[u8] = b"a session's state, as rustls encodes it";

    fn keys() -> (TicketKeys, Arc<dyn ProducesTickets>) {
        let keys = TicketKeys::new(Instant::now()).unwrap();
        let ticketer = keys.ticketer(Duration::from_secs(3600));
        (keys, ticketer)
    }

    #[test]
    fn a_ticket_opens_to_what_was_sealed_and_lives_two_periods() {
        let (_, t) = keys();
        assert!(t.enabled());
        assert_eq!(t.lifetime(), 7200);
        let ticket = t.encrypt(STATE).unwrap();
        assert_eq!(ticket.len(), NAME_LEN + aead::NONCE_LEN + STATE.len() + 16);
        assert!(!ticket.windows(STATE.len()).any(|w| w == STATE), "the state is sealed, not copied");
        assert_eq!(t.decrypt(&ticket).as_deref(), Some(STATE));
        // A random nonce each time: two tickets for one state differ.
        assert_ne!(t.encrypt(STATE).unwrap(), ticket);
    }

    #[test]
    fn the_previous_key_opens_until_the_next_rotation() {
        let (mut keys, t) = keys();
        let before = t.encrypt(STATE).unwrap();
        let start = keys.rotated_at();
        keys.rotate(start + Duration::from_secs(3600)).unwrap();
        assert_eq!(keys.rotated_at(), start + Duration::from_secs(3600));
        let after = t.encrypt(STATE).unwrap();
        assert_ne!(before[..NAME_LEN], after[..NAME_LEN], "sealed under a new key");
        assert_eq!(t.decrypt(&before).as_deref(), Some(STATE), "the previous key still opens");
        keys.rotate(start + Duration::from_secs(7200)).unwrap();
        assert_eq!(t.decrypt(&before), None, "two rotations on, its key is gone");
        assert_eq!(t.decrypt(&after).as_deref(), Some(STATE));
    }

    #[test]
    fn every_clone_and_ticketer_shares_the_keys() {
        let (keys, t) = keys();
        let mut clone = keys.clone();
        let other = clone.ticketer(Duration::from_secs(10));
        assert_eq!(other.lifetime(), 20);
        let ticket = t.encrypt(STATE).unwrap();
        assert_eq!(other.decrypt(&ticket).as_deref(), Some(STATE));
        clone.rotate(Instant::now()).unwrap();
        assert_eq!(t.encrypt(STATE).unwrap()[..NAME_LEN], other.encrypt(STATE).unwrap()[..NAME_LEN]);
    }

    #[test]
    fn a_ticket_of_other_keys_does_not_open() {
        let (_, t) = keys();
        let (_, stranger) = keys();
        assert_eq!(t.decrypt(&stranger.encrypt(STATE).unwrap()), None);
        assert_eq!(t.decrypt(&[]), None);
        assert_eq!(t.decrypt(&[0u8; 100]), None);
    }

    #[test]
    fn an_altered_or_cut_ticket_does_not_open() {
        let (_, t) = keys();
        let ticket = t.encrypt(STATE).unwrap();
        for i in [0, NAME_LEN, NAME_LEN + aead::NONCE_LEN, ticket.len() - 1] {
            let mut bad = ticket.clone();
            bad[i] ^= 1;
            assert_eq!(t.decrypt(&bad), None, "byte {i} flipped");
        }
        for len in [NAME_LEN, NAME_LEN + aead::NONCE_LEN, ticket.len() - 1] {
            assert_eq!(t.decrypt(&ticket[..len]), None, "cut to {len} bytes");
        }
        let mut long = ticket.clone();
        long.resize(MAX_TICKET_LEN + 1, 0);
        assert_eq!(t.decrypt(&long), None);
    }
}
