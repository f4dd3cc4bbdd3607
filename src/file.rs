//! From a safe relative path to an open file (steps 5 and 6 of the layered
//! defence described in `resolve.rs`).
//!
//! Runs in: child. The result (a `Lookup`, which `http::decide` turns into a
//! reply) is an open descriptor plus the `fstat` of that very descriptor,
//! never a path to be opened again later: what we checked is what we send,
//! and later features (validators, ranges, precompressed siblings) start
//! from the same `fstat`.

use std::fs::{self, File, Metadata};
use std::os::fd::BorrowedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

use crate::http::decide::{FileInfo, Found, Lookup, Opened};
use crate::http::resolve::Resolved;
use crate::http::status::Status;

/// The document root as a child sees it.
#[derive(Clone, Copy, Debug)]
pub struct Root<'a> {
    /// An open descriptor of the root directory.
    pub fd: BorrowedFd<'a>,
    /// Its canonical path in this process (`/` after a chroot).
    pub path: &'a Path,
}

/// Finds what `resolved` names beneath the document root. Returns 404 for
/// missing files, 403 for anything that leaves the root, is not a regular
/// file, or is a directory without an index file.
pub fn find<'n>(root: Root<'_>, resolved: &'n Resolved<'_>, index: &'n [String]) -> Lookup<'n> {
    let (file, meta) = open_beneath(root, &resolved.rel)?;
    if !meta.is_dir() {
        return regular(file, meta, resolved.file_name());
    }
    if !resolved.dir_form {
        return Ok(Found::Redirect(resolved.directory_location()));
    }
    for name in index {
        match open_beneath(root, &resolved.rel.join(name)) {
            Err(Status::NotFound) => continue,
            Err(status) => return Err(status),
            Ok((file, meta)) => return regular(file, meta, name.as_bytes()),
        }
    }
    // No listings (yet): a directory without an index is not for browsing.
    Err(Status::Forbidden)
}

/// Steps 5 and 6: opens `rel` with `openat2(2)` relative to the root's
/// descriptor with `RESOLVE_BENEATH`, so the kernel refuses (`EXDEV`) any
/// lookup that would leave the root, through `..` or a symlink, at every
/// step of the walk, with no window between check and use. Relative
/// symlinks that stay inside are followed.
///
/// `RESOLVE_BENEATH` also refuses every absolute symlink, even one that
/// points back inside the root; for those (and only after `EXDEV`) the path
/// is canonicalised, required to lie under the root, and opened again by
/// its symlink-free remainder, still with `RESOLVE_BENEATH`.
fn open_beneath(root: Root<'_>, rel: &Path) -> Result<(File, Metadata), Status> {
    let file = match openat_beneath(root.fd, rel) {
        Err(Errno::EXDEV) => {
            let real = fs::canonicalize(root.path.join(rel)).map_err(|e| Status::from_io(&e))?;
            let Ok(inside) = real.strip_prefix(root.path) else {
                log::warn!(
                    "refused /{}: it resolves outside the document root",
                    crate::log::Escaped(std::os::unix::ffi::OsStrExt::as_bytes(rel.as_os_str()))
                );
                return Err(Status::Forbidden);
            };
            openat_beneath(root.fd, inside)
        }
        other => other,
    }
    .map_err(|e| Status::from_io(&e.into()))?;
    let meta = file.metadata().map_err(|e| Status::from_io(&e))?;
    Ok((file, meta))
}

/// Checks that `openat2` with `RESOLVE_BENEATH` works here (Linux 5.6 or
/// later, and not filtered) by opening the root itself through it.
pub fn probe(root: BorrowedFd<'_>) -> Result<(), Errno> {
    openat_beneath(root, Path::new("")).map(drop)
}

/// `openat2` beneath `root`, read-only, also with `RESOLVE_NO_MAGICLINKS`
/// (no `/proc/self/fd` tricks) and `O_NONBLOCK` (a FIFO would otherwise
/// hang the child in `open`).
fn openat_beneath(root: BorrowedFd<'_>, rel: &Path) -> Result<File, Errno> {
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how).map(File::from)
}

fn regular(file: File, meta: Metadata, name: &[u8]) -> Lookup<'_> {
    if !meta.is_file() {
        return Err(Status::Forbidden);
    }
    Ok(Found::File(Opened { file, info: FileInfo::from(&meta), name }))
}
