//! Listening sockets: resolve each configured address, create, bind and
//! listen, with the options set explicitly rather than left to system
//! defaults.
//!
//! Runs in: parent, which keeps the privilege to bind ports below 1024.
//! Under systemd socket activation the sockets are inherited instead.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, getsockopt, listen, setsockopt,
    socket, sockopt,
};

use crate::error::StartupError;
use crate::sys;

/// One bound, listening, non-blocking socket.
#[derive(Debug)]
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// The address actually bound (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The configured address it came from; `None` for a socket inherited
    /// from systemd. A reload keeps the listeners whose spec is unchanged.
    pub spec: Option<String>,
}

/// Resolves each of `specs` (`host:port`, `[v6]:port`; names through
/// `getaddrinfo`) and binds every address it yields. An address reached
/// through two specs is bound once.
pub fn bind_all(specs: &[String], backlog: i32) -> Result<Vec<Listener>, StartupError> {
    let mut listeners: Vec<Listener> = Vec::new();
    for spec in specs {
        for addr in resolve(spec)? {
            if !listeners.iter().any(|l| l.addr == addr) {
                listeners.push(bind_spec_addr(spec, addr, backlog)?);
            }
        }
    }
    Ok(listeners)
}

/// The distinct socket addresses `spec` resolves to.
pub fn resolve(spec: &str) -> Result<Vec<SocketAddr>, StartupError> {
    let resolved =
        spec.to_socket_addrs().map_err(|source| StartupError::Resolve { addr: spec.to_string(), source })?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for a in resolved {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    Ok(addrs)
}

fn bind_spec_addr(spec: &str, addr: SocketAddr, backlog: i32) -> Result<Listener, StartupError> {
    let mut l =
        bind_one(addr, backlog).map_err(|source| StartupError::Bind { addr: addr.to_string(), source })?;
    l.spec = Some(spec.to_string());
    Ok(l)
}

/// Creates a listening socket on `addr`: close-on-exec and non-blocking (the
/// parent accepts only after `poll` says so, and must never block in
/// `accept`), `SO_REUSEADDR` (restart without waiting out TIME_WAIT), and on
/// IPv6 `IPV6_V6ONLY` set, so `[::]` never silently takes IPv4 as well and
/// conflicts with a separate `0.0.0.0` listener on some systems but not others.
pub fn bind_one(addr: SocketAddr, backlog: i32) -> io::Result<Listener> {
    let family = if addr.is_ipv6() { AddressFamily::Inet6 } else { AddressFamily::Inet };
    let fd: OwnedFd =
        socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    listen(&fd, Backlog::new(backlog)?)?;
    let socket = TcpListener::from(fd);
    let addr = socket.local_addr()?;
    Ok(Listener { socket, addr, spec: None })
}

/// Most descriptors accepted from systemd; more is a misconfiguration.
const MAX_INHERITED: usize = 64;
/// The first descriptor passed by socket activation (after stdin, stdout, stderr).
const FIRST_INHERITED_FD: RawFd = 3;

/// The listening sockets passed by systemd socket activation, if
/// `LISTEN_PID` names this process and `LISTEN_FDS` counts them (fd 3
/// onward). Returns `None` when the variables are absent or meant for
/// another process: then the server binds its own.
pub fn inherited() -> Result<Option<Vec<Listener>>, StartupError> {
    let (Some(pid), Some(count)) = (std::env::var_os("LISTEN_PID"), std::env::var_os("LISTEN_FDS")) else {
        return Ok(None);
    };
    if pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        return Ok(None);
    }
    let bad = |what: String| StartupError::Activation(what);
    let count: usize = count
        .to_str()
        .and_then(|c| c.parse().ok())
        .filter(|c| (1..=MAX_INHERITED).contains(c))
        .ok_or_else(|| bad(format!("LISTEN_FDS={count:?} is not a count from 1 to {MAX_INHERITED}")))?;
    (0..count)
        .map(|i| {
            let fd = FIRST_INHERITED_FD + i as RawFd;
            adopt(fd).map_err(|e| bad(format!("inherited descriptor {fd}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Checks that inherited `fd` is a listening stream socket and makes it
/// non-blocking and close-on-exec like the sockets we bind ourselves.
fn adopt(fd: RawFd) -> io::Result<Listener> {
    let owned = sys::adopt_inherited_fd(fd)?;
    if getsockopt(&owned, sockopt::SockType)? != SockType::Stream || !getsockopt(&owned, sockopt::AcceptConn)?
    {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a listening stream socket"));
    }
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    let socket = TcpListener::from(owned);
    socket.set_nonblocking(true)?;
    let addr = socket.local_addr()?;
    Ok(Listener { socket, addr, spec: None })
}

/// For a reload: the listeners `specs` asks for, reusing `old` ones where
/// possible. A listener is kept when its spec is spelled the same (so
/// `127.0.0.1:0` keeps its port) or when a spec resolves to the very address
/// it is bound to; its backlog is updated. Other addresses are bound anew;
/// one that cannot be is logged and skipped, never fatal. Returns the new
/// list and the old listeners no spec asked for any more.
pub fn rebind(mut old: Vec<Listener>, specs: &[String], backlog: i32) -> (Vec<Listener>, Vec<Listener>) {
    let mut new: Vec<Listener> = Vec::new();
    for spec in specs {
        let mut kept: Vec<Listener> =
            old.extract_if(.., |l| l.spec.as_deref() == Some(spec.as_str())).collect();
        if kept.is_empty() {
            let addrs = match resolve(spec) {
                Ok(a) => a,
                Err(e) => {
                    log::error!("{e}; continuing without it");
                    continue;
                }
            };
            for addr in addrs {
                if new.iter().chain(&kept).any(|l| l.addr == addr) {
                    continue;
                }
                if let Some(i) = old.iter().position(|l| l.addr == addr) {
                    kept.push(old.remove(i));
                    continue;
                }
                match bind_spec_addr(spec, addr, backlog) {
                    Ok(l) => {
                        log::info!("listening on {}", l.addr);
                        new.push(l);
                    }
                    Err(e) => log::error!("{e}; continuing without it"),
                }
            }
        }
        for l in &mut kept {
            l.spec = Some(spec.clone());
            if let Err(e) = Backlog::new(backlog).and_then(|b| listen(&l.socket, b)) {
                log::warn!("cannot update the backlog of {}: {e}", l.addr);
            }
        }
        new.extend(kept);
    }
    (new, old)
}
