//! The key process's messages, as bytes: what the parent says to it on
//! its control socket, what it answers, and the one question a child may
//! ask on its own channel (sign these bytes) with its answer. Every
//! message is one `SOCK_SEQPACKET` record, integers little-endian.
//!
//! Runs in: parent (control messages), key process (both sides) and
//! child (signing requests). Pure.

use rustls::{SignatureAlgorithm, SignatureScheme};
use zeroize::Zeroizing;

/// The largest record either side sends or accepts: a PEM private key
/// (an RSA 8192 key is some 6.5 KB) or a message to sign (a few hundred
/// bytes in TLS 1.2 and 1.3) with its header, well within a socket's
/// buffer.
pub const MAX_RECORD: usize = 16 * 1024;

const LOAD: u8 = b'L';
const CONNECT: u8 = b'C';
const COMMIT: u8 = b'K';
const LOADED: u8 = b'+';
const REFUSED: u8 = b'-';

/// What the parent tells the key process.
#[derive(Debug, PartialEq, Eq)]
pub enum Control<'a> {
    /// Load a PEM private key as key `index` of `generation`; answered
    /// by an `Answer` carrying `request`.
    Load {
        /// Echoed in the answer, so that a late answer to an earlier
        /// request is never taken for this one's.
        request: u64,
        /// The generation the key belongs to.
        generation: u64,
        /// The key's number in it (its site's index).
        index: u32,
        /// The key file's bytes.
        pem: &'a [u8],
    },
    /// The descriptor sent with this record is a child's channel, which
    /// may sign with `generation`'s keys only.
    Connect {
        /// The generation the child was forked with.
        generation: u64,
    },
    /// `generation` now serves new connections: older generations are
    /// forgotten once no channel uses them, and loads of any other
    /// (a reload that failed half-way) at once.
    Commit {
        /// The generation in force.
        generation: u64,
    },
}

impl Control<'_> {
    /// The record, wiped when dropped (a `Load` carries a private key).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        match self {
            Control::Load { request, generation, index, pem } => {
                out.reserve_exact(1 + 8 + 8 + 4 + pem.len());
                out.push(LOAD);
                out.extend_from_slice(&request.to_le_bytes());
                out.extend_from_slice(&generation.to_le_bytes());
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(pem);
            }
            Control::Connect { generation } => out.extend_from_slice(&connect_record(*generation)),
            Control::Commit { generation } => {
                out.push(COMMIT);
                out.extend_from_slice(&generation.to_le_bytes());
            }
        }
        out
    }

    /// Reads a record; `None` for one that is none of these.
    pub fn decode(record: &[u8]) -> Option<Control<'_>> {
        let (&tag, rest) = record.split_first()?;
        match tag {
            LOAD => {
                let (request, rest) = u64_at(rest)?;
                let (generation, rest) = u64_at(rest)?;
                let (index, pem) = u32_at(rest)?;
                Some(Control::Load { request, generation, index, pem })
            }
            CONNECT => Some(Control::Connect { generation: exactly_u64(rest)? }),
            COMMIT => Some(Control::Commit { generation: exactly_u64(rest)? }),
            _ => None,
        }
    }
}

/// The `Control::Connect` record for `generation`, on the stack: the
/// parent sends one for each HTTPS connection it accepts, and its accept
/// path allocates nothing for it.
pub fn connect_record(generation: u64) -> [u8; 9] {
    let mut out = [CONNECT; 9];
    out[1..].copy_from_slice(&generation.to_le_bytes());
    out
}

/// What a loaded key is, as the child's stub must know it to choose a
/// scheme and to be checked against its certificate: no secret in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The key's algorithm.
    pub algorithm: SignatureAlgorithm,
    /// The schemes it signs with, in rustls's order of preference.
    pub schemes: Vec<SignatureScheme>,
    /// Its public half (a DER `SubjectPublicKeyInfo`).
    pub spki: Vec<u8>,
}

/// The key process's answer to a `Load`.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// The load's `request`.
    pub request: u64,
    /// The key, or why it could not be loaded.
    pub result: Result<Loaded, String>,
}

