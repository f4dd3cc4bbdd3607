//! The spawner: the process that forks the children, already confined,
//! so that they are born in its sandbox.
//!
//! Runs in: parent (`Spawner::start`, `Spawner::spawn`) and the spawner
//! (`run`), which the parent forks once per generation.
//!
//! Why a process between the parent and its children: a child that
//! confined itself paid for its sandbox on every connection, most of it
//! in the kernel attaching the seccomp filter (it emulates the filter once
//! per system call number to learn which calls it always allows, then
//! compiles it), some 300 µs, more than the fork. A fork inherits a
//! Landlock domain and a filter for the price of a reference count. So
//! the spawner goes through the child's ritual once (`child::confine`:
//! privilege drop, `no_new_privs`, not dumpable, the sandbox), then waits
//! on its channel. For each connection the parent passes it the socket
//! (and, for HTTPS, the channel to the key process) with `SCM_RIGHTS`,
//! and what the child must know: the client's address, the listener's
//! wire, the scoreboard slot. The spawner forks with `CLONE_PARENT`
//! (`sys::fork_sibling`): the child is the parent's, as if the parent
//! had forked it, and the parent reaps it, counts it and signals it as
//! before. The spawner answers with the child's pid, request by request
//! in the order asked: the parent passes a whole batch of connections
//! before it reads the answers. Each child closes
//! its copy of the spawner's channel before anything else (so a child
//! cannot speak for the spawner) and adds its own layer to the sandbox
//! (`sandbox::enter_child`).
//!
//! A spawner holds one generation as it was when forked: configuration,
//! certificates, ticket keys, log descriptors. The parent starts a new
//! one whenever any of those changes; the old one exits when its channel
//! closes (and with the parent, by its parent-death signal).

use std::ffi::CStr;
use std::fmt;
use std::io::IoSlice;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::prctl::set_name;
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, recv, send, sendmsg, setsockopt, socketpair,
    sockopt,
};
use nix::sys::time::TimeVal;
use nix::unistd::Pid;

use crate::child::{self, Inherited};
use crate::conn::Buffers;
use crate::listener::Wire;
use crate::scoreboard::SlotId;
use crate::sys::{self, Forked};

/// The spawner's process name (`/proc/PID/comm`, 15 bytes at most).
pub const NAME: &CStr = c"forkhttpd-spawn";
/// Exit status of a spawner that could not read its channel.
const EXIT_CHANNEL: i32 = 72;
/// Bytes of a request: see `Request::encode`.
const REQUEST_LEN: usize = 40;
/// How long the parent waits for the spawner to say it forked: the
/// spawner does nothing else, so a fork answers in microseconds; a
/// spawner that has not answered by then is stuck and is replaced.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a child could not be spawned.
#[derive(Debug, Clone, Copy)]
pub enum SpawnError {
    /// The spawner could not be started (socket pair, fork).
    Start(Errno),
    /// The request could not be passed to the spawner, or no answer
    /// came (`EAGAIN`: not within `ANSWER_TIMEOUT`; `EPIPE`: it has gone).
    /// Requests in flight behind it get no answer either.
    Channel(Errno),
    /// The spawner's fork failed (`EAGAIN`: a process limit or memory).
    Fork(Errno),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Start(e) => write!(f, "cannot start the spawner: {e}"),
            SpawnError::Channel(Errno::EAGAIN) => {
                write!(f, "the spawner did not answer within {ANSWER_TIMEOUT:?}")
            }
            SpawnError::Channel(e) => write!(f, "the spawner's channel: {e}"),
            SpawnError::Fork(e) => write!(f, "fork: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {}

/// The parent's handle on a running spawner.
#[derive(Debug)]
pub struct Spawner {
    pid: Pid,
    /// The parent's end of the channel; closing it ends the spawner.
    channel: OwnedFd,
}

/// What a child needs to know of its connection besides the socket.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Request {
    peer: SocketAddr,
    wire: Wire,
    slot: Option<SlotId>,
    /// Whether a channel to the key process comes with the socket.
    key_channel: bool,
}

impl Request {
    /// `family (4|6) ‖ flags ‖ port ‖ address (16) ‖ scope id (4) ‖ slot (2 × 8)`,
    /// numbers little-endian but the port (network order).
    fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut out = [0u8; REQUEST_LEN];
        let flags =
            u8::from(self.wire.proxy) | u8::from(self.wire.tls) << 1 | u8::from(self.key_channel) << 2;
        out[1] = flags;
        out[2..4].copy_from_slice(&self.peer.port().to_be_bytes());
        match self.peer {
            SocketAddr::V4(a) => {
                out[0] = 4;
                out[4..8].copy_from_slice(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                out[0] = 6;
                out[4..20].copy_from_slice(&a.ip().octets());
                out[20..24].copy_from_slice(&a.scope_id().to_le_bytes());
            }
        }
        let words = self.slot.map_or([0, 0], SlotId::to_words);
        out[24..32].copy_from_slice(&words[0].to_le_bytes());
        out[32..40].copy_from_slice(&words[1].to_le_bytes());
        out
    }

