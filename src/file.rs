//! From a safe relative path to an open file (steps 5 and 6 of the layered
//! defence described in `resolve.rs`).
//!
//! Runs in: child. The result is an open descriptor plus the `fstat` of that
//! very descriptor, never a path to be opened again later: what we checked
//! is what we send, and later features (validators, ranges, precompressed
//! siblings) start from the same `fstat`.

use std::fs::{self, File, Metadata, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::Status;
use crate::mime;
use crate::resolve::Resolved;

/// A regular file ready to be sent.
#[derive(Debug)]
pub struct Body {
    /// The open file.
    pub file: File,
    /// `fstat` of `file`.
    pub meta: Metadata,
    /// The content type chosen by the requested name.
    pub content_type: &'static str,
}

/// What a request path names.
#[derive(Debug)]
pub enum Found {
    /// A regular file (the index file, for a directory).
    File(Body),
    /// A directory named without its trailing slash: redirect here.
    Redirect(String),
}

/// Finds what `resolved` names under `root` (canonical). Returns 404 for
/// missing files, 403 for anything outside the root, not a regular file, or
/// a directory without an index file.
pub fn find(root: &Path, resolved: &Resolved<'_>, index: &[String]) -> Result<Found, Status> {
    let path = contained(root, &root.join(&resolved.rel))?;
    let (file, meta) = open_checked(&path)?;
    if !meta.is_dir() {
        return regular(file, meta, resolved.file_name());
    }
    if !resolved.dir_form {
        return Ok(Found::Redirect(resolved.directory_location()));
    }
    for name in index {
        match contained(root, &path.join(name)) {
            Err(Status::NotFound) => continue,
            Err(status) => return Err(status),
            Ok(p) => {
                let (file, meta) = open_checked(&p)?;
                return regular(file, meta, name.as_bytes());
            }
        }
    }
    // No listings (yet): a directory without an index is not for browsing.
    Err(Status::Forbidden)
}

/// Step 5: the canonical form of `path`, which must lie under `root` and
/// must not pass through a hidden name (a symlink to `.git` is still `.git`).
fn contained(root: &Path, path: &Path) -> Result<PathBuf, Status> {
    let real = fs::canonicalize(path).map_err(|e| Status::from_io(&e))?;
    let Ok(inside) = real.strip_prefix(root) else {
        log::warn!(
            "refused {}: it resolves outside the document root",
            path.display()
        );
        return Err(Status::Forbidden);
    };
    for (i, c) in inside.components().enumerate() {
        if let Component::Normal(name) = c {
            let name = name.as_bytes();
            if name.first() == Some(&b'.') && !(i == 0 && name == b".well-known") {
                return Err(Status::NotFound);
            }
        }
    }
    Ok(real)
}

/// Step 6: open without following a final symlink (the path is canonical,
/// so a symlink there now was planted since we looked) and without
/// blocking (a FIFO would otherwise hang the child in `open`), then `fstat`.
fn open_checked(path: &Path) -> Result<(File, Metadata), Status> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Status::from_io(&e))?;
    let meta = file.metadata().map_err(|e| Status::from_io(&e))?;
    Ok((file, meta))
}

fn regular(file: File, meta: Metadata, name: &[u8]) -> Result<Found, Status> {
    if !meta.is_file() {
        return Err(Status::Forbidden);
    }
    Ok(Found::File(Body {
        file,
        meta,
        content_type: mime::content_type(name),
    }))
}
