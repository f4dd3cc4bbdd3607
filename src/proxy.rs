//! The real client address behind a load balancer: trusted proxies (CIDR
//! ranges), the PROXY protocol header (v1 and v2) that starts a connection
//! on a listener in `proxy_listen`, and `X-Forwarded-For` / `Forwarded`
//! fields sent by a trusted proxy on a plain listener.
//!
//! Runs in: child (the parsing is pure; `conn` does the reading). A
//! connection's PROXY header is believed only from a peer in
//! `trusted_proxies`; anyone else could claim any address with it, so such
//! a connection is closed. Header fields are believed only hop by hop, the
//! nginx `real_ip_recursive` way: from the right, addresses of trusted
//! proxies are skipped, and the first other one is the client.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ppp::{PartialResult, v1, v2};

/// Longest PROXY header read: a v1 line is at most 107 bytes; a v2 header
/// is 16 bytes plus its addresses and TLVs, a few hundred from HAProxy.
/// Longer is not a proxy we want to talk to.
pub const MAX_HEADER_BYTES: usize = 1024;

/// How a v1 header starts; a connection that does not is taken as v2.
const V1_START: &[u8] = b"PROXY ";

/// Longest v1 header line, its `\r\n` included (the specification's 107).
const V1_MAX_BYTES: usize = 107;

/// An address range: a network address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in the range. An IPv4-mapped IPv6 address is
    /// taken as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDR/PREFIX`, or a bare address (a range of one).
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let net: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an IP address or ADDR/PREFIX"))?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// Whether `ip` is in one of `ranges`.
pub fn trusted(ranges: &[Cidr], ip: IpAddr) -> bool {
    ranges.iter().any(|r| r.contains(ip))
}

/// The client of a request that `peer`, a trusted proxy, forwarded, from
/// the forwarding field's `lines` (`X-Forwarded-For` lists addresses;
/// with `forwarded`, the `Forwarded` field's `for=` parameters): walking
/// from the right, each address is believed while the one after it is a
/// trusted proxy (nginx `real_ip_recursive`). An entry that is not an
/// address (`unknown`, an obfuscated name, garbage) ends the walk.
pub fn forwarded_client<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
    forwarded: bool,
    ranges: &[Cidr],
    peer: IpAddr,
) -> IpAddr {
    let entries: Vec<&[u8]> = lines.flat_map(|l| l.split(|&b| b == b',')).collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        if !trusted(ranges, client) {
            break;
        }
        let Some(ip) = std::str::from_utf8(entry).ok().and_then(|e| entry_address(e.trim(), forwarded))
        else {
            break;
        };
        client = ip.to_canonical();
    }
    client
}

/// The address in one list entry: `ADDR`, `ADDR:PORT` or `[V6]:PORT`, or
/// for `Forwarded` the (possibly quoted) value of its `for=` parameter.
fn entry_address(entry: &str, forwarded: bool) -> Option<IpAddr> {
    let value = if forwarded {
        // Split, not sliced at a byte count: a hostile pair may put a
        // multibyte character across any byte offset.
        let (_, value) = entry
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(name, value)| name.eq_ignore_ascii_case("for") && !value.is_empty())?;
        value.trim_matches('"')
    } else {
        entry
    };
    value
        .parse::<IpAddr>()
        .ok()
        .or_else(|| value.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| value.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// What the bytes at the start of a PROXY connection hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// A whole header of `len` bytes (what follows is the request). The
    /// client's address, or `None` when the header carries none (a v2
    /// `LOCAL` command, as a proxy's own health check sends, or v1
    /// `UNKNOWN`): then the peer itself is the client.
    Complete {
        /// Length of the header in bytes.
        len: usize,
        /// The client's address, if the header names one.
        source: Option<IpAddr>,
    },
    /// A valid beginning: read more.
    Partial,
    /// Not a PROXY header.
    Invalid,
}

