//! The children's side of the fork: the ritual that confines the spawner
//! (and so every child it forks), and the child's entry point, which
//! never returns.
//!
//! Runs in: the spawner (`confine`, once per generation; see `spawner`)
//! and each child (`serve`). The ritual, in order: take over signal
//! handling from the parent's handlers, close every descriptor except the
//! few a child serves with (closed by range, so a descriptor the parent
//! adds later cannot leak into children by being forgotten in a list),
//! forbid gaining privileges through `exec` (`PR_SET_NO_NEW_PRIVS`), give
//! up root if the parent has it, stay non-dumpable (`PR_SET_DUMPABLE` 0),
//! enter the sandbox (`sandbox`). Each child inherits all of that with
//! the fork, then adds its own layer (`sandbox::enter_child`), serves the
//! connection, and `_exit`s. Nothing here can fall back into the parent's
//! accept loop. The key process (`tls::keys`) goes through the same
//! ritual, without a connection.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};

use nix::sys::signal::Signal;

use nix::sys::prctl::{set_dumpable, set_name, set_no_new_privs, set_pdeathsig};
use nix::unistd::{Pid, getppid};

use crate::conn::{self, Buffers, Context};
use crate::generation::Generation;
use crate::listener::Wire;
use crate::log::{self as logging, AccessLog};
use crate::sandbox::{self, ChildSandbox};
use crate::scoreboard::{Scoreboard, SlotId};
use crate::signals;
use crate::sys;
use crate::tls::keys::remote;
use crate::transport::Transport;

/// Exit status of a child whose set-up failed before it served anything.
const EXIT_SETUP: i32 = 71;
/// Exit status of a child that panicked (only reachable without `panic = "abort"`).
const EXIT_PANIC: i32 = 70;

/// What the spawner takes from the parent at the fork, and each child
/// from the spawner.
#[derive(Debug, Clone, Copy)]
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

/// Confines the spawner for good (see the module's ritual); exits the
/// process if any step fails. `channel` is the spawner's end of its
/// channel to the parent, kept open. Returns what each child confines
/// itself with (`None`: the sandbox is off).
pub fn confine(inherited: &Inherited<'_>, channel: RawFd) -> Option<ChildSandbox> {
    if let Err(e) = signals::reset_after_fork() {
        log::error!("spawner: cannot reset its signals: {e}");
        sys::exit_child(EXIT_SETUP);
    }
    // Everything else is the parent's (listeners, the signal pipe, the
    // lifeline's write end, systemd's socket) or nobody's.
    // Borrowed, not collected: nothing is allocated before the connection.
    let keep = [channel, inherited.lifeline.as_raw_fd()]
        .into_iter()
        .chain(inherited.generation.sites.iter().map(|s| s.root.as_raw_fd()))
        .chain(inherited.generation.acme_webroot.as_ref().map(|fd| fd.as_raw_fd()))
        .chain(inherited.access_log.raw_fd())
        .chain(logging::syslog_fd())
        .chain(logging::error_file_fd());
    if let Err(e) = sys::close_all_except(keep) {
        log::error!("spawner: cannot close the parent's descriptors: {e}");
        sys::exit_child(EXIT_SETUP);
    }
    if let Err(e) = set_no_new_privs() {
        log::error!("spawner: cannot set no_new_privs: {e}");
        sys::exit_child(EXIT_SETUP);
    }
    if let Some(plan) = &inherited.generation.drop_plan
        && let Err(e) = plan.apply()
    {
        log::error!("spawner: cannot drop privileges: {e}");
        sys::exit_child(EXIT_SETUP);
    }
    // Inherited from the parent, but a change of uid resets it to the
    // `fs.suid_dumpable` sysctl, which may say dumpable: then any process
    // of the serving account could open this process's memory through
    // /proc/PID/mem. So again, after the drop. Children inherit it.
    if let Err(e) = set_dumpable(false) {
        log::error!("spawner: cannot make itself non-dumpable: {e}");
        sys::exit_child(EXIT_SETUP);
    }
    guard_against_orphaning(inherited.parent);
    // Last, once nothing more needs a path outside the roots, a new
    // socket or a change of credentials: what is left is forking.
    let plan = inherited.generation.sandbox.as_ref()?;
    match sandbox::enter_spawner(plan, inherited.generation.readable_roots()) {
        Ok(sandbox) => Some(sandbox),
        Err(e) => {
            log::error!("spawner: cannot enter the sandbox: {e}");
            sys::exit_child(EXIT_SETUP)
        }
    }
}

/// Serves the connection `stream` from `peer` (which, from a PROXY
/// listener, `wire.proxy`, must first send a PROXY header) with `buffers`,
/// and exits the process. Call in a child the confined spawner just
/// forked (`confine`, which made `sandbox`), its copy of the spawner's
/// channel closed. `key_channel` is its channel to the key process, for
/// an HTTPS connection whose keys are there.
pub fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    wire: Wire,
    key_channel: Option<OwnedFd>,
    inherited: &Inherited<'_>,
    sandbox: Option<ChildSandbox>,
    mut buffers: Buffers,
) -> ! {
    // The fork cleared the parent-death signal the spawner set.
    guard_against_orphaning(inherited.parent);
    // The spawner's name is not this process's (see `spawner::NAME`).
    let _ = set_name(c"forkhttpd");
    // Where its certificate's signing stub asks for signatures.
    if let Some(fd) = key_channel {
        remote::use_channel(fd);
    }
    if let (Some(plan), Some(sandbox)) = (&inherited.generation.sandbox, sandbox)
        && let Err(e) = sandbox::enter_child(plan, sandbox)
    {
        log::error!("child: cannot enter its own sandbox: {e}; connection from {peer} not served");
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
            &mut buffers,
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
