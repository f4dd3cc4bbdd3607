//! Opening the files the parent reads and writes by path (the config and
//! its `mime_types` files, the log files, the pid file; `open_for_reading`
//! serves any other file the parent must trust, such as a private key) so
//! that no one else can steer the open.
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
//!    Certificate and key files alone may be links, which ACME clients
//!    re-point at each renewal (`read_trusted_through_links`): the link's
//!    directory and its target are each held to rule 3.
//! 3. No account but root and the server's own (its effective uid, "the
//!    invoking user") can change the file or any directory above it, as
//!    OpenSSH's `StrictModes` requires of its files: each must be owned by
//!    root or that uid and be neither group- nor world-writable. Not the
//!    account children run as (the `Guard`, named in the refusal when it
//!    is the one at fault), and not any other: an unprivileged user who
//!    owns a log directory swaps the log for a link to a root file, one who
//!    owns the config's directory rewrites what children run as. Group
//!    write is refused whatever the group, as OpenSSH's classic check does:
//!    its members cannot be listed reliably (OpenSSH's later exception for
//!    a user's private group enumerates every account, which NSS makes
//!    slow and incomplete). A sticky directory (`/tmp`) above the one
//!    holding the file may be writable: there others can change only their
//!    own entries, and the walk's next step checks the owner of the entry
//!    taken. The directory is reached by walking its canonical path from
//!    `/` one component at a time with `O_NOFOLLOW`, checking each
//!    directory's owner and mode, and the file is then opened relative to
//!    the directory's descriptor, and checked in turn once open.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, OFlag, fcntl, open, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use nix::unistd::{Gid, Uid, geteuid};
use zeroize::Zeroizing;

/// The account children run as, named in a refusal when it is the account
/// that could change a file (the rule holds against every account but root
/// and the server's own, this one included).
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
}

/// Why an account other than root and `me` (this server's own uid) can
/// change the entries of a directory, or a file, owned by `uid`:`gid` with
/// permission bits `mode`, or `None` if none can. In a sticky directory
/// (`/tmp`) others can only change their own entries, which the walk checks
/// on the next step, so a sticky ancestor writable by others is allowed;
/// the directory holding the file (`holds_file`), and the file, are held
/// to the strict rule. `guard` names the account children run as, so that
/// a refusal says when that is the account at fault.
fn can_change(
    uid: u32,
    gid: u32,
    mode: u32,
    holds_file: bool,
    me: Uid,
    guard: Option<Guard>,
) -> Option<String> {
    let bit = |m: Mode| mode & m.bits() != 0;
    let strict = holds_file || !bit(Mode::S_ISVTX);
    if uid != 0 && uid != me.as_raw() {
        let whose = if guard.is_some_and(|g| g.uid.as_raw() == uid) {
            "the account children run as".to_string()
        } else {
            format!("neither root nor this server's own uid {me}")
        };
        Some(format!("owned by uid {uid}, {whose}"))
    } else if bit(Mode::S_IWGRP) && strict {
        let whose =
            if guard.is_some_and(|g| g.gid.as_raw() == gid) { ", the group children run as" } else { "" };
        Some(format!("writable by group {gid}{whose}"))
    } else if bit(Mode::S_IWOTH) && strict {
        Some("world-writable".to_string())
    } else {
        None
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
/// missing (an existing file is checked once open, before a byte is
/// written; one just made is this server's own). `guard` is the account
/// children run as, if they drop root, for the messages. Returns the open
/// regular file (in blocking mode again, which regular files ignore
/// anyway), or an error that says which rule refused.
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
    require_unchangeable(&fstat(fd.as_fd())?, guard, WRITES)?;
    // The descriptor is shared with every child through fork; leave no
    // surprise flag on it.
    let fl = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(fl - OFlag::O_NONBLOCK))?;
    Ok(File::from(fd))
}

