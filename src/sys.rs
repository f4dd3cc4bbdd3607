//! The only module with `unsafe` code: `fork` and the spawner's `clone`,
//! reading and setting a signal disposition, `_exit`, adopting an
//! inherited or received descriptor, receiving descriptors without
//! allocating, closing
//! descriptors by range, dropping the capability bounding set, mapping
//! counters shared across forks (and the scoreboard's words), the
//! parent's tables wiped in its children, a do-nothing signal handler,
//! `listen`, `TCP_DEFER_ACCEPT` and `TCP_NOTSENT_LOWAT`. Each
//! block is one call long and says why it is sound. And one unsafe
//! attribute: `run_at_load!`, the binary's constructor.
//!
//! Runs in: parent (`fork`, adopting and closing descriptors, dispositions
//! at start, the shared counters, listener options, the constructor) and
//! child (the rest).
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags, madvise, mmap_anonymous, munmap};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU64;

use nix::unistd::Pid;

/// Which side of a `fork` this process is on.
#[derive(Debug)]
pub enum Forked {
    /// The parent, told the child's pid.
    Parent(Pid),
    /// The new child.
    Child,
}

/// `fork(2)`, through the C library's `_Fork` (glibc 2.34, musl 1.2.3):
/// the fork without `pthread_atfork` handlers and the C library's own
/// resetting of its locks in the child. A single-threaded process has no
/// lock held by another thread to reset, and the resetting is not free:
/// glibc's `fork` rewrites its loader's locks in the child, two pages of
/// `ld.so`'s data that each child would otherwise copy from its parent.
/// Returns the side we are on, or the errno (`EAGAIN` when `RLIMIT_NPROC`
/// or memory runs out).
pub fn fork() -> nix::Result<Forked> {
    unsafe extern "C" {
        fn _Fork() -> libc::pid_t;
    }
    // SAFETY: the parent is single-threaded (no helper threads are ever
    // started: signals arrive through a self-pipe, logging is synchronous),
    // so no lock can be held by a thread that does not exist in the child,
    // and the child may allocate freely: `_Fork` then leaves the child in
    // the state `fork` would (glibc's manual: only after a fork from a
    // multi-threaded process is the child limited to async-signal-safe
    // calls). No atfork handler is registered by this program or its
    // libraries, so none is skipped. `_Fork` takes no arguments and sets
    // the thread id in the child as `fork` does. The child never returns
    // into the parent's frames: it ends in `exit_child`.
    match Errno::result(unsafe { _Fork() })? {
        0 => Ok(Forked::Child),
        child => Ok(Forked::Parent(Pid::from_raw(child))),
    }
}

/// `clone(2)` with `CLONE_PARENT`: a fork whose child is not this
/// process's but its parent's, which then reaps it and gets its
/// `SIGCHLD` (the spawner forks children for the server's parent this
/// way; `spawner`). Returns the side we are on, or the errno.
pub fn fork_sibling() -> nix::Result<Forked> {
    let flags = libc::c_ulong::try_from(libc::CLONE_PARENT | libc::SIGCHLD).unwrap_or(0);
    // SAFETY: without `CLONE_VM` the child gets a copy of this address
    // space, as with `fork`, and with no new stack given (0) it returns
    // here on its copy of this stack, like `fork`'s child. The caller is
    // single-threaded (the spawner starts no thread), so no lock is held
    // by a thread missing in the child. What the C library's `_Fork`
    // does beyond the system call does not apply or matter: its thread's
    // cached id (the kernel's `gettid` is used where the id matters:
    // glibc's `raise` and `abort` ask the kernel since 2.35, and the
    // standard library's locks are futexes with no owner id), and its
    // robust mutex list (none is used). The child never returns into the
    // caller's frames: it serves and ends in `exit_child`.
    match Errno::result(unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) })? {
        0 => Ok(Forked::Child),
        child => Ok(Forked::Parent(Pid::from_raw(libc::pid_t::try_from(child).unwrap_or(-1)))),
    }
}

/// What a signal should do in the child.
#[derive(Clone, Copy, Debug)]
pub enum Disposition {
    /// The kernel's default action (`SIG_DFL`).
    Default,
    /// Nothing (`SIG_IGN`).
    Ignore,
}

