//! From a safe relative path to an open file (steps 5 and 6 of the layered
//! defence described in `resolve.rs`).
//!
//! Runs in: child. The result (a `Lookup`, which `http::decide` turns into a
//! reply) is an open descriptor plus the `fstat` of that very descriptor,
//! never a path to be opened again later: what we checked is what we send,
//! and later features (validators, ranges, precompressed siblings) start
//! from the same `fstat`. `KeptFiles` keeps a connection's last files open
//! for its next requests, used only while unchanged.

use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, SFlag, fstatat};

use crate::http::decide::{Found, Lookup, Opened};
use crate::http::encoding::{self, Candidates};
use crate::http::fileinfo::FileInfo;
use crate::http::listing::{self, Entry, Listing, Selection};
use crate::http::resolve::Resolved;
use crate::http::site::Site;
use crate::http::status::Status;

/// The document root as a child sees it.
#[derive(Clone, Copy, Debug)]
pub struct Root<'a> {
    /// An open descriptor of the root directory.
    pub fd: BorrowedFd<'a>,
    /// Its canonical path in this process (`/` after a chroot).
    pub path: &'a Path,
}

/// Finds what `resolved` names beneath the document root for `site`.
/// Returns 404 for missing files, 403 for anything that leaves the root or
/// is not a regular file, and for a directory without an index file unless
/// the site lists directories.
///
/// With `site.precompressed`, a file is replaced by its best sibling
/// (`FILE.br`, `FILE.zst`, `FILE.gz`) that `accept_encoding` allows and
/// that exists as a regular file beneath the root: at most one `openat2`
/// per coding the client accepts, none when it sends no `Accept-Encoding`.
pub fn find<'n>(
    root: Root<'_>,
    resolved: &'n Resolved<'_>,
    site: &Site<'n>,
    accept_encoding: Option<&[u8]>,
) -> Lookup<'n> {
    find_noting(root, resolved, site, accept_encoding, &mut None)
}

/// `find`, which also sets `own` to the `Stamp` the file had when it was
/// opened, when what it found is the path's own regular file (not an index
/// file or a precompressed sibling).
fn find_noting<'n>(
    root: Root<'_>,
    resolved: &'n Resolved<'_>,
    site: &Site<'n>,
    accept_encoding: Option<&[u8]>,
    own: &mut Option<Stamp>,
) -> Lookup<'n> {
    let codings =
        if site.precompressed { encoding::candidates(accept_encoding) } else { Candidates::default() };
    let (file, meta) = open_beneath(root, &resolved.rel)?;
    if !meta.is_dir() {
        // `/index.html/` names a directory that is not there, as the kernel
        // (`ENOTDIR`), nginx and Apache say; serving the file would also
        // break its relative links.
        if resolved.dir_form {
            return Err(Status::NotFound);
        }
        let stamp = Stamp::of(&meta);
        let found = with_sibling(root, &resolved.rel, codings, regular(file, meta, resolved.file_name()));
        if matches!(&found, Ok(Found::File(opened)) if opened.encoding.is_none()) {
            *own = Some(stamp);
        }
        return found;
    }
    if !resolved.dir_form {
        return Ok(Found::Redirect(resolved.directory_location()));
    }
    for name in site.index {
        let path = resolved.rel.join(name);
        match open_beneath(root, &path) {
            Err(Status::NotFound) => continue,
            Err(status) => return Err(status),
            Ok((file, meta)) => {
                return with_sibling(root, &path, codings, regular(file, meta, name.as_bytes()));
            }
        }
    }
    if site.listing {
        return list(file, &meta, resolved.rel.as_os_str().as_bytes());
    }
    // A directory without an index is not for browsing unless the site says so.
    Err(Status::Forbidden)
}

/// How many files a connection keeps open for its next requests.
const KEPT_FILES: usize = 4;
/// Bytes of path each slot of `KeptFiles::with_room` holds without
/// allocating.
const KEPT_PATH_ROOM: usize = 64;

