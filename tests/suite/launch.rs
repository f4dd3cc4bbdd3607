//! What the server takes over from whoever starts it: a `SIGHUP` during
//! start-up waits for the accept loop instead of killing the process, and a
//! launcher's blocked signal mask and ignored dispositions cannot make the
//! parent deaf or reach the children.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::common::{
    BIN, Conn, Proc, TempDir, children_of, chmod, config_text, get_close, have_tool, make_root, poll_until,
    scrub_env, send_signal,
};

/// A config file with a docroot holding `x.txt`, in `dir`.
fn write_config(dir: &TempDir) -> std::path::PathBuf {
    chmod(dir.path(), 0o755);
    let root = make_root(&dir.path().join("root"), &[("x.txt", b"x\n")]);
    let cfg = dir.path().join("forkhttpd.toml");
    let extra = ["shutdown_grace = 1", "header_timeout = 30"];
    fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &extra)).unwrap();
    cfg
}

/// A signal mask field of `/proc/PID/status` (`SigBlk`, `SigIgn`) as bits.
fn sig_bits(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// Started by a launcher that blocked `SIGCHLD`, `SIGTERM` and `SIGHUP` and
/// ignored `SIGCHLD`, `SIGTERM` and `SIGUSR2`: children are still reaped,
/// `SIGTERM` still stops the server, and children start with an empty mask
/// and only the dispositions the server chose.
#[test]
fn launcher_mask_and_ignored_signals_do_not_make_it_deaf() {
    if !have_tool("python3") {
        crate::common::skip("python3 is not installed");
        return;
    }
    let dir = TempDir::new("launch_mask");
    let cfg = write_config(&dir);
    let launcher = "import os, signal, sys\n\
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP})\n\
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGUSR2):\n    signal.signal(s, signal.SIG_IGN)\n\
        os.execv(sys.argv[1], sys.argv[1:])\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", launcher, BIN, "--config"]).arg(&cfg).current_dir(dir.path());
    let mut proc = Proc::spawn(scrub_env(&mut cmd));
    let addr = proc.wait_listeners(0, 1)[0];
    let pid = proc.pid();

    for _ in 0..3 {
        assert_eq!(get_close(addr, "/x.txt").status, 200);
    }
    // A kept-alive connection whose child has answered, so has set its
    // mask and dispositions: a child caught between fork and that still has
    // the parent's mask. And once it is the only child, the one judged is
    // this one, not one of the three above on its way out (a loaded run
    // caught both: a mask of the parent's, and a status already gone).
    let mut idle = Conn::connect(addr);
    idle.send_request("GET", "/x.txt", &[]);
    assert_eq!(idle.read_response().status, 200);
    let mut live = Vec::new();
    assert!(
        poll_until(Duration::from_secs(5), || {
            live = children_of(pid);
            live.len() == 1 && live[0].state != 'Z'
        }),
        "children of a server started with SIGCHLD blocked were not reaped: {live:?}"
    );
    let child = live[0].pid;
    assert_eq!(sig_bits(child, "SigBlk"), Some(0), "a child must start with an empty signal mask");
    let chosen =
        bit(libc::SIGPIPE) | bit(libc::SIGXFSZ) | bit(libc::SIGINT) | bit(libc::SIGHUP) | bit(libc::SIGUSR1);
    // The standard signals (1 to 31); 32 and 33 belong to the C library.
    assert_eq!(
        sig_bits(child, "SigIgn").map(|b| b & 0x7fff_ffff),
        Some(chosen),
        "a child ignores only SIGPIPE, SIGXFSZ, SIGINT, SIGHUP and SIGUSR1, nothing the launcher ignored"
    );
    drop(idle);

    send_signal(pid, "TERM");
    let status = proc.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM did not stop a server started with SIGTERM blocked and ignored: {status:?}; stderr:\n{}",
        proc.log.text()
    );
}

