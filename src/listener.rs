//! Listening sockets: resolve each configured address, create, bind and
//! listen, with the options set explicitly rather than left to system
//! defaults.
//!
//! Runs in: parent, which keeps the privilege to bind ports below 1024.
//! Under systemd socket activation the sockets are inherited instead.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::net::if_::if_nametoindex;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrStorage, bind, getsockopt, setsockopt, socket, sockopt,
};

use crate::error::StartupError;
use crate::proxy::Cidr;
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
    /// What its connections carry besides HTTP: its spec's, or for an
    /// inherited socket, what its name says (see `inherited`).
    pub wire: Wire,
}

impl Listener {
    /// Accepts a queued connection (non-blocking: `WouldBlock` when none
    /// is). The peer of an IPv4 client of a dual-stack socket comes as
    /// `::ffff:a.b.c.d`; it is returned as the IPv4 address it is, so that
    /// it is counted per address, and logged, alike however it was
    /// accepted (by the loop, or handed over during a reload).
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.socket.accept()?;
        Ok((stream, SocketAddr::new(peer.ip().to_canonical(), peer.port())))
    }
}

/// What a listener's connections carry besides HTTP, which decides what
/// the child reads before the first request: flags that combine, not
/// kinds (with both, the PROXY header comes first, then the TLS
/// handshake). All off: HTTP from the first byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wire {
    /// A PROXY protocol header (v1 or v2) from a trusted proxy comes first.
    pub proxy: bool,
    /// HTTP runs over TLS (HTTPS): a handshake comes first.
    pub tls: bool,
}

/// One address to listen on, as the configuration asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The address as written (`host:port`, `[v6]:port`).
    pub addr: String,
    /// What its connections carry besides HTTP.
    pub wire: Wire,
}

/// The `FileDescriptorName=` (in `LISTEN_FDNAMES`) that marks a socket
/// passed by systemd as a PROXY listener; any name but those of this
/// group is plain.
pub const PROXY_FD_NAME: &str = "proxy";
/// The `FileDescriptorName=` that marks an HTTPS listener.
pub const TLS_FD_NAME: &str = "tls";
/// The `FileDescriptorName=` that marks a PROXY listener whose
/// connections then speak TLS.
pub const PROXY_TLS_FD_NAME: &str = "proxy-tls";

/// What a socket passed by systemd carries, by its name.
fn wire_named(name: Option<&&str>) -> Wire {
    match name.copied() {
        Some(PROXY_FD_NAME) => Wire { proxy: true, tls: false },
        Some(TLS_FD_NAME) => Wire { proxy: false, tls: true },
        Some(PROXY_TLS_FD_NAME) => Wire { proxy: true, tls: true },
        _ => Wire::default(),
    }
}

/// Refuses PROXY listeners passed by systemd (sockets named `proxy` or `proxy-tls`)
/// when `trusted` (`trusted_proxies`) is empty: each of their connections
/// would be closed. Loading the configuration checks only `proxy_listen`;
/// inherited sockets are known later, to start-up, a reload and
/// `--check-config`.
pub fn require_trusted(proxy_inherited: bool, trusted: &[Cidr]) -> Result<(), StartupError> {
    if proxy_inherited && trusted.is_empty() {
        return Err(StartupError::Activation(format!(
            "a socket named {PROXY_FD_NAME:?} (FileDescriptorName={PROXY_FD_NAME}) is a PROXY listener and \
             needs trusted_proxies: a PROXY header is accepted only from a trusted proxy"
        )));
    }
    Ok(())
}

/// What the sockets systemd passes this process carry, all flags joined
/// (`proxy` if any is a PROXY listener, `tls` if any is HTTPS), read from
/// the environment alone: nothing is adopted.
pub fn inherited_wire() -> Wire {
    let Some((_, Some(count))) = activation_env() else {
        return Wire::default();
    };
    let names = fd_names();
    names
        .split(':')
        .take(count)
        .map(|n| wire_named(Some(&n)))
        .fold(Wire::default(), |a, w| Wire { proxy: a.proxy || w.proxy, tls: a.tls || w.tls })
}

