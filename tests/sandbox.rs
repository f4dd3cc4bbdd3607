//! The children's sandbox, tried from inside: each case forks a spawner
//! that enters the real sandbox (`forkhttpd::sandbox::enter_spawner`, on a
//! document root of its own) and forks a child as the server's spawner
//! does (`sys::fork_sibling`: the child is the test's), which adds its own
//! layer (`sandbox::enter_child`) and then attempts one act a compromised
//! child would. Every act is tried with each of the two layers a child can
//! add (`ChildLayer`): its own filter, and the process limit lowered to 0,
//! the latter with the spawner as the serving user (`nobody` when the test
//! runs as root, which the limit would not bind).
//! Every forbidden act must fail, either with an error (Landlock) or by
//! killing the process (seccomp, `SIGSYS`); reading beneath the root must
//! still work.
//!
//! A test binary of its own without the test harness (`harness = false`):
//! the harness runs tests on threads, and a process that forks must be
//! single-threaded for the child to be sound.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

use forkhttpd::sandbox::{self, ChildLayer, ChildSandbox, Plan};
use forkhttpd::sys::{self, Forked};
use nix::fcntl::{FcntlArg, OFlag, OpenHow, ResolveFlag, fcntl, open, openat2};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, ftruncate, getppid};

/// Exit status of an act that worked.
const DONE: i32 = 0;
/// Exit status of an act refused with an error.
const REFUSED: i32 = 1;
/// Exit status of a child that could not enter the sandbox.
const NO_SANDBOX: i32 = 2;

/// What one sandboxed child has to work with.
struct World {
    /// The document root (`O_PATH`, as the parent opens it).
    root: OwnedFd,
    /// A log file opened for appending before the sandbox, as children
    /// inherit the access log.
    log: File,
    /// A file outside the root, standing for the config.
    config: std::path::PathBuf,
    /// The port of a listening socket of the test on 127.0.0.1.
    port: u16,
    /// A TCP socket made before the sandbox, for `connect` and `bind`.
    socket: OwnedFd,
    /// A sleeping sibling process.
    sibling: Pid,
}

/// The outcome of one act: `Ok` if it worked.
type Act = fn(&World) -> Result<(), String>;

fn open_beneath(w: &World, name: &str, flags: OFlag) -> Result<OwnedFd, String> {
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_BENEATH);
    openat2(w.root.as_fd(), name, how).map_err(|e| e.to_string())
}

fn read_beneath(w: &World) -> Result<(), String> {
    let mut s = String::new();
    File::from(open_beneath(w, "x.txt", OFlag::O_RDONLY)?)
        .read_to_string(&mut s)
        .map_err(|e| e.to_string())?;
    if s == "x\n" { Ok(()) } else { Err(format!("read {s:?}")) }
}

fn list_beneath(w: &World) -> Result<(), String> {
    let dir = open_beneath(w, "sub", OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let dir = nix::dir::Dir::from_fd(dir).map_err(|e| e.to_string())?;
    let names: Vec<_> = dir.into_iter().filter_map(|e| e.ok()).map(|e| e.file_name().to_owned()).collect();
    if names.iter().any(|n| n.to_bytes() == b"y.txt") { Ok(()) } else { Err(format!("listed {names:?}")) }
}

fn write_beneath(w: &World) -> Result<(), String> {
    open_beneath(w, "x.txt", OFlag::O_WRONLY).map(drop)
}

fn open_path(path: &Path) -> Result<(), String> {
    open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map(drop).map_err(|e| e.to_string())
}

fn open_passwd(_: &World) -> Result<(), String> {
    open_path(Path::new("/etc/passwd"))
}

fn open_config(w: &World) -> Result<(), String> {
    open_path(&w.config)
}

fn open_parent_mem(_: &World) -> Result<(), String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{}/mem", getppid()))
        .map(drop)
        .map_err(|e| e.to_string())
}