/// The files a connection served lately, kept open: asking again for one
/// that has not changed costs one `fstatat` instead of an `openat2`, a
/// `statx` and a `close` (a keep-alive client or proxy asking for the same
/// path again).
///
/// Only a plain lookup is kept: a path that names a regular file (not a
/// directory form, an index, a fallback or a precompressed sibling),
/// answered by `find`, whose descriptor was opened beneath the root. It is
/// used again only while the path, looked up now without following a final
/// symlink, names the same inode with the same `stat` as when it was
/// opened: device, inode, mode, owner, group, size, modification and
/// change times. Replacing, renaming, truncating, writing to, `chmod`ing,
/// `chown`ing or removing the file, or putting a link in its place, each
/// changes one of them, so the next request opens the path afresh with
/// every check of `find`. What a kept descriptor can send is only ever the
/// inode that `find` opened beneath the root for that very path.
#[derive(Debug, Default)]
pub struct KeptFiles {
    slots: [Option<Kept>; KEPT_FILES],
    /// Each empty slot's buffer for the path of the next file it keeps: a
    /// path is copied into room made beforehand (`with_room`, by the
    /// parent) or freed by the file it replaces, not into a new block.
    spare: [Vec<u8>; KEPT_FILES],
    /// The slot the next new file replaces, round robin.
    next: usize,
    /// The `Stamp` at opening of the file the last `find` opened, if it
    /// may be kept.
    opened: Option<Stamp>,
}

/// One kept file.
#[derive(Debug)]
struct Kept {
    /// The index of the site (in the configuration's order) and the path
    /// beneath its root that named the file.
    site: usize,
    rel: Vec<u8>,
    /// `None` while a request is using it.
    file: Option<File>,
    /// The file's `stat` when it was opened.
    at_open: Stamp,
}

/// What a change to a file, or to what its path names, alters in its
/// `stat`: device, inode, mode, owner, group, size, and the modification
/// and change times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp([i64; 10]);

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp([
            meta.dev() as i64,
            meta.ino() as i64,
            i64::from(meta.mode()),
            i64::from(meta.uid()),
            i64::from(meta.gid()),
            meta.size() as i64,
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
        ])
    }

    fn of_stat(st: &FileStat) -> Stamp {
        Stamp([
            st.st_dev as i64,
            st.st_ino as i64,
            i64::from(st.st_mode),
            i64::from(st.st_uid),
            i64::from(st.st_gid),
            st.st_size,
            st.st_mtime,
            st.st_mtime_nsec,
            st.st_ctime,
            st.st_ctime_nsec,
        ])
    }
}

impl KeptFiles {
    /// No files yet, with room for their paths (see `spare`).
    pub fn with_room() -> KeptFiles {
        KeptFiles { spare: std::array::from_fn(|_| Vec::with_capacity(KEPT_PATH_ROOM)), ..Default::default() }
    }

    /// Empties slot `i`, closing its file and keeping its path's buffer.
    fn empty(&mut self, i: usize) {
        if let Some(kept) = self.slots[i].take() {
            self.spare[i] = kept.rel;
        }
    }