/// Sets `sig`'s disposition, replacing the handler inherited from the parent.
pub fn set_disposition(sig: Signal, disposition: Disposition) -> nix::Result<()> {
    let handler = match disposition {
        Disposition::Default => SigHandler::SigDfl,
        Disposition::Ignore => SigHandler::SigIgn,
    };
    let action = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL and SIG_IGN install no Rust code as a handler, so
    // nothing can run at signal time; the process is single-threaded.
    unsafe { sigaction(sig, &action) }.map(drop)
}

/// Whether `sig` is ignored (`SIG_IGN`) in this process, as a launcher can
/// leave it across `exec`.
pub fn is_ignored(sig: Signal) -> nix::Result<bool> {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::uninit();
    // SAFETY: a null new action makes sigaction(2) only read the current
    // one into `old`, which is valid for writes of one `struct sigaction`;
    // nothing is installed, so no handler can run because of this call.
    Errno::result(unsafe { libc::sigaction(sig as libc::c_int, std::ptr::null(), old.as_mut_ptr()) })?;
    // SAFETY: sigaction(2) succeeded, so it filled in `old` entirely.
    let old = unsafe { old.assume_init() };
    Ok(old.sa_sigaction == libc::SIG_IGN)
}

/// Ends the child at once with `code`, running no destructors and no
/// `atexit` handlers: those belong to the parent's state that fork copied
/// (the pid file, buffered output) and must not run twice.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` takes no pointers and cannot fail; skipping the
    // destructors is the point.
    unsafe { libc::_exit(code) }
}

/// Takes ownership of descriptor `fd`, which this process inherited from
/// whoever started it (systemd socket activation). Returns `EBADF` if it is
/// not open.
pub fn adopt_inherited_fd(fd: RawFd) -> nix::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor's flags; any integer is a
    // valid argument and an unused one yields EBADF.
    nix::errno::Errno::result(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: the descriptor is open (F_GETFD just succeeded) and nothing
    // else in this process owns it: the socket-activation protocol hands
    // fds 3.. to the process named by LISTEN_PID, and the caller adopts each
    // one exactly once, before any other descriptor is opened that could
    // share the number.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Takes ownership of descriptor `fd`, which this process just received
/// with `SCM_RIGHTS` (the key process, a child's channel). No check that
/// it is open: the key process's filter has no `fcntl`, and the kernel
/// has just installed it.
pub fn adopt_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel installed `fd` in this process's table for the
    // `recvmsg` that returned it, and nothing else has been given the
    // number: the caller adopts each received descriptor exactly once,
    // right after the call, in a single-threaded process.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Room for the descriptors of one `recv_with_fds`: `CMSG_SPACE` of 8
/// descriptors on Linux, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct FdSpace([u8; 64]);

/// `recvmsg(2)` of one record into `buf`, with the descriptors passed
/// with it (`SCM_RIGHTS`, received close-on-exec) in `fds`, in order;
/// any beyond `N` are closed. Returns the record's length (0: the peer
/// closed). Unlike nix's `recvmsg`, it allocates nothing: the spawner
/// calls it for every connection, and a heap page it wrote then would
/// be copied by each child it forked before (see `spawner`).
pub fn recv_with_fds<const N: usize>(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut [Option<OwnedFd>; N],
) -> nix::Result<usize> {
    let mut space = FdSpace([0; 64]);
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: `msghdr` is plain data (pointers and integers, and on some
    // C libraries padding fields), for which all zeroes is a valid value:
    // an empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.0.as_mut_ptr().cast();
    // `usize` in glibc, `socklen_t` in musl.
    #[allow(clippy::useless_conversion)]
    {
        msg.msg_controllen = space.0.len().try_into().unwrap_or_default();
    }
    // SAFETY: `msg` points at `iov` (which points at `buf`) and at
    // `space`, each valid for writing its stated length for the call.
    let n = Errno::result(unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) })?;
    let mut taken = 0;
    // SAFETY: `msg` is the header the kernel just filled in; its control
    // pointer and length (set by the kernel) delimit `space`.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `CMSG_FIRSTHDR` and `CMSG_NXTHDR` return either null or
        // a header wholly inside the control data the kernel wrote.
        let header = unsafe { cmsg.read_unaligned() };
        // SAFETY: pure arithmetic on a length (a `const fn` marked unsafe).
        let data_at = usize::try_from(unsafe { libc::CMSG_LEN(0) }).unwrap_or(usize::MAX);
        // `usize` in glibc, `socklen_t` in musl.
        #[allow(clippy::useless_conversion)]
        let len = usize::try_from(header.cmsg_len).unwrap_or(0).saturating_sub(data_at);
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: `cmsg` is a valid header (above); its data follows it.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
            for i in 0..len / size_of::<RawFd>() {
                // SAFETY: `i` indexes the `len` bytes of this header's data,
                // inside the control data; it may be unaligned.
                let raw = unsafe { data.add(i).read_unaligned() };
                let owned = adopt_received_fd(raw);
                if let Some(slot) = fds.get_mut(taken) {
                    *slot = Some(owned);
                    taken += 1;
                }
            }
        }
        // SAFETY: `cmsg` is a valid header of `msg`'s control data.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    usize::try_from(n).map_err(|_| Errno::EINVAL)
}

