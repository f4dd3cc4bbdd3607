//! `--check-config` beyond the file itself: the steps start-up takes
//! against the system (binding the listen addresses, opening the log files,
//! writing the pid file), tried now without keeping anything, so that a
//! configuration said to be OK also starts.
//!
//! Runs in: the parent of a `--check-config` run, once. (The config, the
//! user and group, and every site's document root with its `openat2(2)` probe are
//! checked by the same code start-up runs, before this.)

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::unistd::{AccessFlags, access};

use crate::config::{AccessLogTarget, Config, ErrorLogTarget};
use crate::error::StartupError;
use crate::listener;
use crate::privileges::DropPlan;
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

/// Runs the checks; the first failure is returned with start-up's own
/// error for that step. `drop_plan` is start-up's: with it (a root parent
/// whose children run as another account) a log or pid file must lie in a
/// directory that account cannot change, as `safeopen` requires.
pub fn system(config: &Config, drop_plan: Option<&DropPlan>, bind: Bind) -> Result<(), StartupError> {
    listen(config, bind)?;
    let guard = DropPlan::guard(drop_plan);
    if let AccessLogTarget::File(path) = &config.access_log {
        log_file(path, guard)?;
    }
    if let ErrorLogTarget::File(path) = &config.error_log {
        log_file(path, guard)?;
    }
    if let Some(path) = &config.pid_file {
        pid_file(path, guard)?;
    }
    Ok(())
}

/// Resolves every listen address and, unless told not to or handed sockets
/// by systemd (then `listen` does not apply), binds it with start-up's own
/// code and closes it.
fn listen(config: &Config, bind: Bind) -> Result<(), StartupError> {
    listener::require_trusted(listener::proxy_inherited(), &config.trusted_proxies)?;
    if bind == Bind::Skip || socket_activated() {
        for spec in &config.listen {
            listener::resolve(spec)?;
        }
        return Ok(());
    }
    listener::bind_all(&config.listen, config.backlog).map(drop)
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
            let kind = meta.file_type();
            let refused = if kind.is_symlink() {
                Some("is a symbolic link (log files are opened without following links)")
            } else if kind.is_dir() {
                Some("is a directory")
            } else if kind.is_fifo() || !kind.is_file() {
                Some("is not a regular file")
            } else {
                None
            };
            if let Some(why) = refused {
                return Err(fail(io::Error::other(why)));
            }
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
    safeopen::check_directory(path, guard).map_err(fail)
}

/// The pid file is written as a temporary file beside it, then renamed:
/// its directory must exist and take new files.
fn pid_file(path: &Path, guard: Option<Guard>) -> Result<(), StartupError> {
    let fail = |e: io::Error| StartupError::Daemon(format!("pid file {}: {e}", path.display()));
    writable_dir(path).map_err(fail)?;
    safeopen::check_directory(path, guard).map_err(fail)
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