/// Refuses HTTPS listeners (`any_tls`: configured, or passed by systemd
/// as `tls` or `proxy-tls`) when no certificate is loaded (`certified`):
/// no handshake could complete.
pub fn require_certificate(any_tls: bool, certified: bool) -> Result<(), StartupError> {
    if any_tls && !certified {
        return Err(StartupError::Activation(format!(
            "a socket named {TLS_FD_NAME:?} or {PROXY_TLS_FD_NAME:?} is an HTTPS listener and needs \
             tls_certificate and tls_key (the default site's certificate)"
        )));
    }
    Ok(())
}

/// The sockets' `FileDescriptorName=` values, which systemd joins with ':'.
fn fd_names() -> String {
    std::env::var("LISTEN_FDNAMES").unwrap_or_default()
}

/// Resolves each of `specs` (`host:port`, `[v6]:port`; names through
/// `getaddrinfo`) and binds every address it yields. An address reached
/// through two specs is bound once.
pub fn bind_all(specs: &[ListenSpec], backlog: i32) -> Result<Vec<Listener>, StartupError> {
    let mut listeners: Vec<Listener> = Vec::new();
    for spec in specs {
        for addr in resolve(&spec.addr)? {
            if !listeners.iter().any(|l| l.addr == addr) {
                listeners.push(bind_spec_addr(spec, addr, backlog)?);
            }
        }
    }
    Ok(listeners)
}

/// The distinct socket addresses `spec` resolves to. An IPv6 scope may
/// name the interface (`[fe80::1%eth0]:80`) or give its index (`%2`).
pub fn resolve(spec: &str) -> Result<Vec<SocketAddr>, StartupError> {
    let fail = |source| StartupError::Resolve { addr: spec.to_string(), source };
    let resolved = scope_as_index(spec).and_then(|s| s.to_socket_addrs()).map_err(fail)?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for a in resolved {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    Ok(addrs)
}

/// `spec` with an interface name in an IPv6 scope (`[fe80::1%eth0]:80`)
/// replaced by the interface's index (`[fe80::1%2]:80`), the only form the
/// standard library's address parser takes.
fn scope_as_index(spec: &str) -> io::Result<Cow<'_, str>> {
    let Some((ip, rest)) = spec.strip_prefix('[').and_then(|s| s.split_once('%')) else {
        return Ok(Cow::Borrowed(spec));
    };
    let Some((scope, port)) = rest.split_once(']') else {
        return Ok(Cow::Borrowed(spec));
    };
    if scope.parse::<u32>().is_ok() {
        return Ok(Cow::Borrowed(spec));
    }
    let index = if_nametoindex(scope).map_err(|e| {
        io::Error::new(io::ErrorKind::NotFound, format!("no network interface named {scope:?} ({e})"))
    })?;
    Ok(Cow::Owned(format!("[{ip}%{index}]{port}")))
}

fn bind_spec_addr(spec: &ListenSpec, addr: SocketAddr, backlog: i32) -> Result<Listener, StartupError> {
    let mut l =
        bind_one(addr, backlog).map_err(|source| StartupError::Bind { addr: addr.to_string(), source })?;
    l.spec = Some(spec.addr.clone());
    l.wire = spec.wire;
    Ok(l)
}

/// How long the kernel holds a connection that has sent nothing before it
/// is queued for `accept` anyway (`TCP_DEFER_ACCEPT`, as Apache's
/// `AcceptFilter http data` and nginx's `deferred`): a client that connects
/// and stays silent costs no fork for this long, and one that connects and
/// goes (a port scan, a health probe) none at all. After it the child's
/// `header_timeout` starts, so this adds to the life of a silent
/// connection, which must end within `header_timeout` plus 2 s of its
/// connect. The kernel counts the period in SYN-ACK retransmission rounds
/// (1, 2, 4, 8 s...: 10 s holds a connection 15 s, 2 s holds it 3 s); 1 s
/// is one round, measured at 1.02 s on loopback.
pub const DEFER_ACCEPT_SECS: u32 = 1;

/// Creates a listening socket on `addr`: close-on-exec and non-blocking (the
/// parent accepts only after `poll` says so, and must never block in
/// `accept`), `SO_REUSEADDR` (restart without waiting out TIME_WAIT),
/// `TCP_DEFER_ACCEPT` (see `DEFER_ACCEPT_SECS`), and on IPv6 `IPV6_V6ONLY`
/// set, so `[::]` never silently takes IPv4 as well and conflicts with a
/// separate `0.0.0.0` listener on some systems but not others.
pub fn bind_one(addr: SocketAddr, backlog: i32) -> io::Result<Listener> {
    let family = if addr.is_ipv6() { AddressFamily::Inet6 } else { AddressFamily::Inet };
    let fd: OwnedFd =
        socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    sys::set_defer_accept(fd.as_fd(), DEFER_ACCEPT_SECS)?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    sys::listen(fd.as_fd(), backlog)?;
    let socket = TcpListener::from(fd);
    let addr = socket.local_addr()?;
    Ok(Listener { socket, addr, spec: None, wire: Wire::default() })
}

