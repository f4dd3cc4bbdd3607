//! Opening the files the parent reads and writes by path (the config and
//! its `mime_types` files, the log files, the pid file) so that no one else
//! can steer the open.
//!
//! Runs in: parent only, at start-up and on `SIGHUP`/`SIGUSR1`.
//!
//! Three rules, each for a fault the parent must not have:
//! 1. Nothing blocks: every open has `O_NONBLOCK` (a FIFO put where a file
//!    should be would otherwise hold the parent in `open(2)`, deaf to
//!    signals), and the opened descriptor must be a regular file.
//! 2. The last component is never a symbolic link (`O_NOFOLLOW`): a link
//!    swapped in for `access.log` would have a root parent append
//!    client-chosen text to, or create, whatever file the link names.
//! 3. While the parent is root and children run as another account (a
//!    `Guard`), a file is written only in a directory that account cannot
//!    change, and beneath ancestors it cannot change either: the directory
//!    is reached by walking its canonical path from `/` one component at a
//!    time with `O_NOFOLLOW`, checking each directory's owner and mode, and
//!    the file is then opened relative to the directory's descriptor.
//!    A file the parent reads (the config says what children run as) is
//!    held to the same rule, and so is the file itself: the account must
//!    neither own it nor be able to write it.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open, openat};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::unistd::{Gid, Uid};

/// The account children run as, which must not be able to change what a
/// root parent writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    uid: Uid,
    gid: Gid,
}

impl Guard {
    /// The guard for children running as `uid`:`gid`; `None` for root
    /// (children that stay root can change anything anyway).
    pub fn for_account(uid: Uid, gid: Gid) -> Option<Guard> {
        (!uid.is_root()).then_some(Guard { uid, gid })
    }

    /// Why the serving account can change the entries of a directory owned
    /// by `uid`:`gid` with permission bits `mode`, or `None` if it cannot.
    /// In a sticky directory (`/tmp`) it can only change its own entries,
    /// which the walk checks on the next step, so a sticky ancestor it may
    /// write (as everyone, or as its group: `/tmp` is root's group's) is
    /// allowed; the directory holding the file itself is held to the
    /// strict rule.
    fn can_change(&self, uid: u32, gid: u32, mode: u32, holds_file: bool) -> Option<String> {
        let bit = |m: Mode| mode & m.bits() != 0;
        let strict = holds_file || !bit(Mode::S_ISVTX);
        if uid == self.uid.as_raw() {
            Some(format!("owned by uid {}, the account children run as", self.uid))
        } else if bit(Mode::S_IWGRP) && gid == self.gid.as_raw() && strict {
            Some(format!("writable by group {}, the group children run as", self.gid))
        } else if bit(Mode::S_IWOTH) && strict {
            Some("world-writable".to_string())
        } else {
            None
        }
    }
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Append only (log files), created with mode 0640 if missing.
    Append,
    /// Read and write (the pid file), created with mode 0644 if missing.
    ReadWrite,
}

/// Opens `path` for writing under the three rules above, creating it if
/// missing. Returns the open regular file (in blocking mode again, which
/// regular files ignore anyway), or an error that says which rule refused.
pub fn open_for_writing(path: &Path, access: Access, guard: Option<Guard>) -> io::Result<File> {
    let (dir, name) = split(path)?;
    let dir_fd = open_dir(&dir, guard, WRITES)?;
    let (flags, mode) = match access {
        Access::Append => (OFlag::O_WRONLY | OFlag::O_APPEND, 0o640),
        Access::ReadWrite => (OFlag::O_RDWR, 0o644),
    };
    let flags = flags | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = openat(dir_fd.as_fd(), name, flags, Mode::from_bits_truncate(mode)).map_err(open_error)?;
    require_regular(&fd)?;
    // The descriptor is shared with every child through fork; leave no
    // surprise flag on it.
    let fl = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(fl - OFlag::O_NONBLOCK))?;
    Ok(File::from(fd))
}

/// Checks, without creating or opening the file, that `path` could be
/// opened by `open_for_writing` as far as its directory goes: the
/// directory exists and, with a guard, neither it nor an ancestor can be
/// changed by the guarded account. For `--check-config`, so that it refuses
/// what start-up refuses. Returns the same error start-up would give.
pub fn check_directory(path: &Path, guard: Option<Guard>) -> io::Result<()> {
    let (dir, _) = split(path)?;
    open_dir(&dir, guard, WRITES).map(drop)
}