/// Closes every descriptor from 3 up except those in `keep`, with one
/// `close_range(2)` per gap, whatever their number: no list of what to
/// close can be forgotten. Standard input, output and error stay open.
/// `keep` is walked once per kept descriptor (it is short) instead of being
/// copied and sorted: a child runs this first thing, and a fresh heap
/// allocation there is a page copied from the parent. Needs Linux 5.9;
/// `ENOSYS` before that.
pub fn close_all_except<I>(keep: I) -> nix::Result<()>
where
    I: IntoIterator<Item = RawFd> + Clone,
{
    let mut first = 3u32;
    loop {
        let next =
            keep.clone().into_iter().filter_map(|fd| u32::try_from(fd).ok()).filter(|&fd| fd >= first).min();
        let Some(fd) = next else {
            return close_range(first, u32::MAX);
        };
        if fd > first {
            close_range(first, fd - 1)?;
        }
        match fd.checked_add(1) {
            Some(after) => first = after,
            None => return Ok(()),
        }
    }
}

fn close_range(first: u32, last: u32) -> nix::Result<()> {
    // SAFETY: the descriptors in the range are owned by objects that are
    // never used again in this process: the caller keeps every descriptor
    // it still uses (see `close_all_except`'s callers), and the others
    // belong to the parent's state, which a child only drops by `_exit`,
    // or were inherited from the launcher before anything adopted them.
    // The process is single-threaded, so no other thread can be using one.
    // Called through syscall(2): the libc crate has no `close_range` for
    // musl, and the system call is the same everywhere.
    Errno::result(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) }).map(drop)
}

/// `listen(2)` on `fd` with `backlog`. nix's `Backlog` refuses values from
/// the C library's `SOMAXCONN` up, which is 4096 in glibc but 128 in musl:
/// the kernel caps the value at `net.core.somaxconn` itself, so the value
/// configured goes to the kernel as it is.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> nix::Result<()> {
    // SAFETY: listen(2) takes a descriptor and an integer and touches no
    // memory of ours; a descriptor that is not a socket yields ENOTSOCK.
    Errno::result(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// Empties the capability bounding set, so that no capability can be
/// regained later (by `exec` of a file with capabilities, which children
/// never do, but also by nothing else). Needs `CAP_SETPCAP`: called by
/// the root parent, once, before the first fork. Capabilities are numbered
/// from 0 up to the kernel's last; the first number the kernel does not
/// know (`EINVAL`) ends the loop, so nothing has to be read from `/proc`.
pub fn drop_bounding_set() -> nix::Result<()> {
    for cap in 0..libc::c_ulong::from(u8::MAX) {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no
        // memory of ours; the unused arguments are zero as prctl(2) asks.
        match Errno::result(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) }) {
            Ok(_) => {}
            Err(Errno::EINVAL) if cap > 0 => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether a fork by this process may go past `RLIMIT_NPROC`: the kernel
/// lets a process whose real uid is root, or that has `CAP_SYS_RESOURCE` or
/// `CAP_SYS_ADMIN` in effect, fork whatever its limit (`copy_process`).
pub fn exempt_from_process_limit() -> nix::Result<bool> {
    if nix::unistd::getuid().is_root() {
        return Ok(true);
    }
    // linux/capability.h: version 3 takes two 32-bit words per set.
    const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget(2) reads the header and writes two `Data` (version 3
    // asks for two), which `data` holds; pid 0 is this process.
    Errno::result(unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) })?;
    let effective = u64::from(data[0].effective) | (u64::from(data[1].effective) << 32);
    // CAP_SYS_ADMIN and CAP_SYS_RESOURCE (linux/capability.h; libc has no names for them).
    let exempting = (1u64 << 21) | (1u64 << 24);
    Ok(effective & exempting != 0)
}

/// `N` counters, zero at first, in memory shared with every process forked
/// after this call (`MAP_SHARED`), for the little state that children must
/// share (how often the server said a log failed). Never unmapped, so the
/// reference is valid for the life of the process. Returns the `mmap`
/// error (`ENOMEM`).
pub fn shared_counters<const N: usize>() -> nix::Result<&'static [AtomicU64; N]> {
    let len = NonZeroUsize::new(size_of::<[AtomicU64; N]>().max(1)).unwrap_or(NonZeroUsize::MIN);
    // SAFETY: an anonymous mapping at an address the kernel chooses
    // replaces nothing of ours; it is never unmapped (the reference made
    // below is 'static).
    let page = unsafe {
        mmap_anonymous(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED)
    }?;
    // SAFETY: the mapping is page-aligned (enough for AtomicU64), at least
    // `len` bytes, readable and writable, and zero-filled, which is a valid
    // [AtomicU64; N]; it lives as long as the process and is only ever
    // reached through this shared reference, whose atomics make concurrent
    // use (by this process and its children) sound.
    Ok(unsafe { page.cast::<[AtomicU64; N]>().as_ref() })
}