    /// The request `encode` made, or `None` for any other bytes.
    fn decode(bytes: &[u8]) -> Option<Request> {
        let bytes: &[u8; REQUEST_LEN] = bytes.try_into().ok()?;
        let port = u16::from_be_bytes([bytes[2], bytes[3]]);
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        let peer = match bytes[0] {
            4 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7])), port),
            6 => {
                let ip: [u8; 16] = bytes[4..20].try_into().ok()?;
                let scope = u32::from_le_bytes(bytes[20..24].try_into().ok()?);
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, scope))
            }
            _ => return None,
        };
        let flags = bytes[1];
        if flags > 0b111 {
            return None;
        }
        Some(Request {
            peer,
            wire: Wire { proxy: flags & 1 != 0, tls: flags & 2 != 0 },
            slot: SlotId::from_words([word(24), word(32)]),
            key_channel: flags & 4 != 0,
        })
    }
}

impl Spawner {
    /// Forks the spawner, which takes `inherited` (its slot unused) and
    /// `buffers` for the children it forks, and waits until it is
    /// confined (at most `ANSWER_TIMEOUT`). Call in the parent, with
    /// everything a child inherits in place.
    pub fn start(inherited: &Inherited<'_>, buffers: &mut Buffers) -> Result<Spawner, SpawnError> {
        let (ours, theirs) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
                .map_err(SpawnError::Start)?;
        let timeout = TimeVal::new(
            i64::try_from(ANSWER_TIMEOUT.as_secs()).unwrap_or(1),
            i64::from(ANSWER_TIMEOUT.subsec_micros()),
        );
        setsockopt(&ours, sockopt::ReceiveTimeout, &timeout).map_err(SpawnError::Start)?;
        // A spawner that stopped reading must not hold the parent either.
        setsockopt(&ours, sockopt::SendTimeout, &timeout).map_err(SpawnError::Start)?;
        match sys::fork().map_err(SpawnError::Start)? {
            Forked::Child => {
                drop(ours);
                run(theirs, inherited, std::mem::take(buffers))
            }
            Forked::Parent(pid) => {
                drop(theirs);
                let spawner = Spawner { pid, channel: ours };
                // Until it has closed them, the spawner holds the parent's
                // descriptors: a listener a reload closes would stay bound.
                match spawner.read_answer() {
                    Ok(0) => Ok(spawner),
                    Ok(_) => Err(SpawnError::Start(Errno::EPROTO)),
                    Err(e) => {
                        // Stuck or gone: it must not hold the listeners.
                        let _ = kill(pid, Signal::SIGKILL);
                        Err(e)
                    }
                }
            }
        }
    }

    /// The spawner's next answer (see `answer`), waited for at most
    /// `ANSWER_TIMEOUT`.
    fn read_answer(&self) -> Result<i32, SpawnError> {
        let mut answer = [0u8; 4];
        let n = loop {
            match recv(self.channel.as_raw_fd(), &mut answer, MsgFlags::empty()) {
                Err(Errno::EINTR) => continue,
                Err(Errno::EWOULDBLOCK) => return Err(SpawnError::Channel(Errno::EAGAIN)),
                Err(e) => return Err(SpawnError::Channel(e)),
                Ok(n) => break n,
            }
        };
        if n != answer.len() {
            return Err(SpawnError::Channel(Errno::EPIPE));
        }
        Ok(i32::from_le_bytes(answer))
    }