/// A `SIGHUP` that arrives while the server is still starting (here: while
/// it reads its config file, which strace holds up for a second) is handled
/// as a reload once the accept loop runs, instead of killing the process.
#[test]
fn sighup_during_start_up_is_a_reload_not_a_death() {
    if crate::common::cannot_inspect_server() {
        return;
    }
    if !have_tool("strace") {
        crate::common::skip("strace is not installed");
        return;
    }
    let dir = TempDir::new("launch_early_hup");
    let cfg = write_config(&dir);
    let trace = dir.path().join("trace.txt");
    let mut cmd = Command::new("strace");
    // The config's directory: the config is opened relative to it.
    cmd.args(["-qq", "-o"])
        .arg(&trace)
        .arg("-P")
        .arg(cfg.parent().unwrap())
        .args(["-e", "trace=openat,open", "-e", "inject=openat,open:delay_exit=1000000", BIN, "--config"])
        .arg(&cfg)
        .current_dir(dir.path());
    let mut proc = Proc::spawn(scrub_env(&mut cmd));
    let mut server = None;
    let opening = poll_until(Duration::from_secs(10), || {
        server = children_of(proc.pid()).first().map(|p| p.pid);
        server.is_some() && fs::read_to_string(&trace).is_ok_and(|t| t.contains("DELAYED"))
    });
    assert!(opening, "the server under strace never opened its config; stderr:\n{}", proc.log.text());
    let server = server.unwrap();
    // Held up in its first opening of the config: past main's first line,
    // before any handler exists.
    send_signal(server, "HUP");

    let reloaded = proc.log.wait_line(0, Duration::from_secs(15), |l| l.contains("configuration reloaded"));
    assert!(
        reloaded.is_some() && proc.is_running(),
        "a SIGHUP during start-up must become a reload (running: {}); stderr:\n{}",
        proc.is_running(),
        proc.log.text()
    );
    send_signal(server, "TERM");
    let status = proc.wait_exit(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "stopped with {status:?}; stderr:\n{}", proc.log.text());
}

/// A `SIGHUP` that arrives after `exec` but before `main` (here: while the
/// Rust runtime sets up its stack-overflow handler, whose first
/// `sigaltstack` call strace holds up) is handled as a reload once the
/// accept loop runs: the binary's constructor blocked it before the
/// runtime started. Without the constructor this start died of it.
#[test]
fn sighup_before_main_is_a_reload_not_a_death() {
    if !have_tool("strace") {
        crate::common::skip("strace is not installed");
        return;
    }
    let dir = TempDir::new("launch_hup_before_main");
    let cfg = write_config(&dir);
    let trace = dir.path().join("trace.txt");
    let mut cmd = Command::new("strace");
    cmd.args(["-qq", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=sigaltstack",
            "-e",
            "inject=sigaltstack:delay_exit=2000000:when=1",
            BIN,
            "--config",
        ])
        .arg(&cfg)
        .current_dir(dir.path());
    let mut proc = Proc::spawn(scrub_env(&mut cmd));
    let mut server = None;
    let held = poll_until(Duration::from_secs(10), || {
        server = children_of(proc.pid()).first().map(|p| p.pid);
        server.is_some() && fs::read_to_string(&trace).is_ok_and(|t| t.contains("DELAYED"))
    });
    assert!(
        held,
        "the server under strace never called sigaltstack before main; trace:\n{}\nstderr:\n{}",
        fs::read_to_string(&trace).unwrap_or_default(),
        proc.log.text()
    );
    let server = server.unwrap();
    // Held up in the runtime's set-up: before main's first line.
    send_signal(server, "HUP");

    let reloaded = proc.wait_line(Duration::from_secs(15), |l| l.contains("configuration reloaded"));
    assert!(
        matches!(reloaded, Ok(Some(_))) && proc.is_running(),
        "a SIGHUP before main must become a reload (got {reloaded:?}); trace:\n{}\nstderr:\n{}",
        fs::read_to_string(&trace).unwrap_or_default(),
        proc.log.text()
    );
    send_signal(server, "TERM");
    let status = proc.wait_exit(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "stopped with {status:?}; stderr:\n{}", proc.log.text());
}