fn new_socket(_: &World) -> Result<(), String> {
    socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn connect_loopback(w: &World) -> Result<(), String> {
    let to = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, w.port));
    connect(w.socket.as_raw_fd(), &to).map_err(|e| e.to_string())
}

fn bind_loopback(w: &World) -> Result<(), String> {
    let at = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
    bind(w.socket.as_raw_fd(), &at).map_err(|e| e.to_string())
}

fn exec_true(_: &World) -> Result<(), String> {
    let prog = c"/bin/true";
    nix::unistd::execv(prog, &[prog]).map(drop).map_err(|e| e.to_string())
}

fn stop_parent(_: &World) -> Result<(), String> {
    kill(getppid(), Signal::SIGSTOP).map_err(|e| e.to_string())?;
    // It worked, so the sandbox failed: let the test go on to say so.
    kill(getppid(), Signal::SIGCONT).map_err(|e| e.to_string())
}

fn abort_parent(_: &World) -> Result<(), String> {
    // `SIGABRT` is the one signal a child may send, to itself only.
    nix::sys::signal::kill(getppid(), Signal::SIGABRT).map_err(|e| e.to_string())
}

fn kill_sibling(w: &World) -> Result<(), String> {
    kill(w.sibling, Signal::SIGKILL).map_err(|e| e.to_string())
}

fn clear_append(w: &World) -> Result<(), String> {
    fcntl(&w.log, FcntlArg::F_SETFL(OFlag::empty())).map(drop).map_err(|e| e.to_string())
}

fn truncate_log(w: &World) -> Result<(), String> {
    ftruncate(&w.log, 0).map_err(|e| e.to_string())
}

/// How a sandboxed child running `act` ended.
#[derive(Debug, PartialEq)]
enum End {
    Worked,
    Refused,
    Killed,
    Aborted,
    Other(String),
}

/// The pid of a child the same spawner forked before the one acting (see
/// `run_sandboxed`): the acting child's sibling in the server.
static SPAWNED_SIBLING: AtomicI32 = AtomicI32::new(0);

fn kill_spawned_sibling(_: &World) -> Result<(), String> {
    kill(Pid::from_raw(SPAWNED_SIBLING.load(Ordering::Relaxed)), Signal::SIGKILL).map_err(|e| e.to_string())
}

fn kill_spawner(_: &World) -> Result<(), String> {
    kill(Pid::from_raw(SPAWNER.load(Ordering::Relaxed)), Signal::SIGKILL).map_err(|e| e.to_string())
}

/// The spawner's pid, for the acting child.
static SPAWNER: AtomicI32 = AtomicI32::new(0);

fn fork_again(_: &World) -> Result<(), String> {
    match sys::fork().map_err(|e| e.to_string())? {
        Forked::Child => sys::exit_child(DONE),
        Forked::Parent(_) => Ok(()),
    }
}

fn fork_sibling(_: &World) -> Result<(), String> {
    match sys::fork_sibling().map_err(|e| e.to_string())? {
        Forked::Child => sys::exit_child(DONE),
        Forked::Parent(_) => Ok(()),
    }
}

/// Runs `f` in a child the spawner forks: it enters its own layer first,
/// using up its copy of the spawner's `sandbox`.
fn spawn_child(plan: &Plan, sandbox: &mut Option<ChildSandbox>, f: impl FnOnce() -> i32) -> Pid {
    match sys::fork_sibling() {
        Ok(Forked::Child) => {
            if sandbox.take().is_none_or(|s| sandbox::enter_child(plan, s).is_err()) {
                sys::exit_child(NO_SANDBOX);
            }
            sys::exit_child(f())
        }
        Ok(Forked::Parent(pid)) => pid,
        Err(_) => sys::exit_child(NO_SANDBOX),
    }
}

/// The account a spawner whose children lower their process limit runs
/// as, when the test runs as root: `nobody`.
const SERVING_ID: u32 = 65534;