    /// The spawner's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Asks the spawner to fork a child to serve `stream` from `peer` (on
    /// a listener of `wire`), with its scoreboard `slot` and, for HTTPS
    /// with the keys in the key process, `key_channel`; the child will be
    /// this process's. The spawner answers each request in the order sent
    /// (`answer`), so several can be in flight: it forks the next child
    /// while the parent accepts the next connection. The spawner has its
    /// own copies of the descriptors once this returns; it keeps none
    /// after the fork.
    pub fn ask(
        &self,
        stream: BorrowedFd<'_>,
        peer: SocketAddr,
        wire: Wire,
        slot: Option<SlotId>,
        key_channel: Option<BorrowedFd<'_>>,
    ) -> Result<(), SpawnError> {
        let request = Request { peer, wire, slot, key_channel: key_channel.is_some() }.encode();
        let fds: [RawFd; 2] = [stream.as_raw_fd(), key_channel.map_or(-1, |fd| fd.as_raw_fd())];
        let fds = if key_channel.is_some() { &fds[..] } else { &fds[..1] };
        let iov = [IoSlice::new(&request)];
        sendmsg::<()>(
            self.channel.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(SpawnError::Channel)?;
        Ok(())
    }

    /// The answer to the oldest request not yet answered (`ask`): the
    /// child's pid. Waits for it at most `ANSWER_TIMEOUT`.
    pub fn answer(&self) -> Result<Pid, SpawnError> {
        match self.read_answer()? {
            pid if pid > 0 => Ok(Pid::from_raw(pid)),
            e => Err(SpawnError::Fork(Errno::from_raw(-e))),
        }
    }
}

/// The spawner's life: confine itself, then fork a child for each request
/// on `channel` until the parent closes it.
fn run(channel: OwnedFd, inherited: &Inherited<'_>, mut buffers: Buffers) -> ! {
    // Named apart from the children in ps(1) and /proc/PID/comm (each
    // child takes the server's name back, `child::serve`).
    let _ = set_name(NAME);
    let mut sandbox = child::confine(inherited, channel.as_raw_fd());
    // Ready: it holds none of the parent's descriptors any more.
    answer(&channel, 0);
    let mut bytes = [0u8; REQUEST_LEN + 1];
    loop {
        // Nothing here allocates: see `sys::recv_with_fds`.
        let mut fds: [Option<OwnedFd>; 2] = [None, None];
        let n = match sys::recv_with_fds(channel.as_fd(), &mut bytes, &mut fds) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                log::error!("spawner: reading from the parent: {e}; it exits");
                sys::exit_child(EXIT_CHANNEL);
            }
        };
        if n == 0 {
            // The parent closed its end: a new spawner took over, or the
            // server is stopping.
            sys::exit_child(0);
        }
        let [stream, key_channel] = fds;
        let request = Request::decode(&bytes[..n]).filter(|r| r.key_channel == key_channel.is_some());
        let (Some(request), Some(stream)) = (request, stream) else {
            log::error!("spawner: a request it cannot read ({n} bytes)");
            answer(&channel, -(Errno::EINVAL as i32));
            continue;
        };
        match sys::fork_sibling() {
            Ok(Forked::Child) => {
                // First: this child must not be able to speak for the spawner.
                drop(channel);
                let inherited = Inherited { slot: request.slot, ..*inherited };
                child::serve(
                    TcpStream::from(stream),
                    request.peer,
                    request.wire,
                    key_channel,
                    &inherited,
                    // The child's own copy: the spawner's stays for the next.
                    sandbox.take(),
                    std::mem::take(&mut buffers),
                )
            }
            Ok(Forked::Parent(pid)) => answer(&channel, pid.as_raw()),
            Err(e) => answer(&channel, -(e as i32)),
        }
    }
}

/// Tells the parent a child's pid (or minus the errno of a failure; 0:
/// the spawner is ready).
fn answer(channel: &OwnedFd, value: i32) {
    if let Err(e) = send(channel.as_fd().as_raw_fd(), &value.to_le_bytes(), MsgFlags::MSG_NOSIGNAL) {
        log::error!("spawner: answering the parent: {e}; it exits");
        sys::exit_child(EXIT_CHANNEL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_decodes_to_what_was_encoded() {
        let slot = SlotId::from_words([7, 3]);
        for peer in ["192.0.2.7:40000", "[2001:db8::1]:443", "[fe80::1%2]:8080"] {
            for (proxy, tls, key_channel) in [(false, false, false), (true, true, true), (false, true, false)]
            {
                let r = Request { peer: peer.parse().unwrap(), wire: Wire { proxy, tls }, slot, key_channel };
                assert_eq!(Request::decode(&r.encode()), Some(r));
            }
        }
        let none = Request {
            peer: "127.0.0.1:1".parse().unwrap(),
            wire: Wire::default(),
            slot: None,
            key_channel: false,
        };
        assert_eq!(Request::decode(&none.encode()), Some(none));
    }

    #[test]
    fn other_bytes_do_not_decode() {
        let good = Request {
            peer: "127.0.0.1:1".parse().unwrap(),
            wire: Wire::default(),
            slot: None,
            key_channel: false,
        }
        .encode();
        assert_eq!(Request::decode(&good[..REQUEST_LEN - 1]), None);
        let mut family = good;
        family[0] = 5;
        assert_eq!(Request::decode(&family), None);
        let mut flags = good;
        flags[1] = 0b1000;
        assert_eq!(Request::decode(&flags), None);
    }
}