/// Checks, without creating or opening the file, that `path` could be
/// opened by `open_for_writing` as far as ownership and modes go: the
/// directory exists, neither it nor an ancestor can be changed by another
/// account, and neither can the file if it exists. For `--check-config`,
/// so that it refuses what start-up refuses. Returns the same error
/// start-up would give.
pub fn check_for_writing(path: &Path, guard: Option<Guard>) -> io::Result<()> {
    let (dir, name) = split(path)?;
    let dir_fd = open_dir(&dir, guard, WRITES)?;
    match fstatat(dir_fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => require_unchangeable(&st, guard, WRITES),
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Opens the regular file at `path` for reading under the three rules
/// above: never through a link as its last component, never blocking on a
/// FIFO or a device put in its place, and only if neither the file nor any
/// directory above it can be changed by an account other than root and
/// this server's own. `guard` is the account children run as, if known,
/// for the messages. For the config, `mime_types` files and, with HTTPS,
/// certificate and key files. Returns the open file, or an error that says
/// which rule refused.
pub fn open_for_reading(path: &Path, guard: Option<Guard>) -> io::Result<File> {
    let (dir, name) = split(path)?;
    let dir_fd = open_dir(&dir, guard, READS)?;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = openat(dir_fd.as_fd(), name, flags, Mode::empty()).map_err(open_error)?;
    require_regular(&fd)?;
    require_unchangeable(&fstat(fd.as_fd())?, guard, READS)?;
    Ok(File::from(fd))
}

/// Reads the whole file at `path`, opened by `open_for_reading`. Returns
/// its text.
pub fn read_trusted(path: &Path, guard: Option<Guard>) -> io::Result<String> {
    let mut text = String::new();
    open_for_reading(path, guard)?.read_to_string(&mut text)?;
    Ok(text)
}

/// How many symbolic links `read_trusted_through_links` follows: certbot's
/// `live/` link is one, an administrator's link to it a second.
const MAX_LINKS: usize = 8;

/// Reads the whole file at `path` as `read_trusted` does, except that a
/// symbolic link as the last component is followed, to a file then held to
/// all three rules in turn (its own directory walked from `/` afresh).
/// For certificate and key files only: ACME clients publish them as links
/// into an archive and re-point the links at each renewal (certbot's
/// `live/`, dehydrated's `certs/`). Rule 2 guards a file the parent writes,
/// or one (the config) whose path an attacker might plant a link at; here
/// the link must sit in a directory rule 3 accepts, so only root or the
/// server's own account can have made or re-pointed it, and whatever it
/// leads to must pass rule 3 as well: a link leads the parent nowhere its
/// maker could not have copied from. Returns the text, or an error that
/// says which rule refused.
pub fn read_trusted_through_links(path: &Path, guard: Option<Guard>) -> io::Result<String> {
    let mut text = String::new();
    open_trusted_through_links(path, guard)?.read_to_string(&mut text)?;
    Ok(text)
}

/// Opens the file at `path` for reading under `read_trusted_through_links`'s
/// rules: a link as the last component followed, the file it leads to held
/// to all three rules.
fn open_trusted_through_links(path: &Path, guard: Option<Guard>) -> io::Result<File> {
    let mut path = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        let (dir, name) = split(&path)?;
        let dir_fd = open_dir(&dir, guard, READS)?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        match openat(dir_fd.as_fd(), name, flags, Mode::empty()) {
            Ok(fd) => {
                require_regular(&fd)?;
                require_unchangeable(&fstat(fd.as_fd())?, guard, READS)?;
                return Ok(File::from(fd));
            }
            // The link is read from the directory just checked; a relative
            // target is relative to it, an absolute one replaces the path.
            Err(Errno::ELOOP) => path = dir.join(readlinkat(dir_fd.as_fd(), name)?),
            Err(e) => return Err(open_error(e)),
        }
    }
    Err(refused(&format!("leads through more than {MAX_LINKS} symbolic links")))
}

/// Reads the whole file at `path`, opened as `read_trusted_through_links`
/// opens it (a key: certbot's `live/` links), into a
/// buffer wiped when dropped (a private key), allocated once for the
/// file's size: a buffer that grew would leave copies of its start in
/// memory it gave back. A file longer than `most` bytes is refused.
pub fn read_secret(path: &Path, guard: Option<Guard>, most: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let file = open_trusted_through_links(path, guard)?;
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    if len > most {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("is larger than {most} bytes")));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(most + 1));
    // One byte more than allowed, so that a file that grew is seen.
    file.take(u64::try_from(most).unwrap_or(u64::MAX) + 1).read_to_end(&mut bytes)?;
    if bytes.len() > most {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("is larger than {most} bytes")));
    }
    Ok(bytes)
}

