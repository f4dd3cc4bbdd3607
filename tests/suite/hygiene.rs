//! What a serving child holds: only the descriptors it serves with (none
//! inherited from whoever started the server, none of the parent's), no
//! way to gain privileges through `exec`, and, when started as root, an
//! empty capability bounding set. And what another process of the serving
//! account cannot do: open the parent's or a child's memory.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::common::{
    BIN, Conn, Proc, TempDir, chmod, config_text, is_root, make_root, missing_tool, passwd_ids, poll_until,
    run, scrub_env,
};

/// Where each of `pid`'s descriptors points, by number (`readlink` of
/// `/proc/PID/fd/N`: a path, or `socket:[inode]`, `pipe:[inode]`...).
fn fd_targets(pid: u32) -> Vec<(u32, String)> {
    let mut fds: Vec<(u32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| {
                let e = e.ok()?;
                let n = e.file_name().to_str()?.parse().ok()?;
                let target = fs::read_link(e.path()).ok()?;
                Some((n, target.to_string_lossy().into_owned()))
            })
            .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

/// A field of `/proc/PID/status` (such as `NoNewPrivs`), trimmed.
fn status_field(pid: u32, key: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().to_string()))
}

/// Starts the server through `sh`, which opens `/` as descriptors 7 and 9
/// before it execs the server: descriptors any launcher could leave open.
/// As root, children chroot into the document root and run as `nobody`.
/// Both logs are files, so a child has a descriptor of each to keep.
fn start_with_stray_fds(dir: &TempDir) -> (Proc, std::net::SocketAddr) {
    chmod(dir.path(), 0o755);
    let root = make_root(&dir.path().join("root"), &[("x.txt", b"x\n")]);
    let log = dir.path().join("access.log");
    let error_log = dir.path().join("error.log");
    let mut extra = vec![
        "header_timeout = 30".to_string(),
        format!("access_log = {:?}", log.to_str().unwrap()),
        format!("error_log = {:?}", error_log.to_str().unwrap()),
    ];
    if is_root() {
        extra.push("chroot = true".to_string());
    }
    let cfg = dir.path().join("forkhttpd.toml");
    fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &extra)).unwrap();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", r#"exec 7</ 9</ "$0" "$@""#, BIN, "--config"]).arg(&cfg).current_dir(dir.path());
    let mut proc = Proc::spawn(scrub_env(&mut cmd));
    let addr = proc.wait_listeners(0, 1)[0];
    (proc, addr)
}

/// Waits for the server's one child (serving a connection that sent the
/// first byte of a request, so it waits for the rest: a connection that
/// sends nothing is not even accepted, see `TCP_DEFER_ACCEPT`) and returns
/// its pid.
/// A connection whose child has answered one request and waits for the
/// next (keep-alive), so it has certainly finished its set-up (closing
/// descriptors, dropping privileges): looking at it any earlier could see
/// it between `fork` and that set-up. Returns the connection and the pid.
fn child_after_a_response(server: u32, addr: std::net::SocketAddr) -> (Conn, u32) {
    let mut conn = Conn::connect(addr);
    conn.send_request("GET", "/x.txt", &[]);
    assert_eq!(conn.read_response().status, 200);
    let child = serving_child(server);
    // The response is in before the child has closed the file it sent and
    // gone back to wait: look once it sleeps in that wait.
    assert!(
        poll_until(Duration::from_secs(5), || {
            let wchan = std::fs::read_to_string(format!("/proc/{child}/wchan")).unwrap_or_default();
            crate::common::proc_stat(child).is_some_and(|s| s.state == 'S') && wchan.contains("poll")
        }),
        "child {child} did not go back to waiting for the next request"
    );
    (conn, child)
}

fn serving_child(server: u32) -> u32 {
    let mut child = None;
    let found = poll_until(Duration::from_secs(5), || {
        child = crate::common::children_of(server).first().map(|p| p.pid);
        child.is_some()
    });
    assert!(found, "no child of {server} appeared for an open connection");
    child.unwrap()
}