    /// `find` for `resolved` beneath `root`, the root of the site with
    /// index `site_no`: from a kept file when `resolved` is a plain lookup
    /// of one that is unchanged (see `KeptFiles`), else by `find`.
    pub fn find<'n>(
        &mut self,
        site_no: usize,
        root: Root<'_>,
        resolved: &'n Resolved<'_>,
        site: &Site<'n>,
        accept_encoding: Option<&[u8]>,
    ) -> Lookup<'n> {
        let plain =
            !resolved.dir_form && (!site.precompressed || encoding::candidates(accept_encoding).is_empty());
        let rel = resolved.rel.as_os_str().as_bytes();
        if plain && let Some(i) = self.position(site_no, rel) {
            let slot = &mut self.slots[i];
            if let Some(kept) = slot.as_mut()
                && let Some(info) = unchanged(root, kept)
                && let Some(file) = kept.file.take()
            {
                return Ok(Found::File(Opened { file, info, name: resolved.file_name(), encoding: None }));
            }
            // Changed: closed now, and the path is looked up afresh.
            self.empty(i);
        }
        self.opened = None;
        find_noting(root, resolved, site, accept_encoding, &mut self.opened)
    }

    /// After the reply to a request was sent: keeps the file of `found`,
    /// the lookup `KeptFiles::find` gave for `resolved` (site `site_no`),
    /// if it is a plain one, for the requests that follow.
    pub fn keep(&mut self, site_no: usize, resolved: &Resolved<'_>, found: Lookup<'_>) {
        let Ok(Found::File(opened)) = found else { return };
        if resolved.dir_form || opened.encoding.is_some() {
            return;
        }
        let rel = resolved.rel.as_os_str().as_bytes();
        if let Some(i) = self.position(site_no, rel) {
            // Served from this slot: its file goes back. (A slot still
            // holding its file answered nothing: this lookup was not a
            // plain one, and its descriptor is simply closed.)
            if let Some(kept) = self.slots[i].as_mut()
                && kept.file.is_none()
            {
                kept.file = Some(opened.file);
            }
            return;
        }
        let Some(at_open) = self.opened.take() else { return };
        let i = self.slots.iter().position(Option::is_none).unwrap_or(self.next);
        self.next = (i + 1) % KEPT_FILES;
        self.empty(i);
        let mut kept_rel = std::mem::take(&mut self.spare[i]);
        kept_rel.clear();
        kept_rel.extend_from_slice(rel);
        self.slots[i] = Some(Kept { site: site_no, rel: kept_rel, file: Some(opened.file), at_open });
    }

    fn position(&self, site_no: usize, rel: &[u8]) -> Option<usize> {
        self.slots.iter().position(|s| s.as_ref().is_some_and(|k| k.site == site_no && k.rel == rel))
    }
}

/// What `kept.rel` names beneath `root` now, as a `FileInfo`, if it is the
/// kept file, unchanged since it was opened; `None` otherwise.
fn unchanged(root: Root<'_>, kept: &Kept) -> Option<FileInfo> {
    let now = fstatat(root.fd, OsStr::from_bytes(&kept.rel), AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    if Stamp::of_stat(&now) != kept.at_open {
        return None;
    }
    Some(FileInfo::from_stat(u64::try_from(now.st_size).ok()?, now.st_mtime, now.st_mtime_nsec))
}

/// `found` (the file at `path`), or in its place the first of its
/// precompressed siblings in `codings` that is a regular file beneath the
/// root, opened with the same checks as any file. A sibling that is
/// missing, refused or not a regular file is skipped.
fn with_sibling<'n>(root: Root<'_>, path: &Path, codings: Candidates, found: Lookup<'n>) -> Lookup<'n> {
    let Ok(Found::File(opened)) = found else { return found };
    for coding in codings.iter() {
        let mut name = path.as_os_str().to_owned();
        name.push(coding.suffix());
        if let Ok((file, meta)) = open_beneath(root, Path::new(&name))
            && meta.is_file()
        {
            let info = FileInfo { coding: Some(coding), ..FileInfo::from(&meta) };
            return Ok(Found::File(Opened { file, info, name: opened.name, encoding: Some(coding) }));
        }
    }
    Ok(Found::File(opened))
}

/// The listing of the directory open as `dir` (at `path` beneath the root).
/// Reads it through the descriptor opened beneath the root, never by path,
/// in one pass; `Selection` bounds what is kept.
fn list(dir: File, meta: &Metadata, path: &[u8]) -> Lookup<'static> {
    let fail = |e: Errno| Status::from_io(&e.into());
    // `Dir` reads through a duplicate; `dir` stays free for `fstatat`.
    let mut entries =
        Dir::from_fd(OwnedFd::from(dir.try_clone().map_err(|e| Status::from_io(&e))?)).map_err(fail)?;
    let mut selection = Selection::new(listing::MAX_ENTRIES);
    for entry in entries.iter() {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name().to_bytes();
        if !Selection::lists(name) {
            continue;
        }
        let kind = match entry.file_type() {
            Some(Type::Directory) => Kind::Dir,
            Some(Type::File | Type::Symlink) => Kind::Other,
            Some(_) => continue,
            // The filesystem gives no type in its entries: ask.
            None => match stat_at(&dir, name) {
                Some(st) => kind_of(&st),
                None => continue,
            },
        };
        if kind == Kind::Hidden {
            continue;
        }
        selection.offer(Entry { name: name.to_vec(), is_dir: kind == Kind::Dir, len: None, modified: None });
    }
    let (mut kept, left_out) = selection.into_sorted();
    for e in &mut kept {
        if let Some(st) = stat_at(&dir, &e.name) {
            let regular = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG;
            e.len = regular.then_some(st.st_size as u64);
            e.modified = u64::try_from(st.st_mtime)
                .ok()
                .map(|secs| SystemTime::UNIX_EPOCH + Duration::new(secs, st.st_mtime_nsec as u32));
        }
    }
    let mut html = Vec::new();
    listing::render(path, &kept, left_out, &mut html);
    Ok(Found::Listing(Listing { html, info: FileInfo::from(meta) }))
}