/// `len` words of memory, zero at first, that a child forked later gets
/// zeroed (`MADV_WIPEONFORK`, Linux 4.14) instead of sharing with this
/// process: the parent's writes to it after a fork copy no page into the
/// child, as writes to its heap would (each page the parent writes after
/// a fork leaves the child the old copy, counted in the child's memory).
/// For the parent's own tables, which a child never reads. On an older
/// kernel the words are this process's like any others.
#[derive(Debug)]
pub struct ParentWords {
    start: std::ptr::NonNull<u64>,
    len: usize,
}

impl ParentWords {
    /// Maps `len` (at least 1) zeroed words. Returns the `mmap` error
    /// (`ENOMEM`).
    pub fn new(len: usize) -> nix::Result<ParentWords> {
        let len = len.max(1);
        let bytes = len.checked_mul(size_of::<u64>()).and_then(NonZeroUsize::new).ok_or(Errno::ENOMEM)?;
        // SAFETY: an anonymous private mapping at an address the kernel
        // chooses replaces nothing of ours; `Drop` unmaps it, once.
        let start = unsafe {
            mmap_anonymous(None, bytes, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_PRIVATE)
        }?;
        // SAFETY: the advice covers exactly the mapping just made, which
        // nothing else refers to yet; it changes what a child gets, never
        // this process's contents. An error (a kernel without it) leaves
        // the mapping as it was, still valid.
        let _ = unsafe { madvise(start, bytes.get(), MmapAdvise::MADV_WIPEONFORK) };
        Ok(ParentWords { start: start.cast(), len })
    }
}

impl std::ops::Deref for ParentWords {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        // SAFETY: `start` is the page-aligned (so u64-aligned) start of a
        // readable mapping of `len` words, owned by `self` until `Drop`;
        // every bit pattern is a valid u64; a forked child sees zeros
        // there or its own copy, valid memory either way. The borrow of
        // `self` keeps `&mut` access out while the slice lives.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for ParentWords {
    fn deref_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `deref`, and the mapping is writable; the unique
        // borrow of `self` makes this the only reference to it.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl Drop for ParentWords {
    fn drop(&mut self) {
        // SAFETY: the mapping of `len` words at `start` was made by `new`
        // and is unmapped only here; no slice of it outlives the borrow
        // of `self` that made it.
        let _ = unsafe { munmap(self.start.cast(), self.len * size_of::<u64>()) };
    }
}

/// Words of memory shared with every process forked after they were
/// mapped (`MAP_SHARED`), zero at first, in a mapping of their own: the
/// scoreboard's slots and counters. Unmapped when dropped; a child never
/// drops them (it ends in `exit_child`), so its references stay valid.
#[derive(Debug)]
pub struct SharedWords {
    ptr: std::ptr::NonNull<AtomicU64>,
    len: usize,
}

impl SharedWords {
    /// Maps `len` words (at least one). Returns the `mmap` error (`ENOMEM`).
    pub fn new(len: usize) -> nix::Result<SharedWords> {
        let len = len.max(1);
        let bytes =
            len.checked_mul(size_of::<AtomicU64>()).and_then(NonZeroUsize::new).ok_or(Errno::ENOMEM)?;
        // SAFETY: an anonymous mapping at an address the kernel chooses
        // replaces nothing of ours; it is unmapped only by `drop`, which
        // no reference handed out by `words` can outlive.
        let page = unsafe {
            mmap_anonymous(None, bytes, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED)
        }?;
        Ok(SharedWords { ptr: page.cast(), len })
    }

