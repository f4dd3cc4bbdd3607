//! Running in the background: detaching from the terminal the classic way,
//! and the pid file.
//!
//! Runs in: parent, at start-up and at exit.
//!
//! Everything that can fail for a reason the administrator must see (the
//! config, binding, opening logs, a log target for daemon messages, the
//! pid file's lock held by a running server) is done *before* detaching,
//! so it fails on the terminal. What can still fail
//! after it is reported back through a pipe: the process the administrator
//! started waits for the daemon's word, prints any error, and exits 0 only
//! once the daemon is ready.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::{Mode, umask};
use nix::sys::wait::waitpid;
use nix::unistd::{chdir, dup2_stderr, dup2_stdin, dup2_stdout, pipe2, setsid};

use crate::error::StartupError;
use crate::safeopen::{self, Access, Guard};
use crate::sys::{self, Forked};

/// The word the daemon sends back when it is ready.
const READY: &[u8] = b"ready";
/// Attempts at locking the pid file when a stopping server unlinks it
/// between our open and our lock (each attempt then sees a new file).
const PID_LOCK_TRIES: usize = 5;

/// The pid file, held open and locked (`flock`, exclusive) for as long as
/// the server runs: a second server with the same file cannot take the
/// lock and refuses to start, whatever the file says. The lock belongs to
/// the open file, so it survives the forks of `detach`; the descriptor is
/// close-on-exec, and children close it (`Server`'s parent-only list) so a
/// child outliving the parent cannot keep the lock. Removed when dropped,
/// by the process that holds it, and only if the path still names the
/// locked file and that file names this process.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: Flock<File>,
    /// The process that may remove the file: the locker, then the writer.
    owner: u32,
    /// Whether this process's pid was written.
    written: bool,
}

impl PidFile {
    /// Opens `path` (as `safeopen` says: unchangeable by any account but
    /// root and the server's own; `guard` names the account children run
    /// as in a refusal) and locks it. Refuses to go on if another server
    /// holds the lock, naming its pid. Nothing is written yet: call
    /// `write` once the pid is final (after detaching).
    pub fn lock(path: &Path, guard: Option<Guard>) -> Result<PidFile, StartupError> {
        let fail = |source: io::Error| StartupError::PidFile { path: path.to_path_buf(), source };
        for _ in 0..PID_LOCK_TRIES {
            let file = safeopen::open_for_writing(path, Access::ReadWrite, guard).map_err(fail)?;
            let locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => locked,
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    let mut text = String::new();
                    let holder = match file.read_to_string(&mut text) {
                        Ok(_) if !text.trim().is_empty() => Some(text.trim().to_string()),
                        _ => None,
                    };
                    return Err(StartupError::PidFileLocked { path: path.to_path_buf(), holder });
                }
                Err((_, e)) => return Err(fail(e.into())),
            };
            // A server that stopped between our open and our lock unlinked
            // the file we hold: lock whatever the path names now.
            if same_file(path, &locked) {
                return Ok(PidFile {
                    path: path.to_path_buf(),
                    file: locked,
                    owner: std::process::id(),
                    written: false,
                });
            }
        }
        Err(fail(io::Error::other("it keeps being replaced while being locked")))
    }

    /// Writes our pid (a decimal number and a newline) into the locked
    /// file. Readers may see it empty for an instant, never a mix of pids.
    pub fn write(&mut self) -> Result<(), StartupError> {
        let pid = std::process::id();
        let fail = |source: io::Error| StartupError::PidFile { path: self.path.clone(), source };
        let file: &mut File = &mut self.file;
        file.set_len(0).map_err(fail)?;
        file.rewind().map_err(fail)?;
        // One write: a reader sees the whole pid or nothing.
        file.write_all(format!("{pid}\n").as_bytes()).map_err(fail)?;
        self.owner = pid;
        self.written = true;
        Ok(())
    }

    /// The pid file's descriptor, which children must close.
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&*self.file)
    }

    /// Whether the file may be removed: the path still names our locked
    /// file, and (once written) the file still names us.
    fn still_ours(&self) -> bool {
        if !same_file(&self.path, &self.file) {
            return false;
        }
        !self.written || self.names_owner()
    }

    /// Whether the locked file holds the owner's pid, read through the held
    /// descriptor from offset 0 (`pread`), never by path: a FIFO or another
    /// file swapped in for the path after `same_file` looked could
    /// otherwise block the exit or answer for our file.
    fn names_owner(&self) -> bool {
        // A pid, a newline, and room to see that anything longer is not ours.
        let mut buf = [0u8; 32];
        match self.file.read_at(&mut buf, 0) {
            Ok(n) => std::str::from_utf8(&buf[..n]).is_ok_and(|t| t.trim() == self.owner.to_string()),
            Err(_) => false,
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Children end with _exit and never get here; the check is for
        // certainty, since removing the file is the owner's job alone.
        // The lock is released only after the unlink (the field drops
        // after this), so no other server can lock a file we then remove.
        if std::process::id() != self.owner {
            return;
        }
        if !self.still_ours() {
            log::warn!("pid file {} no longer names this server; leaving it in place", self.path.display());
            return;
        }
        if let Err(e) = fs::remove_file(&self.path) {
            log::warn!("cannot remove pid file {}: {e}", self.path.display());
        }
    }
}

