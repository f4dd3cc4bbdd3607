//! `--check-config` beyond the file itself: the steps start-up takes
//! against the system (binding the listen addresses, opening the log files
//! and the pid file, reaching syslog, and what `--daemon` refuses), tried
//! now without keeping anything, so that a configuration said to be OK
//! also starts.
//!
//! Runs in: the parent of a `--check-config` run, once. (The config, the
//! user and group, and every site's document root with its `openat2(2)` probe are
//! checked by the same code start-up runs, before this.)

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

use nix::unistd::{AccessFlags, access};

use crate::config::{AccessLogTarget, ErrorLogTarget};
use crate::error::StartupError;
use crate::generation::Generation;
use crate::listener;
use crate::log::{self as logging, AccessLog};
use crate::safeopen::{self, Guard};

/// Whether `--check-config` binds the listen addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    /// Bind each address as start-up would, then close it at once: a port
    /// in use or not allowed to this user fails the check.
    Try,
    /// Only resolve them (`--no-bind`): the ports are held by the running
    /// server (a check before a reload) or by systemd's socket unit.
    Skip,
}

/// How the start being checked would run: what `--daemon` and systemd
/// change in where daemon messages may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    /// `--daemon`: the server would detach.
    pub detaching: bool,
    /// Started by systemd (`$NOTIFY_SOCKET` or `$INVOCATION_ID`).
    pub under_systemd: bool,
}

/// Runs the checks on the generation start-up built; the first failure is
/// returned with start-up's own error for that step. A log or pid file,
/// and its directories, must be unchangeable by any account but root and
/// this one, as `safeopen` requires. Syslog, for either log, is connected by start-up's own code
/// and closed.
pub fn system(generation: &Generation, bind: Bind, launch: Launch) -> Result<(), StartupError> {
    let config = &generation.config;
    listen(generation, bind)?;
    certificates(generation)?;
    let guard = generation.guard();
    match &config.logging.access_log {
        AccessLogTarget::File(path) => log_file(path, guard)?,
        AccessLogTarget::Syslog => drop(AccessLog::open(&config.logging.access_log, guard)?),
        AccessLogTarget::Stderr | AccessLogTarget::Off => {}
    }
    match &config.logging.error_log {
        ErrorLogTarget::File(path) => log_file(path, guard)?,
        target => drop(logging::daemon_syslog(target, launch.detaching, launch.under_systemd)?),
    }
    if let Some(path) = &config.pid_file {
        pid_file(path, guard)?;
    }
    Ok(())
}

/// Resolves every listen address, `listen` and `proxy_listen` alike, and,
/// unless told not to or handed sockets by systemd (then neither key
/// applies), binds them all with start-up's own code and closes them.
fn listen(generation: &Generation, bind: Bind) -> Result<(), StartupError> {
    let config = &generation.config;
    let inherited = listener::inherited_wire();
    listener::require_trusted(inherited.proxy, &config.proxy.trusted)?;
    listener::require_certificate(inherited.tls, generation.tls.is_some())?;
    if bind == Bind::Skip || socket_activated() {
        for spec in &config.listeners {
            listener::resolve(&spec.addr)?;
        }
        return Ok(());
    }
    listener::bind_all(&config.listeners, config.backlog).map(drop)
}

/// Every certificate is in force: loading checked each key against its
/// chain's leaf and warned about one near its end (`tls::load`); a check
/// refuses one already expired (a running server serves it, with a
/// warning, rather than nothing).
fn certificates(generation: &Generation) -> Result<(), StartupError> {
    let Some(tls) = &generation.tls else {
        return Ok(());
    };
    tls.refuse_expired(SystemTime::now())
}

/// Whether systemd passed listening sockets to this very process. They
/// are left alone: a check must not adopt (and then close) them.
fn socket_activated() -> bool {
    std::env::var_os("LISTEN_FDS").is_some()
        && std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id())
}

/// A log file can be opened for appending: its directory passes
/// start-up's own directory rules (`safeopen`); an existing path is a
/// regular file (not a directory, FIFO or symbolic link) this user may
/// append to; a missing one lies in an existing directory this user may
/// create files in. Nothing is created: a check run as root must not leave
/// a root-owned log that the service user could then not open.
fn log_file(path: &Path, guard: Option<Guard>) -> Result<(), StartupError> {
    let fail = |source: io::Error| StartupError::Log { path: path.to_path_buf(), source };
    match fs::symlink_metadata(path) {
        Ok(meta) => {
            regular_file(meta.file_type(), "log files").map_err(fail)?;
            fs::OpenOptions::new()
                .append(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(path)
                .map(drop)
                .map_err(fail)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => writable_dir(path).map_err(fail)?,
        Err(e) => return Err(fail(e)),
    }
    safeopen::check_for_writing(path, guard).map_err(fail)
}

/// The pid file is opened in place (created if missing), locked, and
/// written through that descriptor: an existing path must be a regular
/// file (not a link, directory or FIFO) this user may read and write, a
/// missing one must lie in an existing directory that takes new files.
/// The lock is not tried: a check before a reload runs while the server
/// holds it.
fn pid_file(path: &Path, guard: Option<Guard>) -> Result<(), StartupError> {
    let fail = |source: io::Error| StartupError::PidFile { path: path.to_path_buf(), source };
    match fs::symlink_metadata(path) {
        Ok(meta) => {
            regular_file(meta.file_type(), "pid files").map_err(fail)?;
            access(path, AccessFlags::R_OK | AccessFlags::W_OK)
                .map_err(|e| fail(io::Error::other(format!("cannot read and write it: {e}"))))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => writable_dir(path).map_err(fail)?,
        Err(e) => return Err(fail(e)),
    }
    safeopen::check_for_writing(path, guard).map_err(fail)
}

/// Refuses, as start-up's open does, a path that is a symbolic link, a
/// directory, or anything else but a regular file (a FIFO, a device).
/// `what` names the kind of file in the message about links.
fn regular_file(kind: fs::FileType, what: &str) -> io::Result<()> {
    let why = if kind.is_symlink() {
        format!("is a symbolic link ({what} are opened without following links)")
    } else if kind.is_dir() {
        "is a directory".to_string()
    } else if !kind.is_file() {
        "is not a regular file".to_string()
    } else {
        return Ok(());
    };
    Err(io::Error::other(why))
}

/// The directory `path` would be created in exists, is a directory, and
/// this process may create files in it.
fn writable_dir(path: &Path) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("/"));
    let missing = |e: io::Error| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::other(format!("directory {} does not exist", dir.display()))
        } else {
            io::Error::other(format!("directory {}: {e}", dir.display()))
        }
    };
    let meta = fs::metadata(dir).map_err(missing)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!("{} is not a directory", dir.display())));
    }
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK)
        .map_err(|e| io::Error::other(format!("cannot create files in {}: {e}", dir.display())))
}