fn run_sandboxed(plan: &Plan, layer: ChildLayer, w: &World, act: Act) -> End {
    let (from_spawner, to_test) = nix::unistd::pipe().expect("pipe");
    let spawner = match sys::fork().expect("fork") {
        Forked::Child => {
            drop(from_spawner);
            if layer == ChildLayer::ProcessLimit && nix::unistd::getuid().is_root() {
                let id = nix::unistd::Gid::from_raw(SERVING_ID);
                let dropped = nix::unistd::setgroups(&[id])
                    .and_then(|()| nix::unistd::setgid(id))
                    .and_then(|()| nix::unistd::setuid(nix::unistd::Uid::from_raw(SERVING_ID)));
                if dropped.is_err() {
                    sys::exit_child(NO_SANDBOX);
                }
            }
            // The spawner's own choice must be the process limit whenever
            // it can bind; the filter is forced where it would not be chosen.
            let mut sandbox = match sandbox::enter_spawner(plan, [w.root.as_fd()]) {
                Ok(mut s) if s.layer == layer || layer == ChildLayer::Filter => {
                    s.layer = layer;
                    Some(s)
                }
                _ => sys::exit_child(NO_SANDBOX),
            };
            SPAWNER.store(nix::unistd::getpid().as_raw(), Ordering::Relaxed);
            // A sibling that waits, for the act to try to kill.
            let sibling = spawn_child(plan, &mut sandbox, || {
                std::thread::sleep(std::time::Duration::from_secs(10));
                DONE
            });
            SPAWNED_SIBLING.store(sibling.as_raw(), Ordering::Relaxed);
            let child = spawn_child(plan, &mut sandbox, || if act(w).is_ok() { DONE } else { REFUSED });
            let mut pids = [0u8; 8];
            pids[..4].copy_from_slice(&sibling.as_raw().to_le_bytes());
            pids[4..].copy_from_slice(&child.as_raw().to_le_bytes());
            let sent = nix::unistd::write(&to_test, &pids).is_ok_and(|n| n == pids.len());
            // Alive while the child acts, for the act that tries to kill it.
            std::thread::sleep(std::time::Duration::from_millis(if sent { 200 } else { 0 }));
            sys::exit_child(if sent { DONE } else { NO_SANDBOX })
        }
        Forked::Parent(pid) => pid,
    };
    drop(to_test);
    let mut pids = [0u8; 8];
    let read = File::from(from_spawner).read_exact(&mut pids);
    let spawner_end = waitpid(spawner, None).expect("waitpid");
    if read.is_err() {
        return End::Other(format!("the spawner sent no pids: {spawner_end:?}"));
    }
    let pid = |at: usize| Pid::from_raw(i32::from_le_bytes(pids[at..at + 4].try_into().unwrap()));
    let (sibling, child) = (pid(0), pid(4));
    let end = match waitpid(child, None).expect("waitpid") {
        WaitStatus::Exited(_, DONE) => End::Worked,
        WaitStatus::Exited(_, REFUSED) => End::Refused,
        WaitStatus::Signaled(_, Signal::SIGSYS, _) => End::Killed,
        WaitStatus::Signaled(_, Signal::SIGABRT, _) => End::Aborted,
        other => End::Other(format!("{other:?}")),
    };
    let sibling_alive = kill(sibling, None).is_ok();
    let _ = kill(sibling, Signal::SIGKILL);
    let _ = waitpid(sibling, None);
    if !sibling_alive {
        return End::Other(format!("the spawner's other child died; the act ended {end:?}"));
    }
    if spawner_end != WaitStatus::Exited(spawner, DONE) {
        return End::Other(format!("the spawner ended {spawner_end:?}; the act ended {end:?}"));
    }
    end
}

