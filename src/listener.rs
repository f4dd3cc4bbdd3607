//! Listening sockets: resolve each configured address, create, bind and
//! listen, with the options set explicitly rather than left to system
//! defaults.
//!
//! Runs in: parent, before privileges are dropped (ports below 1024).

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt,
};

use crate::error::StartupError;

/// One bound, listening, non-blocking socket.
#[derive(Debug)]
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// The address actually bound (the real port when 0 was asked for).
    pub addr: SocketAddr,
}

/// Resolves each of `specs` (`host:port`, `[v6]:port`; names through
/// `getaddrinfo`) and binds every address it yields. A name that resolves
/// to the same address twice is bound once.
pub fn bind_all(specs: &[String], backlog: i32) -> Result<Vec<Listener>, StartupError> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for spec in specs {
        let resolved = spec
            .to_socket_addrs()
            .map_err(|source| StartupError::Resolve {
                addr: spec.clone(),
                source,
            })?;
        for a in resolved {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
    }
    addrs
        .into_iter()
        .map(|addr| {
            bind_one(addr, backlog).map_err(|source| StartupError::Bind {
                addr: addr.to_string(),
                source,
            })
        })
        .collect()
}

/// Creates a listening socket on `addr`: close-on-exec and non-blocking (the
/// parent accepts only after `poll` says so, and must never block in
/// `accept`), `SO_REUSEADDR` (restart without waiting out TIME_WAIT), and on
/// IPv6 `IPV6_V6ONLY` set, so `[::]` never silently takes IPv4 as well and
/// conflicts with a separate `0.0.0.0` listener on some systems but not others.
pub fn bind_one(addr: SocketAddr, backlog: i32) -> io::Result<Listener> {
    let family = if addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd: OwnedFd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    listen(&fd, Backlog::new(backlog)?)?;
    let socket = TcpListener::from(fd);
    let addr = socket.local_addr()?;
    Ok(Listener { socket, addr })
}