/// Most descriptors accepted from systemd; more is a misconfiguration.
const MAX_INHERITED: usize = 64;
/// The first descriptor passed by socket activation (after stdin, stdout, stderr).
const FIRST_INHERITED_FD: RawFd = 3;

/// Closes every descriptor above stderr that this process inherited,
/// except the listening sockets systemd passes (`LISTEN_FDS`, when
/// `LISTEN_PID` names this process), as daemon(7) asks: a launcher's stray
/// descriptor (a pipe, a directory) must reach neither the parent's state
/// nor any child. Call before opening anything.
pub fn close_strays() -> io::Result<()> {
    let passed = match activation_env() {
        Some((_, Some(count))) => count,
        _ => 0,
    };
    sys::close_all_except((0..passed).map(|i| FIRST_INHERITED_FD + i as RawFd)).map_err(io::Error::from)
}

/// `LISTEN_FDS` as given, and the count it names if valid, when
/// `LISTEN_PID` names this process; `None` when the variables are absent
/// or meant for another process.
fn activation_env() -> Option<(std::ffi::OsString, Option<usize>)> {
    let (Some(pid), Some(count)) = (std::env::var_os("LISTEN_PID"), std::env::var_os("LISTEN_FDS")) else {
        return None;
    };
    if pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        return None;
    }
    let valid = count.to_str().and_then(|c| c.parse().ok()).filter(|c| (1..=MAX_INHERITED).contains(c));
    Some((count, valid))
}