impl Answer {
    /// The record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.result {
            Ok(key) => {
                out.push(LOADED);
                out.extend_from_slice(&self.request.to_le_bytes());
                out.push(u8::from(key.algorithm));
                let count = u8::try_from(key.schemes.len()).unwrap_or(u8::MAX);
                out.push(count);
                for &s in key.schemes.iter().take(usize::from(count)) {
                    out.extend_from_slice(&u16::from(s).to_le_bytes());
                }
                out.extend_from_slice(&key.spki);
            }
            Err(why) => {
                out.push(REFUSED);
                out.extend_from_slice(&self.request.to_le_bytes());
                out.extend_from_slice(why.as_bytes());
            }
        }
        out
    }

    /// Reads a record; `None` for one that is not an answer.
    pub fn decode(record: &[u8]) -> Option<Answer> {
        let (&tag, rest) = record.split_first()?;
        let (request, rest) = u64_at(rest)?;
        let result = match tag {
            LOADED => {
                let (&algorithm, rest) = rest.split_first()?;
                let (&count, mut rest) = rest.split_first()?;
                let mut schemes = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    let (s, after) = u16_at(rest)?;
                    schemes.push(SignatureScheme::from(s));
                    rest = after;
                }
                Ok(Loaded { algorithm: SignatureAlgorithm::from(algorithm), schemes, spki: rest.to_vec() })
            }
            REFUSED => Err(String::from_utf8_lossy(rest).into_owned()),
            _ => return None,
        };
        Some(Answer { request, result })
    }
}

/// A child's question: sign `message` with key `index` by `scheme`.
#[derive(Debug, PartialEq, Eq)]
pub struct SignRequest<'a> {
    /// Echoed in the answer (see `Control::Load`'s `request`).
    pub seq: u32,
    /// The key's number in the child's generation.
    pub index: u32,
    /// The signature scheme the handshake chose.
    pub scheme: SignatureScheme,
    /// The bytes to sign.
    pub message: &'a [u8],
}

impl SignRequest<'_> {
    /// The record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.message.len());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&u16::from(self.scheme).to_le_bytes());
        out.extend_from_slice(self.message);
        out
    }

    /// Reads a record; `None` when it is too short to be one.
    pub fn decode(record: &[u8]) -> Option<SignRequest<'_>> {
        let (seq, rest) = u32_at(record)?;
        let (index, rest) = u32_at(rest)?;
        let (scheme, message) = u16_at(rest)?;
        Some(SignRequest { seq, index, scheme: SignatureScheme::from(scheme), message })
    }
}

/// The answer to a `SignRequest`: its `seq`, and the signature or
/// nothing (no such key in the child's generation, or it cannot sign by
/// that scheme).
pub fn encode_signature(seq: u32, signature: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + signature.map_or(0, <[u8]>::len));
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(u8::from(signature.is_some()));
    out.extend_from_slice(signature.unwrap_or_default());
    out
}

/// Reads an answer to a `SignRequest`: its `seq`, and the signature or
/// `None` for a refusal.
pub fn decode_signature(record: &[u8]) -> Option<(u32, Option<&[u8]>)> {
    let (seq, rest) = u32_at(record)?;
    let (&ok, signature) = rest.split_first()?;
    Some((seq, (ok == 1).then_some(signature)))
}

fn u16_at(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<2>()?;
    Some((u16::from_le_bytes(*head), rest))
}

fn u32_at(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*head), rest))
}

fn u64_at(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*head), rest))
}

fn exactly_u64(bytes: &[u8]) -> Option<u64> {
    let (n, rest) = u64_at(bytes)?;
    rest.is_empty().then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_records_round_trip() {
        let pem = b"-----BEGIN PRIVATE KEY-----";
        for c in [
            Control::Load { request: 7, generation: 3, index: 2, pem },
            Control::Connect { generation: u64::MAX },
            Control::Commit { generation: 1 },
        ] {
            assert_eq!(Control::decode(&c.encode()), Some(c));
        }
        assert_eq!(Control::decode(b""), None);
        assert_eq!(Control::decode(b"C1234567"), None);
        assert_eq!(Control::decode(b"K123456789"), None);
        assert_eq!(Control::decode(b"X12345678"), None);
    }

    #[test]
    fn answers_round_trip() {
        let loaded = Loaded {
            algorithm: SignatureAlgorithm::ECDSA,
            schemes: vec![SignatureScheme::ECDSA_NISTP256_SHA256, SignatureScheme::RSA_PSS_SHA512],
            spki: vec![0x30, 0x59, 1, 2, 3],
        };
        for a in [
            Answer { request: 9, result: Ok(loaded) },
            Answer { request: 10, result: Err("not a key".to_string()) },
        ] {
            assert_eq!(Answer::decode(&a.encode()), Some(a));
        }
        assert_eq!(Answer::decode(b"+1234567"), None);
        assert_eq!(Answer::decode(b"?12345678"), None);
    }

    #[test]
    fn signing_records_round_trip() {
        let r = SignRequest { seq: 5, index: 1, scheme: SignatureScheme::ED25519, message: b"hello" };
        assert_eq!(SignRequest::decode(&r.encode()), Some(r));
        assert_eq!(SignRequest::decode(b"123456789"), None);
        assert_eq!(decode_signature(&encode_signature(4, Some(b"sig"))), Some((4, Some(&b"sig"[..]))));
        assert_eq!(decode_signature(&encode_signature(4, None)), Some((4, None)));
        assert_eq!(decode_signature(b"1234"), None);
    }
}
