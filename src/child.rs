//! The child's side of the fork: one entry point that never returns.
//!
//! Runs in: child only. The ritual, in order: take over signal handling
//! from the parent's handlers, close every descriptor except the few it
//! serves with (closed by range, so a descriptor the parent adds later
//! cannot leak into children by being forgotten in a list), forbid gaining
//! privileges through `exec` (`PR_SET_NO_NEW_PRIVS`), give up root if the
//! parent has it, stay non-dumpable (`PR_SET_DUMPABLE` 0), enter the
//! sandbox (`sandbox`), serve the connection, and `_exit`. Nothing here can fall
//! back into the parent's accept loop. The key process (`tls::keys`)
//! goes through the same ritual, without a connection.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};

use nix::sys::signal::Signal;

use nix::sys::prctl::{set_dumpable, set_no_new_privs, set_pdeathsig};
use nix::unistd::{Pid, getppid};

use crate::conn::{self, Buffers, Context};
use crate::generation::Generation;
use crate::listener::Wire;
use crate::log::{self as logging, AccessLog};
use crate::sandbox;
use crate::scoreboard::{Scoreboard, SlotId};
use crate::signals;
use crate::sys;
use crate::tls::keys::remote;
use crate::transport::Transport;

/// Exit status of a child whose set-up failed before it served anything.
const EXIT_SETUP: i32 = 71;
/// Exit status of a child that panicked (only reachable without `panic = "abort"`).
const EXIT_PANIC: i32 = 70;

/// What the child takes from the parent at the fork.
#[derive(Debug)]
pub struct Inherited<'a> {
    /// The generation in force: configuration, sites with their roots,
    /// and how to give up root.
    pub generation: &'a Generation,
    /// The access log.
    pub access_log: &'a AccessLog,
    /// The read end of the parent's lifeline pipe.
    pub lifeline: BorrowedFd<'a>,
    /// The parent's pid, known before the fork: a child that finds another
    /// parent has been orphaned already.
    pub parent: Pid,
    /// The scoreboard, and this child's slot on it (`None`: none was free).
    pub scoreboard: &'a Scoreboard,
    /// This child's slot.
    pub slot: Option<SlotId>,
}

/// Serves the connection `stream` from `peer` (which, from a PROXY
/// listener, `wire.proxy`, must first send a PROXY header) with `buffers`,
/// and exits the process.
/// `key_channel` is its channel to the key process, for an HTTPS
/// connection whose keys are there.
pub fn run(
    stream: TcpStream,
    peer: SocketAddr,
    wire: Wire,
    key_channel: Option<OwnedFd>,
    inherited: &Inherited<'_>,
    buffers: Buffers,
) -> ! {
    if let Err(e) = signals::reset_after_fork() {
        log::error!("child: cannot reset its signals: {e}");
        sys::exit_child(EXIT_SETUP);
    }
    // Everything else is the parent's (listeners, the signal pipe, the
    // lifeline's write end, systemd's socket) or nobody's.
    // Borrowed, not collected: nothing is allocated before the connection.
    let keep = [stream.as_raw_fd(), inherited.lifeline.as_raw_fd()]
        .into_iter()
        .chain(key_channel.as_ref().map(AsRawFd::as_raw_fd))
        .chain(inherited.generation.sites.iter().map(|s| s.root.as_raw_fd()))
        .chain(inherited.generation.acme_webroot.as_ref().map(|fd| fd.as_raw_fd()))
        .chain(inherited.access_log.raw_fd())
        .chain(logging::syslog_fd())
        .chain(logging::error_file_fd());
    if let Err(e) = sys::close_all_except(keep) {
        log::error!("child: cannot close the parent's descriptors: {e}; connection from {peer} not served");
        sys::exit_child(EXIT_SETUP);
    }
    if let Err(e) = set_no_new_privs() {
        log::error!("child: cannot set no_new_privs: {e}; connection from {peer} not served");
        sys::exit_child(EXIT_SETUP);
    }
    if let Some(plan) = &inherited.generation.drop_plan
        && let Err(e) = plan.apply()
    {
        log::error!("child: cannot drop privileges: {e}; connection from {peer} not served");
        sys::exit_child(EXIT_SETUP);
    }
    // Inherited from the parent, but a change of uid resets it to the
    // `fs.suid_dumpable` sysctl, which may say dumpable: then any process
    // of the serving account could open this child's memory through
    // /proc/PID/mem. So again, after the drop.
    if let Err(e) = set_dumpable(false) {
        log::error!("child: cannot make itself non-dumpable: {e}; connection from {peer} not served");
        sys::exit_child(EXIT_SETUP);
    }
    guard_against_orphaning(inherited.parent);
    // Where its certificate's signing stub asks for signatures.
    if let Some(fd) = key_channel {
        remote::use_channel(fd);
    }
    // Last, once nothing more needs a path outside the roots, a new
    // socket or a change of credentials: what is left is serving.
    if let Some(plan) = &inherited.generation.sandbox
        && let Err(e) = sandbox::enter(plan, inherited.generation.readable_roots())
    {
        log::error!("child: cannot enter the sandbox: {e}; connection from {peer} not served");
        sys::exit_child(EXIT_SETUP);
    }
    let ctx = Context {
        config: &inherited.generation.config,
        sites: &inherited.generation.sites,
        access_log: inherited.access_log,
        lifeline: inherited.lifeline,
        tls: inherited.generation.tls.as_ref(),
        acme_webroot: inherited.generation.acme_webroot.as_ref().map(AsFd::as_fd),
        scoreboard: inherited.scoreboard,
        slot: inherited.scoreboard.slot(inherited.slot),
    };
    let served = panic::catch_unwind(AssertUnwindSafe(|| {
        conn::serve(
            Transport::plain(stream, conn::send_limits(&inherited.generation.config))?,
            peer.ip(),
            wire,
            &ctx,
            buffers,
        )
    }));
    let code = match served {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            // Resets, timeouts and vanished clients are the normal end of some connections.
            log::debug!("connection from {peer} ended: {e}");
            0
        }
        Err(_) => EXIT_PANIC,
    };
    sys::exit_child(code)
}

/// Makes the kernel kill this child when the parent dies. A parent that may
/// not signal its children (no `CAP_KILL` once they run as another user)
/// ends the ones outliving a stop by exiting. Set after the privilege drop,
/// which clears it; if the parent is already gone, exit now.
fn guard_against_orphaning(parent: Pid) {
    if let Err(e) = set_pdeathsig(Signal::SIGKILL) {
        log::warn!("child: cannot set the parent-death signal: {e}");
    }
    if getppid() != parent {
        sys::exit_child(0);
    }
}