#[test]
fn children_hold_only_the_descriptors_they_serve_with() {
    if crate::common::cannot_inspect_server() {
        return;
    }
    let dir = TempDir::new("hygiene_fds");
    let (proc, addr) = start_with_stray_fds(&dir);
    let parent = fd_targets(proc.pid());
    assert!(
        !parent.iter().any(|(_, t)| t == "/"),
        "the parent kept a descriptor of / it inherited from its launcher: {parent:?}"
    );

    let (conn, child) = child_after_a_response(proc.pid(), addr);
    let fds = fd_targets(child);
    assert!(!fds.is_empty(), "cannot read /proc/{child}/fd");
    assert!(
        !fds.iter().any(|(_, t)| t == "/"),
        "a serving child holds a descriptor of / (an escape from the chroot): {fds:?}"
    );
    // stdin and stdout (/dev/null), stderr (the test's pipe), the client's
    // socket, the lifeline's read end, the document root, the access log,
    // the error log (its own daemon messages go there), and the file it
    // served, kept open for the connection's next requests.
    let root = dir.path().join("root").canonicalize().unwrap();
    let log = dir.path().join("access.log");
    let error_log = dir.path().join("error.log");
    let mut kinds: Vec<String> = fds
        .iter()
        .map(|(_, t)| match t {
            t if t.starts_with("socket:") => "socket".to_string(),
            t if t.starts_with("pipe:") => "pipe".to_string(),
            t if *t == root.to_string_lossy() => "root".to_string(),
            t if *t == log.to_string_lossy() => "access log".to_string(),
            t if *t == error_log.to_string_lossy() => "error log".to_string(),
            t if *t == root.join("x.txt").to_string_lossy() => "served file".to_string(),
            t => t.clone(),
        })
        .collect();
    kinds.sort();
    let expected = [
        "/dev/null",
        "/dev/null",
        "access log",
        "error log",
        "pipe",
        "pipe",
        "root",
        "served file",
        "socket",
    ];
    assert_eq!(kinds, expected, "a serving child holds descriptors it does not serve with: {fds:?}");
    assert!(fds.iter().take(3).map(|f| f.0).eq(0..3), "stdin, stdout and stderr stay open: {fds:?}");
    drop(conn);
}

#[test]
fn children_cannot_gain_privileges() {
    if crate::common::cannot_inspect_server() {
        return;
    }
    let dir = TempDir::new("hygiene_privs");
    let (proc, addr) = start_with_stray_fds(&dir);
    let (conn, child) = child_after_a_response(proc.pid(), addr);
    assert_eq!(
        status_field(child, "NoNewPrivs").as_deref(),
        Some("1"),
        "a serving child must run with no_new_privs"
    );
    if !is_root() {
        crate::common::skip("the bounding-set check: not root, so nothing to drop");
        return;
    }
    assert_eq!(
        status_field(child, "CapBnd").as_deref(),
        Some("0000000000000000"),
        "a child of a root server must have an empty capability bounding set"
    );
    assert_eq!(status_field(child, "CapEff").as_deref(), Some("0000000000000000"));
    drop(conn);
}

/// A serving child runs under its seccomp filter (`Seccomp: 2`, filter
/// mode) with no_new_privs; with `sandbox = false` it runs without one,
/// which shows the filter is the sandbox's.
#[test]
fn children_serve_sandboxed() {
    if crate::common::cannot_inspect_server() {
        return;
    }
    let dir = TempDir::new("hygiene_sandbox");
    let (proc, addr) = start_with_stray_fds(&dir);
    let (conn, child) = child_after_a_response(proc.pid(), addr);
    assert_eq!(
        status_field(child, "Seccomp").as_deref(),
        Some("2"),
        "a serving child must run under seccomp"
    );
    assert_eq!(status_field(child, "NoNewPrivs").as_deref(), Some("1"));
    drop(conn);
    drop(proc);

    let off = crate::common::TestServer::builder().file("x.txt", b"x\n").config("sandbox = false").start();
    let (conn, child) = child_after_a_response(off.pid(), off.addr());
    assert_eq!(
        status_field(child, "Seccomp").as_deref(),
        Some("0"),
        "sandbox = false must leave seccomp off"
    );
    drop(conn);
}