/// Why a refused file or directory matters, for a file the parent writes.
const WRITES: &str = "the server writes only where no other account can replace a file with a link \
                      (make it and its directories owned by root or the user starting the server, \
                      and not group- or world-writable)";
/// Why a refused file or directory matters, for a file the parent reads.
const READS: &str = "the server reads its configuration only where no other account can change it \
                     (make it and its directories owned by root or the user starting the server, \
                     and not group- or world-writable)";

/// Refuses a file, by its `fstat`, that an account other than root and
/// this server's own can change, saying `why` that matters.
fn require_unchangeable(st: &FileStat, guard: Option<Guard>, why: &str) -> io::Result<()> {
    match can_change(st.st_uid, st.st_gid, st.st_mode, true, geteuid(), guard) {
        Some(how) => Err(refused(&format!("is {how}: {why}"))),
        None => Ok(()),
    }
}

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

/// Opens directory `dir` (`O_PATH`): walks its canonical path from `/`
/// without following any link (a link swapped in after `canonicalize`
/// fails the walk) and refuses a directory on the way that an account
/// other than root and this server's own can change, saying `why` that
/// matters.
fn open_dir(dir: &Path, guard: Option<Guard>, why: &str) -> io::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let me = geteuid();
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
        if let Some(how) = can_change(st.st_uid, st.st_gid, st.st_mode, i + 1 == depth, me, guard) {
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

    /// Only root and the server's own uid may own what it opens, and no
    /// group or other may write it, but for a sticky ancestor; the
    /// account children run as is named when it is the one at fault.
    #[test]
    fn who_can_change_a_file_or_directory() {
        let g = Guard::for_account(Uid::from_raw(65534), Gid::from_raw(65534));
        // (server's uid, owner uid, owner gid, mode, holds the file, refused)
        let cases = [
            (0, 0, 0, 0o755, true, false),
            (0, 0, 0, 0o750, true, false),
            (0, 0, 0, 0o644, true, false),
            (0, 65534, 0, 0o755, true, true),
            (0, 65534, 0, 0o500, false, true),
            (0, 0, 65534, 0o775, true, true),
            (0, 0, 65534, 0o755, true, false),
            // Another unprivileged user or group, not the serving one.
            (0, 1000, 1000, 0o755, true, true),
            (0, 1000, 0, 0o755, false, true),
            (0, 1000, 0, 0o1777, false, true),
            (0, 0, 4, 0o775, true, true),
            (0, 0, 4, 0o775, false, true),
            (0, 0, 4, 0o664, true, true),
            (0, 0, 0, 0o777, false, true),
            (0, 0, 0, 0o666, true, true),
            (0, 0, 0, 0o1777, false, false),
            (0, 0, 0, 0o1777, true, true),
            (0, 0, 65534, 0o1775, false, false),
            (0, 0, 65534, 0o1775, true, true),
            // A server started by uid 1000 trusts its own files, and root's.
            (1000, 1000, 1000, 0o755, true, false),
            (1000, 0, 0, 0o755, false, false),
            (1000, 1001, 1000, 0o755, true, true),
            (1000, 1000, 1000, 0o775, true, true),
        ];
        for (me, uid, gid, mode, holds, refused) in cases {
            assert_eq!(
                can_change(uid, gid, mode, holds, Uid::from_raw(me), g).is_some(),
                refused,
                "server uid {me}: uid {uid} gid {gid} mode {mode:o} holds file {holds}"
            );
        }
        let why = |uid, gid, mode| can_change(uid, gid, mode, true, Uid::from_raw(0), g).unwrap_or_default();
        assert!(why(65534, 0, 0o755).contains("the account children run as"));
        assert!(why(1000, 0, 0o755).contains("neither root nor this server's own uid 0"));
        assert!(why(0, 65534, 0o775).contains("group 65534, the group children run as"));
        assert_eq!(why(0, 4, 0o775), "writable by group 4");
        assert_eq!(why(0, 0, 0o757), "world-writable");
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