    /// The words, shared with this process's children (and its parent,
    /// when it inherited them).
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned (enough for AtomicU64),
        // `len` words long, readable and writable, and zero-filled at
        // first, which is a valid AtomicU64; it stays mapped while `self`
        // lives, and is only reached through shared references to atomics,
        // which make concurrent use by several processes sound.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        let bytes = self.len * size_of::<AtomicU64>();
        // SAFETY: the mapping is ours, `bytes` long, and no reference into
        // it outlives `self` (`words` borrows it). Other processes keep
        // their own mappings of the same memory.
        if let Err(e) = unsafe { nix::sys::mman::munmap(self.ptr.cast(), bytes) } {
            log::warn!("munmap of a shared mapping: {e}");
        }
    }
}

/// Installs a handler for `sig` that does nothing (with `SA_RESTART`, so
/// it breaks no call but those the kernel never restarts, `ppoll` among
/// them). Its only effect is to end such a wait with `EINTR` while `sig`
/// is unblocked: how a child is asked to give its idle connection back
/// (see `stream::Client::read_with`). Dispositions survive `fork`, so the
/// parent installs it once for every child.
pub fn set_wake_handler(sig: Signal) -> nix::Result<()> {
    let action = SigAction::new(SigHandler::Handler(wake), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: `wake` does nothing, so it is async-signal-safe and cannot
    // disturb whatever code it interrupts.
    unsafe { sigaction(sig, &action) }.map(drop)
}

extern "C" fn wake(_: libc::c_int) {}

/// Sets `TCP_DEFER_ACCEPT` on the listening socket `fd`: the kernel keeps
/// a new connection out of the accept queue until its first data arrives,
/// or until about `secs` seconds have passed (then it is queued all the
/// same, and the child's `header_timeout` closes it). nix has no wrapper.
pub fn set_defer_accept(fd: BorrowedFd<'_>, secs: u32) -> nix::Result<()> {
    set_tcp_int(fd, libc::TCP_DEFER_ACCEPT, secs)
}

/// Sets `TCP_NOTSENT_LOWAT` on the connected socket `fd`: the kernel takes
/// no more of our data once `bytes` of it wait unsent, and reports room
/// again when less than half that waits. nix has no wrapper.
pub fn set_notsent_lowat(fd: BorrowedFd<'_>, bytes: u32) -> nix::Result<()> {
    set_tcp_int(fd, libc::TCP_NOTSENT_LOWAT, bytes)
}

/// Sets the `IPPROTO_TCP` option `option`, which takes an int, to `value`
/// (clamped to the int range).
fn set_tcp_int(fd: BorrowedFd<'_>, option: libc::c_int, value: u32) -> nix::Result<()> {
    let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    let len = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: `value` is a c_int that lives across the call and `len` is
    // its size, as both int-valued TCP options here expect; setsockopt
    // only reads it.
    Errno::result(unsafe {
        libc::setsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, option, (&raw const value).cast(), len)
    })
    .map(drop)
}

/// Puts `$f`, a safe `extern "C" fn()`, in the `.init_array` of the binary
/// that invokes this macro: the C library runs it after the dynamic loader
/// and before the Rust runtime and `main`. A macro, not a static here, so
/// that only the `forkhttpd` binary gets the constructor: the library is
/// also linked into the test binaries and the fuzz targets, whose signal
/// handling must stay their own (a `#[used]` static in a library is kept
/// in every binary that links it).
#[macro_export]
macro_rules! run_at_load {
    ($f:path) => {
        // SAFETY: the C library calls each `.init_array` entry as a C
        // function, once, in the main thread, before `main`; the entry is
        // a valid `extern "C" fn()` (the extra arguments glibc passes,
        // argc, argv and envp, are ignored under the C calling
        // convention), and `$f` is safe Rust that needs nothing the Rust
        // runtime sets up. Priority 0 puts it before the standard
        // library's own entry (00099), which only records the arguments.
        #[used]
        #[allow(unsafe_code)]
        #[unsafe(link_section = ".init_array.00000")]
        static RUN_AT_LOAD: extern "C" fn() = $f;
    };
}