/// The listening sockets passed by systemd socket activation, if
/// `LISTEN_PID` names this process and `LISTEN_FDS` counts them (fd 3
/// onward). Returns `None` when the variables are absent or meant for
/// another process: then the server binds its own.
pub fn inherited() -> Result<Option<Vec<Listener>>, StartupError> {
    let Some((given, count)) = activation_env() else {
        return Ok(None);
    };
    let bad = |what: String| StartupError::Activation(what);
    let count =
        count.ok_or_else(|| bad(format!("LISTEN_FDS={given:?} is not a count from 1 to {MAX_INHERITED}")))?;
    let names = fd_names();
    let names: Vec<&str> = names.split(':').collect();
    (0..count)
        .map(|i| {
            let fd = FIRST_INHERITED_FD + i as RawFd;
            let mut l = adopt(fd).map_err(|e| bad(format!("inherited descriptor {fd}: {e}")))?;
            l.wire = wire_named(names.get(i));
            Ok(l)
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
    Ok(Listener { socket, addr, spec: None, wire: Wire::default() })
}

/// What a reload did to the listeners, as the reload's log line says it.
#[derive(Debug, Default)]
pub struct Changes {
    /// Addresses still listened on through the same socket.
    pub kept: Vec<SocketAddr>,
    /// Addresses newly bound.
    pub added: Vec<SocketAddr>,
    /// Addresses no longer listened on.
    pub removed: Vec<SocketAddr>,
    /// Addresses closed to make room for a wider or narrower one on the same
    /// port that then could not be bound, and bound again.
    pub restored: Vec<SocketAddr>,
    /// Addresses (or specs that did not resolve) that could not be listened
    /// on, and why.
    pub failed: Vec<(String, String)>,
    /// Connections that were queued on removed listeners and were accepted
    /// (served, or answered `503`) before those closed.
    pub handed_over: usize,
    /// Nothing of the new list could be bound, so the old listeners stay.
    pub kept_previous: bool,
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list =
            |addrs: &[SocketAddr]| addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let mut parts = Vec::new();
        if !self.kept.is_empty() {
            parts.push(format!("kept {}", list(&self.kept)));
        }
        if !self.added.is_empty() {
            parts.push(format!("added {}", list(&self.added)));
        }
        if !self.removed.is_empty() {
            parts.push(format!(
                "removed {} ({} queued connection(s) handed over)",
                list(&self.removed),
                self.handed_over
            ));
        }
        if !self.restored.is_empty() {
            parts.push(format!("restored {}", list(&self.restored)));
        }
        if !self.failed.is_empty() {
            let failed: Vec<String> = self.failed.iter().map(|(a, e)| format!("{a} ({e})")).collect();
            parts.push(format!("failed {}", failed.join(", ")));
        }
        if self.kept_previous {
            parts.push("nothing could be bound, so the previous listeners stay".to_string());
        }
        write!(f, "listeners: {}", parts.join("; "))
    }
}

/// For a reload: the listeners `specs` asks for, reusing `old` ones where
/// possible. A listener is kept when its address is spelled the same (so
/// `127.0.0.1:0` keeps its port) or when a spec resolves to the very address
/// it is bound to; its backlog is updated, and it takes the spec's wire. Other addresses are bound anew;
/// one that cannot be is logged and skipped, never fatal. When a new address
/// collides with an old one on the same port (widening `127.0.0.1:P` to
/// `0.0.0.0:P`, or narrowing it back), the old one is closed first, and bound
/// again if the new one still fails. Each old listener that goes is given to
/// `hand_over` (which accepts what is queued on it, returning how many)
/// before it closes, so its queued clients are answered rather than reset.
/// If nothing at all can be bound, the old listeners stay. Returns the new
/// list and what changed.
pub fn rebind(
    mut old: Vec<Listener>,
    specs: &[ListenSpec],
    backlog: i32,
    hand_over: &mut dyn FnMut(Listener) -> usize,
) -> (Vec<Listener>, Changes) {
    let mut changes = Changes::default();
    let mut new: Vec<Listener> = Vec::new();
    let mut wanted: Vec<(&ListenSpec, SocketAddr)> = Vec::new();
    for spec in specs {
        let mut kept: Vec<Listener> =
            old.extract_if(.., |l| l.spec.as_deref() == Some(spec.addr.as_str())).collect();
        if kept.is_empty() {
            let addrs = match resolve(&spec.addr) {
                Ok(a) => a,
                Err(e) => {
                    log::error!("{e}; continuing without it");
                    changes.failed.push((spec.addr.clone(), e.to_string()));
                    continue;
                }
            };
            for addr in addrs {
                if new.iter().chain(&kept).any(|l| l.addr == addr) || wanted.iter().any(|w| w.1 == addr) {
                    continue;
                }
                match old.iter().position(|l| l.addr == addr) {
                    Some(i) => kept.push(old.remove(i)),
                    None => wanted.push((spec, addr)),
                }
            }
        }
        for l in &mut kept {
            l.spec = Some(spec.addr.clone());
            l.wire = spec.wire;
            if let Err(e) = sys::listen(l.socket.as_fd(), backlog) {
                log::warn!("cannot update the backlog of {}: {e}", l.addr);
            }
            changes.kept.push(l.addr);
        }
        new.extend(kept);
    }
    for (spec, addr) in wanted {
        let bound = match bind_spec_addr(spec, addr, backlog) {
            Err(StartupError::Bind { source, .. })
                if source.raw_os_error() == Some(libc::EADDRINUSE)
                    && old.iter().any(|l| same_port(l.addr, addr)) =>
            {
                make_room(&mut old, &mut new, &mut changes, (spec, addr), backlog, hand_over)
            }
            bound => bound,
        };
        match bound {
            Ok(l) => {
                log::info!("listening on {}", l.addr);
                changes.added.push(l.addr);
                new.push(l);
            }
            Err(e) => {
                log::error!("{e}; continuing without it");
                changes.failed.push((addr.to_string(), error_cause(&e)));
            }
        }
    }
    if new.is_empty() {
        changes.kept_previous = true;
        changes.kept = old.iter().map(|l| l.addr).collect();
        return (old, changes);
    }
    for l in old {
        changes.removed.push(l.addr);
        changes.handed_over += hand_over(l);
    }
    (new, changes)
}

/// Binds `want` after handing over and closing the old listeners on the
/// same port, which the kernel would not let it share; if it still cannot
/// be bound, binds those old addresses again (into `new`), each with the
/// wire it had.
fn make_room(
    old: &mut Vec<Listener>,
    new: &mut Vec<Listener>,
    changes: &mut Changes,
    (spec, addr): (&ListenSpec, SocketAddr),
    backlog: i32,
    hand_over: &mut dyn FnMut(Listener) -> usize,
) -> Result<Listener, StartupError> {
    let mut closed = Vec::new();
    for l in old.extract_if(.., |l| same_port(l.addr, addr)) {
        let old_spec =
            ListenSpec { addr: l.spec.clone().unwrap_or_else(|| l.addr.to_string()), wire: l.wire };
        closed.push((old_spec, l.addr));
        changes.handed_over += hand_over(l);
    }
    let bound = bind_spec_addr(spec, addr, backlog);
    for (old_spec, old_addr) in closed {
        if bound.is_ok() {
            changes.removed.push(old_addr);
            continue;
        }
        match bind_spec_addr(&old_spec, old_addr, backlog) {
            Ok(l) => {
                log::warn!("listening on {old_addr} again, as {addr} could not be bound in its place");
                changes.restored.push(old_addr);
                new.push(l);
            }
            Err(e) => {
                log::error!("{e}; it was closed to make room for {addr}");
                changes.removed.push(old_addr);
                changes.failed.push((old_addr.to_string(), error_cause(&e)));
            }
        }
    }
    bound
}

/// Whether two addresses would share a port: same family, same port (the
/// kernel refuses a wildcard and a specific address on the same port, as
/// it refuses two equal ones).
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.is_ipv6() == b.is_ipv6() && a.port() != 0
}