/// Whether `path` (not followed if a link) names the open file `file`.
fn same_file(path: &Path, file: &File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The daemon's end of the report pipe to the process that started it.
#[derive(Debug)]
pub struct Detached {
    report: File,
}

impl Detached {
    /// Tells the waiting starter that the daemon is up; it exits 0.
    pub fn ready(mut self) {
        // If the starter is gone there is no one left to tell.
        let _ = self.report.write_all(READY);
    }

    /// Tells the waiting starter why the daemon could not start; it prints
    /// the reason and exits 1.
    pub fn failed(mut self, err: &StartupError) {
        let _ = self.report.write_all(err.to_string().as_bytes());
    }
}

/// Detaches: fork (the starter waits for the report and exits), `setsid`
/// (leave the terminal's session), fork again (so the daemon, not being a
/// session leader, can never reacquire a terminal), `chdir("/")` (hold no
/// mount busy), `umask(027)`, and stdin, stdout and stderr to `/dev/null`.
/// Returns only in the daemon.
pub fn detach() -> Result<Detached, StartupError> {
    let fail = |step: &'static str, source: nix::Error| StartupError::Detach { step, source };
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).map_err(|e| fail("pipe", e))?;
    match sys::fork().map_err(|e| fail("fork", e))? {
        Forked::Parent(child) => {
            drop(write_end);
            crate::log::only_to_stderr();
            let code = await_report(File::from(read_end));
            // The intermediate child exits at once; collect it before leaving.
            let _ = waitpid(child, None);
            std::process::exit(code);
        }
        Forked::Child => drop(read_end),
    }
    setsid().map_err(|e| fail("setsid", e))?;
    match sys::fork().map_err(|e| fail("fork", e))? {
        Forked::Parent(_) => sys::exit_child(0),
        Forked::Child => {}
    }
    crate::log::set_parent_process();
    chdir("/").map_err(|e| fail("chdir /", e))?;
    umask(Mode::from_bits_truncate(0o027));
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| fail("/dev/null", e.raw_os_error().map_or(nix::Error::EIO, nix::Error::from_raw)))?;
    dup2_stdin(&null).map_err(|e| fail("stdin", e))?;
    dup2_stdout(&null).map_err(|e| fail("stdout", e))?;
    dup2_stderr(&null).map_err(|e| fail("stderr", e))?;
    Ok(Detached { report: File::from(write_end) })
}

/// In the starter: waits for the daemon's report. Returns the exit code.
fn await_report(mut report: File) -> i32 {
    let mut word = Vec::new();
    match report.read_to_end(&mut word) {
        Ok(_) if word == READY => 0,
        Ok(_) if word.is_empty() => {
            log::error!("the daemon exited before it was ready");
            1
        }
        Ok(_) => {
            log::error!("{}", String::from_utf8_lossy(&word));
            1
        }
        Err(e) => {
            log::error!("waiting for the daemon: {e}");
            1
        }
    }
}