/// Opens the regular file at `path` for reading under the three rules
/// above: never through a link as its last component, never blocking on a
/// FIFO or a device put in its place and, with a guard, only if neither
/// the file nor any directory above it can be changed by the guarded
/// account. Returns the open file, or an error that says which rule
/// refused.
pub fn open_for_reading(path: &Path, guard: Option<Guard>) -> io::Result<File> {
    let (dir, name) = split(path)?;
    let dir_fd = open_dir(&dir, guard, READS)?;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = openat(dir_fd.as_fd(), name, flags, Mode::empty()).map_err(open_error)?;
    require_regular(&fd)?;
    if let Some(guard) = guard {
        let st = fstat(fd.as_fd())?;
        if let Some(why) = guard.can_change(st.st_uid, st.st_gid, st.st_mode, true) {
            return Err(refused(&format!("is {why}: {READS}")));
        }
    }
    Ok(File::from(fd))
}

/// Reads the whole file at `path`, opened by `open_for_reading`. Returns
/// its text.
pub fn read_trusted(path: &Path, guard: Option<Guard>) -> io::Result<String> {
    let mut text = String::new();
    open_for_reading(path, guard)?.read_to_string(&mut text)?;
    Ok(text)
}

/// Why a refused directory matters, for a file the parent writes.
const WRITES: &str = "a root server writes only where that account cannot replace a file with a link \
                      (make it owned by root and not group- or world-writable)";
/// Why a refused file or directory matters, for a file the parent reads.
const READS: &str = "a root server reads its configuration only where that account cannot change it \
                     (make it and its directories owned by root and not group- or world-writable)";

/// The error of an `openat` of a file's last component, saying which rule
/// refused it.
fn open_error(e: Errno) -> io::Error {
    match e {
        Errno::ELOOP => refused("is a symbolic link; refusing to follow it"),
        // O_WRONLY|O_NONBLOCK on a FIFO nobody reads.
        Errno::ENXIO => refused("is not a regular file"),
        e => io::Error::from(e),
    }
}

fn require_regular(fd: &OwnedFd) -> io::Result<()> {
    let st = fstat(fd.as_fd())?;
    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG {
        Ok(())
    } else {
        Err(refused("is not a regular file"))
    }
}

/// `path` as its directory and its final name; the name must be a plain
/// component (not `..`, not empty).
fn split(path: &Path) -> io::Result<(PathBuf, &OsStr)> {
    let name = match path.components().next_back() {
        Some(Component::Normal(name)) => name,
        _ => return Err(refused("does not name a file")),
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok((dir.to_path_buf(), name))
}

/// Opens directory `dir` (`O_PATH`). With a guard, walks its canonical
/// path from `/` without following any link (a link swapped in after
/// `canonicalize` fails the walk) and refuses a directory on the way that
/// the guarded account can change, saying `why` that matters.
fn open_dir(dir: &Path, guard: Option<Guard>, why: &str) -> io::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let Some(guard) = guard else {
        return Ok(open(dir, flags, Mode::empty())?);
    };
    let canonical = std::fs::canonicalize(dir)?;
    let depth = canonical.components().count();
    let mut fd = open("/", flags, Mode::empty())?;
    let mut walked = PathBuf::from("/");
    for (i, part) in canonical.components().enumerate() {
        if i > 0 {
            fd = openat(fd.as_fd(), part.as_os_str(), flags | OFlag::O_NOFOLLOW, Mode::empty())?;
            walked.push(part);
        }
        let st = fstat(fd.as_fd())?;
        if let Some(how) = guard.can_change(st.st_uid, st.st_gid, st.st_mode, i + 1 == depth) {
            return Err(refused(&format!("directory {} is {how}: {why}", walked.display())));
        }
    }
    Ok(fd)
}

fn refused(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_the_serving_account_can_change() {
        let g = Guard { uid: Uid::from_raw(65534), gid: Gid::from_raw(65534) };
        // (owner uid, owner gid, mode, holds the file, refused)
        let cases = [
            (0, 0, 0o755, true, false),
            (0, 0, 0o750, true, false),
            (65534, 0, 0o755, true, true),
            (65534, 0, 0o500, false, true),
            (0, 65534, 0o775, true, true),
            (0, 65534, 0o755, true, false),
            (0, 4, 0o775, true, false),
            (0, 0, 0o777, false, true),
            (0, 0, 0o1777, false, false),
            (0, 0, 0o1777, true, true),
            (0, 65534, 0o1775, false, false),
            (0, 65534, 0o1775, true, true),
        ];
        for (uid, gid, mode, holds, refused) in cases {
            assert_eq!(
                g.can_change(uid, gid, mode, holds).is_some(),
                refused,
                "uid {uid} gid {gid} mode {mode:o} holds file {holds}"
            );
        }
    }

    #[test]
    fn only_plain_file_names_split() {
        assert!(
            split(Path::new("/var/log/x.log")).is_ok_and(|(d, n)| d == Path::new("/var/log") && n == "x.log")
        );
        assert!(split(Path::new("x.log")).is_ok_and(|(d, _)| d == Path::new(".")));
        assert!(split(Path::new("/var/log/..")).is_err());
        assert!(split(Path::new("/")).is_err());
    }
}
