//! Running in the background: detaching from the terminal the classic way,
//! and the pid file.
//!
//! Runs in: parent, at start-up and at exit.
//!
//! Everything that can fail for a reason the administrator must see (the
//! config, binding, opening logs, a pid file naming a live server) is done
//! *before* detaching, so it fails on the terminal. What can still fail
//! after it is reported back through a pipe: the process the administrator
//! started waits for the daemon's word, prints any error, and exits 0 only
//! once the daemon is ready.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, umask};
use nix::sys::wait::waitpid;
use nix::unistd::{chdir, dup2_stderr, dup2_stdin, dup2_stdout, pipe2, setsid};

use crate::error::StartupError;
use crate::sys::{self, Forked};

/// The word the daemon sends back when it is ready.
const READY: &[u8] = b"ready";

/// A pid file this process wrote; removed when dropped by that process.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Refuses to go on if `path` names a running forkhttpd other than us.
    /// A stale file (no such process, or another program) is fine.
    pub fn check(path: &Path) -> Result<(), StartupError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(StartupError::Daemon(format!("pid file {}: {e}", path.display())));
            }
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            return Ok(());
        };
        if pid != std::process::id() && is_forkhttpd(pid) {
            return Err(StartupError::Daemon(format!(
                "pid file {} names a running forkhttpd (pid {pid}); stop it first",
                path.display()
            )));
        }
        Ok(())
    }

    /// Writes our pid to `path` atomically: a temporary file beside it,
    /// then `rename`, so a reader never sees a half-written pid.
    pub fn write(path: &Path) -> Result<PidFile, StartupError> {
        let pid = std::process::id();
        let fail = |e: io::Error| StartupError::Daemon(format!("pid file {}: {e}", path.display()));
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{pid}.tmp"));
        let tmp = PathBuf::from(tmp);
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp).map_err(fail)?;
        let written = f.write_all(format!("{pid}\n").as_bytes()).and_then(|()| f.sync_all());
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
            // Best effort: the temporary file is ours and useless now.
            let _ = fs::remove_file(&tmp);
            return Err(fail(e));
        }
        Ok(PidFile { path: path.to_path_buf(), pid })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Children end with _exit and never get here; the check is for
        // certainty, since removing the file is the writer's job alone.
        if std::process::id() == self.pid
            && let Err(e) = fs::remove_file(&self.path)
        {
            log::warn!("cannot remove pid file {}: {e}", self.path.display());
        }
    }
}

/// Whether `pid` is a live process called forkhttpd.
fn is_forkhttpd(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == "forkhttpd")
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
    let fail = |what: &str, e: nix::Error| StartupError::Daemon(format!("cannot detach: {what}: {e}"));
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).map_err(|e| fail("pipe", e))?;
    match sys::fork().map_err(|e| fail("fork", e))? {
        Forked::Parent(child) => {
            drop(write_end);
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
