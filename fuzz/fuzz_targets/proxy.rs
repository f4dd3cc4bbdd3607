//! The client address behind a proxy, from arbitrary bytes: never a panic.
//! The first byte picks the part. Even: the PROXY header parser (v1 and v2)
//! on the rest, where a complete header never claims more bytes than it was
//! given (nor than `MAX_HEADER_BYTES`, past which a connection's reads do
//! not grow), names a canonical address (no IPv4-mapped IPv6), and every
//! shorter part of what parses as a header (complete or not) is a valid
//! beginning: a header split across reads at any byte is still read. Odd:
//! the `X-Forwarded-For` (bit 1 clear) or `Forwarded` (bit 1 set) walk over
//! the rest's lines from one of four peers (bits 2-3), with the first line
//! also tried as a trusted range: an untrusted peer is its own client, and
//! the client is a canonical address.
#![no_main]

use std::net::IpAddr;

use forkhttpd::proxy::{Cidr, Header, MAX_HEADER_BYTES, forwarded_client, parse};
use libfuzzer_sys::fuzz_target;

const RANGES: [&str; 4] = ["127.0.0.0/8", "10.0.0.0/8", "::1", "2001:db8::/32"];
const PEERS: [&str; 4] = ["127.0.0.1", "10.1.2.3", "::ffff:127.0.0.2", "192.0.2.1"];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        check_header(rest);
    } else {
        check_walk(rest, mode & 2 != 0, PEERS[usize::from(mode >> 2) % PEERS.len()].parse().unwrap());
    }
});

fn check_header(bytes: &[u8]) {
    let whole = parse(bytes);
    let end = match whole {
        Header::Complete { len, source } => {
            assert!(len > 0 && len <= bytes.len().min(MAX_HEADER_BYTES), "{len} of {} bytes", bytes.len());
            if let Some(ip) = source {
                assert_eq!(ip, ip.to_canonical(), "an IPv4-mapped source");
            }
            // The header alone parses the same.
            assert_eq!(parse(&bytes[..len]), whole);
            len
        }
        Header::Partial => {
            assert!(bytes.len() < MAX_HEADER_BYTES, "partial at {} bytes", bytes.len());
            bytes.len()
        }
        Header::Invalid => return,
    };
    for k in 0..end {
        assert_eq!(
            parse(&bytes[..k]),
            Header::Partial,
            "the first {k} of {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

fn check_walk(rest: &[u8], forwarded: bool, peer: IpAddr) {
    let mut ranges: Vec<Cidr> = RANGES.iter().map(|r| r.parse().unwrap()).collect();
    let first = rest.split(|&b| b == b'\n').next().unwrap_or_default();
    if let Some(range) = std::str::from_utf8(first).ok().and_then(|s| s.parse::<Cidr>().ok()) {
        // What a range says of itself reads back as the same range.
        assert_eq!(range.to_string().parse::<Cidr>(), Ok(range));
        ranges.push(range);
    }
    let client = forwarded_client(rest.split(|&b| b == b'\n'), forwarded, &ranges, peer);
    if !ranges.iter().any(|r| r.contains(peer)) {
        assert_eq!(client, peer, "an untrusted peer's fields were believed");
    }
    if client != peer {
        assert_eq!(client, client.to_canonical(), "an IPv4-mapped client");
    }
}