fn main() -> ExitCode {
    let missing = sandbox::missing();
    if !missing.is_empty() {
        eprintln!("sandbox: this kernel lacks {missing:?}");
        if std::env::var("CI").as_deref() == Ok("true") {
            return ExitCode::FAILURE;
        }
        eprintln!("skipped: the sandbox cannot be proved on this kernel");
        return ExitCode::SUCCESS;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("x.txt"), "x\n").unwrap();
    fs::write(root.join("sub/y.txt"), "y\n").unwrap();
    let config = dir.path().join("forkhttpd.toml");
    fs::write(&config, "root = \"root\"\n").unwrap();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(dir.path().join("access.log"))
        .unwrap();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let sibling = match sys::fork().expect("fork") {
        Forked::Child => {
            // Gone with the test, even if a failed case kills it.
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            loop {
                nix::unistd::pause();
            }
        }
        Forked::Parent(pid) => pid,
    };
    let root_fd = open(&root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
    let socket = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    let port = listener.local_addr().unwrap().port();
    let w = World { root: root_fd, log, config, port, socket, sibling };
    let plan = Plan::new().expect("sandbox plan");

    let allowed: [(&str, Act); 2] =
        [("read a file beneath the root", read_beneath), ("list a directory beneath the root", list_beneath)];
    let forbidden: [(&str, Act); 18] = [
        ("open a file beneath the root for writing", write_beneath),
        ("open /etc/passwd", open_passwd),
        ("open the config", open_config),
        ("open /proc/<parent>/mem", open_parent_mem),
        ("make a socket", new_socket),
        ("connect to 127.0.0.1", connect_loopback),
        ("bind", bind_loopback),
        ("execve /bin/true", exec_true),
        ("kill(parent, SIGSTOP)", stop_parent),
        ("kill(parent, SIGABRT)", abort_parent),
        ("kill(sibling, SIGKILL)", kill_sibling),
        ("kill(a sibling of the same spawner, SIGKILL)", kill_spawned_sibling),
        ("kill(spawner, SIGKILL)", kill_spawner),
        ("fork", fork_again),
        ("clone(CLONE_PARENT), as the spawner forks", fork_sibling),
        ("fcntl(F_SETFL) on a log descriptor", clear_append),
        ("ftruncate a log descriptor", truncate_log),
        ("read beneath the root, then open /etc/passwd", |w| read_beneath(w).and_then(|()| open_passwd(w))),
    ];
    let mut failures = Vec::new();
    for layer in [ChildLayer::Filter, ChildLayer::ProcessLimit] {
        // A panic ends a child with `abort`, which signals itself: that one
        // signal is allowed, so the parent logs the abort, not a `SIGSYS`.
        let end = run_sandboxed(&plan, layer, &w, |_| std::process::abort());
        println!("{layer:?}: abort: {end:?}");
        if end != End::Aborted {
            failures.push(format!("{layer:?}: abort: must end with SIGABRT, but {end:?}"));
        }
        for (what, act) in allowed {
            let end = run_sandboxed(&plan, layer, &w, act);
            println!("{layer:?}: {what}: {end:?}");
            if end != End::Worked {
                failures.push(format!("{layer:?}: {what}: must work in the sandbox, but {end:?}"));
            }
        }
        for (what, act) in forbidden {
            let end = run_sandboxed(&plan, layer, &w, act);
            println!("{layer:?}: {what}: {end:?}");
            if end != End::Refused && end != End::Killed {
                failures.push(format!("{layer:?}: {what}: must fail in the sandbox, but {end:?}"));
            }
        }
    }
    // The acts on the parent and the sibling changed nothing.
    let sibling_alive = kill(w.sibling, None).is_ok();
    let _ = kill(w.sibling, Signal::SIGKILL);
    let _ = waitpid(w.sibling, None);
    if !sibling_alive {
        failures.push("the sibling died".to_string());
    }
    let flags = fcntl(&w.log, FcntlArg::F_GETFL).unwrap();
    if flags & libc::O_APPEND == 0 {
        failures.push("the log descriptor lost O_APPEND".to_string());
    }
    if failures.is_empty() {
        println!("sandbox: every forbidden act failed");
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            eprintln!("FAILED: {f}");
        }
        ExitCode::FAILURE
    }
}