/// What a listing makes of a directory entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Listed first, linked with a trailing `/`.
    Dir,
    /// A regular file or a symbolic link (not followed: the request for it
    /// goes through `open_beneath` like any other).
    Other,
    /// A FIFO, socket or device: never served, so not listed.
    Hidden,
}

fn kind_of(st: &FileStat) -> Kind {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFREG | SFlag::S_IFLNK => Kind::Other,
        _ => Kind::Hidden,
    }
}

/// `fstatat` of `name` in `dir`, without following a symbolic link (whose
/// target may lie outside the root); `None` if it vanished meanwhile.
fn stat_at(dir: &File, name: &[u8]) -> Option<FileStat> {
    fstatat(dir, OsStr::from_bytes(name), AtFlags::AT_SYMLINK_NOFOLLOW).ok()
}

/// Steps 5 and 6: opens `rel` with `openat2(2)` relative to the root's
/// descriptor with `RESOLVE_BENEATH`, so the kernel refuses (`EXDEV`) any
/// lookup that would leave the root, through `..` or a symlink, at every
/// step of the walk, with no window between check and use. Relative
/// symlinks that stay inside are followed.
///
/// `RESOLVE_BENEATH` also refuses every absolute symlink, even one that
/// points back inside the root; for those (and only after `EXDEV`) see
/// `follow_link_inside`.
fn open_beneath(root: Root<'_>, rel: &Path) -> Result<(File, Metadata), Status> {
    let file = match openat_beneath(root.fd, rel) {
        Err(Errno::EXDEV) => follow_link_inside(root, rel)?,
        other => other.map_err(|e| Status::from_io(&e.into()))?,
    };
    let meta = file.metadata().map_err(|e| Status::from_io(&e))?;
    Ok((file, meta))
}

/// Most links to absolute paths inside the root followed for one request.
const MAX_LINK_HOPS: usize = 8;