/// The underlying reason of a bind error, without the address the log line
/// names already.
fn error_cause(e: &StartupError) -> String {
    match e {
        StartupError::Bind { source, .. } | StartupError::Resolve { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 client of a dual-stack socket (as systemd's
    /// `BindIPv6Only=both` makes one) is accepted as the IPv4 address it
    /// is: the accept loop and a reload's hand-over both go through here.
    #[test]
    fn accept_gives_a_mapped_peer_as_ipv4() {
        let fd = socket(AddressFamily::Inet6, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        setsockopt(&fd, sockopt::Ipv6V6Only, &false).unwrap();
        let any: SocketAddr = "[::]:0".parse().unwrap();
        // Dual-stack sockets are what the mapping is for: no IPv6, no test
        // (and no skip either: a skip would pass without proving anything).
        bind(fd.as_raw_fd(), &SockaddrStorage::from(any)).expect("IPv6 to bind [::]:0");
        sys::listen(fd.as_fd(), 8).unwrap();
        let socket = TcpListener::from(fd);
        let addr = socket.local_addr().unwrap();
        let l = Listener { socket, addr, spec: None, wire: Wire::default() };
        let client = TcpStream::connect(("127.0.0.1", addr.port())).unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap(), "an IPv4 client accepted as {peer}");
        assert!(peer.is_ipv4());
    }

    /// A listener takes its spec's wire when bound, and a reload that
    /// keeps it under a spec with another wire (the address moved from
    /// `listen` to `proxy_listen`, or back) gives it the new one.
    #[test]
    fn a_listener_carries_its_specs_wire() {
        let proxy = ListenSpec { addr: "127.0.0.1:0".to_string(), wire: Wire { proxy: true, tls: false } };
        let bound = bind_all(std::slice::from_ref(&proxy), 8).unwrap();
        assert!(bound.len() == 1 && bound[0].wire.proxy);
        let addr = bound[0].addr;
        let plain = ListenSpec { wire: Wire::default(), ..proxy };
        let (kept, changes) = rebind(bound, &[plain], 8, &mut |_| 0);
        assert_eq!(changes.kept, [addr]);
        assert!(kept.len() == 1 && !kept[0].wire.proxy);
    }

    #[test]
    fn scope_may_name_the_interface() {
        let lo = if_nametoindex("lo").expect("a loopback interface named lo");
        let addrs = resolve("[fe80::1%lo]:8080").unwrap();
        let [SocketAddr::V6(a)] = addrs[..] else { panic!("resolved to {addrs:?}") };
        assert_eq!((a.scope_id(), a.port()), (lo, 8080));
        assert_eq!(scope_as_index("[fe80::1%7]:80").unwrap(), "[fe80::1%7]:80");
        assert_eq!(scope_as_index("127.0.0.1:80").unwrap(), "127.0.0.1:80");
        let err = resolve("[fe80::1%nosuchif9]:80").unwrap_err().to_string();
        assert!(err.contains("no network interface named \"nosuchif9\""), "{err}");
    }
}