/// A sandboxed child stopped and continued while it waits for the next
/// request (as `kill -STOP`/`-CONT` or a debugger does) resumes its wait
/// through `restart_syscall`, which its filter must allow: it then serves
/// the next request on the same connection instead of being killed.
#[test]
fn a_stopped_and_continued_child_keeps_serving() {
    if crate::common::cannot_inspect_server() {
        return;
    }
    let server = crate::common::TestServer::builder().file("x.txt", b"x\n").start();
    let (mut conn, child) = child_after_a_response(server.pid(), server.addr());
    let signal = |sig: &str| {
        let out = run(Command::new("kill").args([sig, &child.to_string()]), Duration::from_secs(5));
        assert!(out.success(), "kill {sig} {child}: {}", out.describe());
    };
    signal("-STOP");
    assert!(
        poll_until(Duration::from_secs(5), || crate::common::proc_stat(child)
            .is_some_and(|s| s.state == 'T')),
        "child {child} did not stop"
    );
    signal("-CONT");
    conn.send_request("GET", "/x.txt", &[]);
    assert_eq!(conn.read_response().status, 200, "the continued child must serve the next request");
}

/// Whether a process of uid and gid `id` (made by `setpriv`) can open
/// `/proc/PID/mem` of `pid` for reading and writing; the error otherwise.
fn open_mem_as(id: (u32, u32), pid: u32) -> Result<(), String> {
    let (uid, gid) = (id.0.to_string(), id.1.to_string());
    let mut cmd = Command::new("setpriv");
    scrub_env(&mut cmd)
        .args(["--reuid", &uid, "--regid", &gid, "--clear-groups", "--", "sh", "-c", r#"exec 3<>"$1""#, "sh"])
        .arg(format!("/proc/{pid}/mem"));
    let out = run(&mut cmd, Duration::from_secs(10));
    if out.success() { Ok(()) } else { Err(out.describe()) }
}

/// The shipped unit's case: the parent and every child run as one account.
/// Another process of that account (a child gone bad) must not be able to
/// open the parent's or a child's memory for writing through
/// `/proc/PID/mem`: both are non-dumpable. A dumpable process of the same
/// account, not a descendant of the opener, shows that the kernel would
/// otherwise allow it (Yama's `ptrace_scope` can forbid it for all).
#[test]
fn processes_of_the_same_account_cannot_open_their_memory() {
    if !is_root() {
        crate::common::skip("needs root to run the server and the opener as nobody");
        return;
    }
    if missing_tool("setpriv") {
        return;
    }
    let nobody = passwd_ids("nobody").expect("user nobody");
    let dir = TempDir::new("hygiene_mem");
    chmod(dir.path(), 0o755);
    let root = make_root(&dir.path().join("root"), &[("x.txt", b"x\n")]);
    let cfg = dir.path().join("forkhttpd.toml");
    fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &["keepalive_timeout = 30"])).unwrap();
    let (uid, gid) = (nobody.0.to_string(), nobody.1.to_string());
    let as_nobody = ["--reuid", &uid, "--regid", &gid, "--clear-groups", "--"];
    let mut cmd = Command::new("setpriv");
    scrub_env(&mut cmd).args(as_nobody).arg(BIN).arg("--config").arg(&cfg).current_dir(dir.path());
    let mut server = Proc::spawn(&mut cmd);
    let addr = server.wait_listeners(0, 1)[0];
    let (conn, child) = child_after_a_response(server.pid(), addr);

    let mut cmd = Command::new("setpriv");
    let control = Proc::spawn(scrub_env(&mut cmd).args(as_nobody).args(["sleep", "30"]));
    // Until it has exec'd `sleep`, the control is setpriv after its uid
    // change, which the kernel makes non-dumpable: opening it then would
    // fail for that reason, not for the kernel's.
    let comm = format!("/proc/{}/comm", control.pid());
    assert!(
        poll_until(Duration::from_secs(10), || fs::read_to_string(&comm).is_ok_and(|c| c == "sleep\n")),
        "the control never became sleep"
    );
    if let Err(e) = open_mem_as(nobody, control.pid()) {
        crate::common::skip(&format!(
            "this kernel forbids opening the memory of any process of the same uid: {e}"
        ));
        return;
    }
    for (what, pid) in [("parent", server.pid()), ("child", child)] {
        match open_mem_as(nobody, pid) {
            Ok(()) => {
                panic!("a process of the serving account opened the {what}'s /proc/{pid}/mem read-write")
            }
            Err(e) => assert!(e.contains("Permission denied"), "opening the {what}'s memory: {e}"),
        }
    }
    drop(conn);
}