/// Opens `rel`, whose lookup left the root (`EXDEV`), if the link that left
/// it points back inside. The first prefix of `rel` whose lookup leaves is
/// found (that link exists, since the walk reached it), and only that link
/// is canonicalised: if it lands inside the root, the rest of `rel` is
/// looked up beneath its target, still with `RESOLVE_BENEATH`. If it lands
/// outside, or nowhere, the answer is 403 whatever lies beneath it, so an
/// outward link is no oracle for which paths exist outside the root (with
/// the whole path canonicalised, `/etc/shadow` was 403 but
/// `/etc/nonexistent` 404 beneath `etc -> /etc`).
fn follow_link_inside(root: Root<'_>, rel: &Path) -> Result<File, Status> {
    let refused = |rel: &Path| {
        crate::log::client_warning(format_args!(
            "refused /{}: it resolves outside the document root",
            crate::log::Escaped(rel.as_os_str().as_bytes())
        ));
        Status::Forbidden
    };
    let mut rel = rel.to_path_buf();
    for _ in 0..MAX_LINK_HOPS {
        let parts: Vec<_> = rel.components().collect();
        let mut prefix = std::path::PathBuf::new();
        let mut leaves_at = None;
        for (i, part) in parts.iter().enumerate() {
            prefix.push(part);
            if openat_path_beneath(root.fd, &prefix) == Err(Errno::EXDEV) {
                leaves_at = Some(i);
                break;
            }
        }
        // The full path left, yet no prefix does now: it changed meanwhile.
        let Some(i) = leaves_at else { return Err(refused(&rel)) };
        let link = root.path.join(&prefix);
        let target = match fs::canonicalize(&link) {
            Ok(target) => target,
            // A dangling link into the root is simply missing there.
            Err(_) if dangles_inside(root, &link) => return Err(Status::NotFound),
            Err(_) => return Err(refused(&rel)),
        };
        let Ok(inside) = target.strip_prefix(root.path) else { return Err(refused(&rel)) };
        let mut next = inside.to_path_buf();
        next.extend(&parts[i + 1..]);
        match openat_beneath(root.fd, &next) {
            Err(Errno::EXDEV) => rel = next,
            other => return other.map_err(|e| Status::from_io(&e.into())),
        }
    }
    Err(refused(&rel))
}

/// Opens the ACME challenge token the resolved path `rel` names (see
/// `https::challenge`, which checked it is a plain token name in the
/// challenge directory) beneath the ACME webroot `webroot`: a regular file
/// only, and no symlink followed at all (`openat_beneath` would follow one
/// that stays beneath the webroot; ACME clients write plain files). No
/// index, listing or sibling: a token is a file or it is missing (404).
pub fn challenge<'n>(webroot: BorrowedFd<'_>, rel: &'n Path) -> Lookup<'n> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let file = openat2(webroot, rel, how).map(File::from).map_err(|e| Status::from_io(&e.into()))?;
    let meta = file.metadata().map_err(|e| Status::from_io(&e))?;
    let name = rel.file_name().map_or(&b""[..], |n| n.as_bytes());
    regular(file, meta, name)
}

/// Checks that `openat2` with `RESOLVE_BENEATH` works here (Linux 5.6 or
/// later, and not filtered) by opening the root itself through it.
pub fn probe(root: BorrowedFd<'_>) -> Result<(), Errno> {
    openat_beneath(root, Path::new("")).map(drop)
}

/// Whether the symlink `link`, whose target does not exist, points inside
/// the root: the deepest existing ancestor of its target lies inside it.
/// What is missing then is missing in the root, which tells nothing about
/// what exists outside.
fn dangles_inside(root: Root<'_>, link: &Path) -> bool {
    let Ok(target) = fs::read_link(link) else { return false };
    let target = link.parent().map_or(target.clone(), |dir| dir.join(&target));
    target.ancestors().find_map(|a| fs::canonicalize(a).ok()).is_some_and(|real| real.starts_with(root.path))
}

/// `openat2` of `rel` beneath `root` with `O_PATH`: whether the lookup
/// stays inside, without opening (or needing read permission on) the file.
fn openat_path_beneath(root: BorrowedFd<'_>, rel: &Path) -> Result<(), Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how).map(drop)
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
    Ok(Found::File(Opened { file, info: FileInfo::from(&meta), name, encoding: None }))
}