/// Parses the PROXY header (v1 or v2) at the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Header {
    let (len, source) = if bytes.starts_with(V1_START) || V1_START.starts_with(bytes) {
        // A v1 header is one line up to its first CRLF, judged once that is
        // in, and then for good; `ppp` is given that line only and must take
        // all of it. Parts of a line are not given to `ppp`: it refuses one
        // that ends in a separator (`PROXY TCP4 A B 1 `, an empty port) or
        // inside a character (`UNKNOWN` takes any text) though the rest of a
        // valid line may be in the next read, and takes some lines that can
        // never be one (`PROXY T\rT`) for a beginning. It ends a line at its
        // first CR, even one that no LF follows.
        let Some(end) = bytes.windows(2).position(|w| w == b"\r\n").map(|at| at + 2) else {
            return if bytes.len() < V1_MAX_BYTES { Header::Partial } else { Header::Invalid };
        };
        let line = bytes.get(..end).filter(|l| l.len() <= V1_MAX_BYTES);
        let Some(h) = line.and_then(|l| v1::Header::try_from(l).ok()).filter(|h| h.header.len() == end)
        else {
            return Header::Invalid;
        };
        let source = match h.addresses {
            v1::Addresses::Tcp4(a) => Some(IpAddr::V4(a.source_address)),
            v1::Addresses::Tcp6(a) => Some(IpAddr::V6(a.source_address)),
            v1::Addresses::Unknown => None,
        };
        (h.header.len(), source)
    } else {
        match v2::Header::try_from(bytes) {
            // Longer than a connection's reads may grow: refused whole as
            // its parts are.
            Ok(h) if h.len() > MAX_HEADER_BYTES => return Header::Invalid,
            Ok(h) => {
                let source = match (h.command, h.addresses) {
                    (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some(IpAddr::V4(a.source_address)),
                    (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Some(IpAddr::V6(a.source_address)),
                    _ => None,
                };
                (h.len(), source)
            }
            Err(e) if e.is_incomplete() && bytes.len() < MAX_HEADER_BYTES => return Header::Partial,
            Err(_) => return Header::Invalid,
        }
    };
    // Both versions alike: an IPv4 client a dual-stack proxy names as
    // `::ffff:a.b.c.d` is logged and matched as the IPv4 address it is.
    Header::Complete { len, source: source.map(|ip| ip.to_canonical()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_ranges() {
        let r: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(r.contains(ip("10.1.255.3")) && !r.contains(ip("10.2.0.1")));
        assert!(r.contains(ip("::ffff:10.1.0.9")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("192.0.2.1")) && !all.contains(ip("::1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("2001:db9::1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn forwarded_fields_are_walked_from_the_right_while_trusted() {
        let ranges: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        let peer = ip("127.0.0.1");
        let xff = |lines: &[&str]| forwarded_client(lines.iter().map(|l| l.as_bytes()), false, &ranges, peer);
        assert_eq!(xff(&["203.0.113.5"]), ip("203.0.113.5"));
        // A client's own claim left of a real client is not believed.
        assert_eq!(xff(&["1.1.1.1, 203.0.113.5, 10.0.0.2"]), ip("203.0.113.5"));
        assert_eq!(xff(&["1.1.1.1", "203.0.113.5, 10.0.0.2"]), ip("203.0.113.5"));
        // Every hop trusted: the leftmost.
        assert_eq!(xff(&["10.0.0.9, 10.0.0.2"]), ip("10.0.0.9"));
        assert_eq!(xff(&["garbage, 10.0.0.2"]), ip("10.0.0.2"));
        assert_eq!(xff(&[]), peer);
        assert_eq!(xff(&["[2001:db8::7]:4711"]), ip("2001:db8::7"));
        let fwd = |lines: &[&str]| forwarded_client(lines.iter().map(|l| l.as_bytes()), true, &ranges, peer);
        assert_eq!(fwd(&["for=192.0.2.60;proto=http;by=10.0.0.2"]), ip("192.0.2.60"));
        assert_eq!(fwd(&["for=1.1.1.1, For=\"[2001:db8:cafe::17]:4711\""]), ip("2001:db8:cafe::17"));
        assert_eq!(fwd(&["for=unknown"]), peer);
    }

    /// A pair may put a multibyte character across any byte: the walk ends
    /// at an entry it cannot read, and a `for=` after such a pair is read.
    #[test]
    fn forwarded_pairs_with_multibyte_text_do_not_panic() {
        let ranges: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap()];
        let peer = ip("127.0.0.1");
        let fwd = |lines: &[&str]| forwarded_client(lines.iter().map(|l| l.as_bytes()), true, &ranges, peer);
        assert_eq!(fwd(&["abcé"]), peer);
        assert_eq!(fwd(&["é"]), peer);
        assert_eq!(fwd(&["foré=192.0.2.1"]), peer);
        assert_eq!(fwd(&["for=é"]), peer);
        assert_eq!(fwd(&["abcé;for=192.0.2.1"]), ip("192.0.2.1"));
        assert_eq!(fwd(&["for=192.0.2.1, abcé"]), peer);
    }

    /// A v1 source `::ffff:a.b.c.d` is the IPv4 client, as in v2.
    #[test]
    fn v1_ipv4_mapped_source_is_the_ipv4_address() {
        let h = b"PROXY TCP6 ::ffff:9.9.9.8 ::1 4711 80\r\n";
        assert_eq!(parse(h), Header::Complete { len: h.len(), source: Some(ip("9.9.9.8")) });
        let h = b"PROXY TCP6 2001:db8::8 ::1 4711 80\r\n";
        assert_eq!(parse(h), Header::Complete { len: h.len(), source: Some(ip("2001:db8::8")) });
    }

    /// A header may arrive split at any byte: each part of it is a valid
    /// beginning, and what is not one is refused at once (the fuzz target's
    /// finds: a part ending after the source port's space was refused for
    /// its empty destination port, a part of an `UNKNOWN` line ending inside
    /// a character for its UTF-8, a line starting `P ` was partial, and a
    /// line with a lone CR was taken to end there).
    #[test]
    fn every_part_of_a_header_is_partial() {
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 9, 127, 0, 0, 1, 0x12, 0x67, 0, 80]);
        let v1: [&[u8]; 4] = [
            b"PROXY TCP4 192.0.2.7 127.0.0.1 4711 80\r\n",
            b"PROXY TCP6 ::ffff:9.9.9.8 ::1 4711 80\r\n",
            b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
            "PROXY UNKNOWN \n é\r\n".as_bytes(),
        ];
        for h in v1.into_iter().chain([v2.as_slice()]) {
            assert!(matches!(parse(h), Header::Complete { len, .. } if len == h.len()));
            for k in 0..h.len() {
                assert_eq!(parse(&h[..k]), Header::Partial, "{:?}", String::from_utf8_lossy(&h[..k]));
            }
        }
        // A line that ends is judged, and for good.
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7 127.0.0.1 4711 \r\n"), Header::Invalid);
        assert_eq!(parse(b"PROXY T\rT\r\n"), Header::Invalid);
        assert_eq!(parse(&[b"PROXY ".as_slice(), &[b'x'; 120]].concat()), Header::Invalid);
        // A CR that no LF follows ends no line (`ppp` took the first 21 bytes).
        assert_eq!(parse(b"PROXY UNKNOWN \x01 x \n\rx\r\n"), Header::Invalid);
        // Neither version's beginning (`ppp` took this for a part of `PROXY`).
        assert_eq!(parse(b"P YX\rP"), Header::Invalid);
    }

    #[test]
    fn v1_headers() {
        let h = b"PROXY TCP4 192.0.2.7 127.0.0.1 4711 80\r\nGET / HTTP/1.1\r\n";
        assert_eq!(parse(h), Header::Complete { len: 40, source: Some(ip("192.0.2.7")) });
        assert_eq!(parse(&h[..20]), Header::Partial);
        let u = b"PROXY UNKNOWN\r\n";
        assert_eq!(parse(u), Header::Complete { len: u.len(), source: None });
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Header::Invalid);
    }

    #[test]
    fn v2_headers() {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 9, 127, 0, 0, 1, 0x12, 0x67, 0, 80]);
        let len = h.len();
        h.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(parse(&h), Header::Complete { len, source: Some(ip("192.0.2.9")) });
        assert_eq!(parse(&h[..14]), Header::Partial);
        let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local), Header::Complete { len: 16, source: None });
        // Longer than MAX_HEADER_BYTES, as its parts are.
        let mut long = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        long.extend_from_slice(&[0x20, 0x00, 0x04, 0x00]);
        long.resize(16 + 0x400, 0);
        assert_eq!(parse(&long[..MAX_HEADER_BYTES]), Header::Invalid);
        assert_eq!(parse(&long), Header::Invalid);
    }
}
