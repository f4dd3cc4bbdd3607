//! Endurance: storms of connections while a resource limit is low
//! (RLIMIT_NOFILE, RLIMIT_NPROC), and a mixed soak of good, malformed, slow
//! and resetting clients. After each the parent must be as it was before:
//! running, serving, no zombies, the same descriptors and (within a small
//! tolerance) the same resident memory.
//!
//! Tests that need root or an external tool (`prlimit`, `setpriv`) print
//! why and return when it is missing.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::ReadRetrying;
use crate::common::*;
use crate::parent::{open_fds, tasks_of_uid};

/// Resident memory the parent may gain over a storm or the soak (allocator
/// noise, a lazily touched page), far below what a per-connection leak adds.
const RSS_SLACK_KIB: u64 = 512;

fn prlimit(pid: u32, arg: &str, as_uid: Option<u32>) {
    let mut cmd = match as_uid {
        // Changing another user's limits takes CAP_SYS_RESOURCE, which root
        // may lack in a container; the target's own uid needs none.
        Some(uid) => {
            let u = uid.to_string();
            let mut c = Command::new("setpriv");
            c.args(["--reuid", &u, "--regid", &u, "--clear-groups", "--", "prlimit"]);
            c
        }
        None => Command::new("prlimit"),
    };
    let out = run_tool(cmd.arg("--pid").arg(pid.to_string()).arg(arg), Duration::from_secs(5));
    assert!(out.success(), "prlimit --pid {pid} {arg} failed: {}", out.describe());
}

/// The soft value of one line of /proc/PID/limits (e.g. "Max open files").
fn soft_limit(pid: u32, name: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).expect("read /proc/PID/limits");
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name:?} in limits"));
    line[name.len()..].split_whitespace().next().unwrap().to_string()
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status_line_ids(&s, "VmRSS:").and_then(|v| v.first().copied()).expect("no VmRSS") as u64
}

/// utime + stime of `pid`, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let st = proc_stat(pid).expect("read /proc/PID/stat");
    let ticks: u64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100);
    (st.utime + st.stime) as f64 / ticks as f64
}

/// What the parent looks like at rest: its descriptors and resident memory.
struct Baseline {
    fds: Vec<u32>,
    rss: u64,
}

/// How long the parent keeps a connection it answered `503` itself
/// (`REFUSED_LINGER`), with a margin: its descriptor is open until then.
const REFUSED_HELD: Duration = Duration::from_secs(3);

/// Waits until `pid` has no children at all (a zombie is a child too), then
/// reads its descriptors and memory.
fn at_rest(pid: u32, what: &str) -> Baseline {
    let kids = wait_children(pid, Duration::from_secs(20), |k| k.is_empty());
    assert!(kids.is_empty(), "{what}: children still there (zombies have state Z): {kids:?}");
    Baseline { fds: open_fds(pid), rss: rss_kib(pid) }
}

/// `at_rest`, once the connections the parent refused last are closed:
/// a storm's last refusals are held open for a second by design, a
/// descriptor still open after `REFUSED_HELD` is a leak.
fn at_rest_after_refusals(pid: u32, before: &Baseline, what: &str) -> Baseline {
    let mut after = at_rest(pid, what);
    let until = Instant::now() + REFUSED_HELD;
    while after.fds != before.fds && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        after = at_rest(pid, what);
    }
    after
}

fn assert_unchanged(before: &Baseline, after: &Baseline, what: &str) {
    assert_eq!(after.fds, before.fds, "{what}: the parent's descriptors changed");
    assert!(
        after.rss <= before.rss + RSS_SLACK_KIB,
        "{what}: the parent's RSS grew from {} KiB to {} KiB",
        before.rss,
        after.rss
    );
}

/// `GET path` with `Connection: close`: the whole reply, or what arrived
/// before an error or the timeout.
fn fetch(addr: SocketAddr, path: &str, timeout: Duration) -> Vec<u8> {
    let Ok(mut st) = TcpStream::connect_timeout(&addr, timeout) else { return Vec::new() };
    st.set_read_timeout(Some(timeout)).unwrap();
    st.set_write_timeout(Some(timeout)).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n");
    if st.write_all(req.as_bytes()).is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let _ = st.read_to_end(&mut out);
    out
}

fn status_of(reply: &[u8]) -> Option<u16> {
    let line = reply.strip_prefix(b"HTTP/1.1 ")?;
    std::str::from_utf8(line.get(..3)?).ok()?.parse().ok()
}

fn body_of(reply: &[u8]) -> Option<&[u8]> {
    Some(&reply[find(reply, b"\r\n\r\n")? + 4..])
}

/// A storm while a limit is low: `threads` threads, for `window`, each
/// opening batches of 8 concurrent connections that send a request, then
/// reading what comes back for a moment and dropping them. Returns the
/// status of every reply that arrived, and the parent's CPU seconds and the
/// wall-clock seconds of the window.
fn storm(addr: SocketAddr, pid: u32, window: Duration) -> (Vec<u16>, f64, f64) {
    const THREADS: usize = 4;
    const MAX_BATCHES: usize = 40;
    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            thread::spawn(move || {
                let mut statuses = Vec::new();
                for _ in 0..MAX_BATCHES {
                    if t0.elapsed() >= window {
                        break;
                    }
                    let mut batch = Vec::new();
                    for _ in 0..8 {
                        let Ok(mut st) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
                            continue;
                        };
                        let _ = st.write_all(b"GET /a.txt HTTP/1.1\r\nHost: storm\r\n\r\n");
                        batch.push(st);
                    }
                    for mut st in batch {
                        st.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                        let mut buf = [0u8; 512];
                        if let Ok(n) = st.read_retrying(&mut buf)
                            && let Some(s) = status_of(&buf[..n])
                        {
                            statuses.push(s);
                        }
                    }
                }
                statuses
            })
        })
        .collect();
    let statuses = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let wall = t0.elapsed().as_secs_f64();
    (statuses, cpu_secs(pid) - cpu0, wall)
}

/// Guards the parent under descriptor exhaustion as a storm: with
/// RLIMIT_NOFILE at its open count, hundreds of connections arrive over
/// three seconds. The parent backs off (well under a core of CPU), serves
/// once the limit is raised, and ends with no children, the same
/// descriptors and the same memory as before.
#[test]
fn nofile_storm_leaves_the_parent_unchanged() {
    if missing_tool("prlimit") || cannot_inspect_server() {
        return;
    }
    let mut s = TestServer::builder().config("max_children_per_ip = 0").start();
    s.write_file("a.txt", b"storm\n");
    let pid = s.pid();
    assert_eq!(s.get("/a.txt").status, 200);
    let before = at_rest(pid, "before the storm");

    let orig = soft_limit(pid, "Max open files");
    let lowest_free = (0..).find(|n| !before.fds.contains(n)).unwrap();
    prlimit(pid, &format!("--nofile={lowest_free}:"), None);
    let (statuses, cpu, wall) = storm(s.addr(), pid, Duration::from_secs(3));
    assert!(s.is_running(), "server died in the storm; stderr:\n{}", s.lines().join("\n"));
    eprintln!("nofile storm: parent CPU {cpu:.2} s in {wall:.2} s");
    assert!(statuses.is_empty(), "replies while no descriptor could be opened: {statuses:?}");
    assert!(cpu < 0.3 * wall, "the parent used {cpu:.2} s of CPU in a {wall:.2} s storm: not backing off");

    prlimit(pid, &format!("--nofile={orig}:"), None);
    let r = get_close(s.addr(), "/a.txt");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"storm\n".as_slice()),
        "not serving after the limit was raised"
    );
    let after = at_rest_after_refusals(pid, &before, "after the storm");
    assert_unchanged(&before, &after, "nofile storm");
    assert!(s.is_running());
}

/// Guards the parent under process exhaustion as a storm: with
/// RLIMIT_NPROC at its uid's task count every fork fails while batches of
/// connections keep arriving for three seconds. The parent answers 503
/// itself without spinning, serves once the limit is raised, and ends with
/// no children, the same descriptors and the same memory as before.
///
/// RLIMIT_NPROC does not bind root, so the server runs as an unused uid.
#[test]
fn nproc_storm_leaves_the_parent_unchanged() {
    if !is_root() {
        crate::common::skip("needs root to start the server as another uid (geteuid() != 0)");
        return;
    }
    if ["setpriv", "prlimit"].into_iter().any(missing_tool) {
        return;
    }
    // Not the uid of parent.rs's fork-failure test (40000 + pid % 20000).
    let base = 20000 + std::process::id() % 15000;
    let Some(uid) = (base..base + 200).find(|&u| tasks_of_uid(u) == 0) else {
        crate::common::skip("found no unused uid");
        return;
    };
    let dir = TempDir::new("soak-nproc-storm");
    chmod(dir.path(), 0o755);
    let root = make_root(&dir.path().join("root"), &[("a.txt", b"forked\n")]);
    let bin: PathBuf = dir.path().join("forkhttpd");
    fs::copy(BIN, &bin).unwrap();
    chmod(&bin, 0o755);
    let cfg = dir.path().join("forkhttpd.toml");
    fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &["max_children_per_ip = 0"])).unwrap();
    chmod(&cfg, 0o644);
    let u = uid.to_string();
    let mut p = Proc::spawn(
        scrub_env(&mut Command::new("setpriv"))
            .args(["--reuid", &u, "--regid", &u, "--clear-groups", "--"])
            .arg(&bin)
            .arg("--config")
            .arg(&cfg)
            .current_dir(dir.path()),
    );
    let addr = p.wait_listeners(0, 1)[0];
    let pid = p.pid();
    assert_eq!(get_close(addr, "/a.txt").status, 200);
    let before = at_rest(pid, "before the storm");

    let orig = soft_limit(pid, "Max processes");
    // The spawner forks the children, under its own limits (inherited
    // from the parent, as systemd's LimitNPROC= reaches both).
    let spawners = spawners_of(pid);
    assert_eq!(spawners.len(), 1, "the server's spawner: {spawners:?}");
    let limited = [pid, spawners[0]];
    let mut ok = false;
    for _ in 0..5 {
        let k = tasks_of_uid(uid);
        for p in limited {
            prlimit(p, &format!("--nproc={k}:"), Some(uid));
        }
        if tasks_of_uid(uid) <= k {
            ok = true;
            break;
        }
    }
    assert!(ok, "the task count of uid {uid} kept changing");

    let (statuses, cpu, wall) = storm(addr, pid, Duration::from_secs(3));
    assert!(p.exited().is_none(), "server died in the storm; stderr:\n{}", p.lines().join("\n"));
    eprintln!("nproc storm: {} 503s read, parent CPU {cpu:.2} s in {wall:.2} s", statuses.len());
    assert!(statuses.iter().all(|&s| s == 503), "replies other than 503 while forks fail: {statuses:?}");
    // Most 503s go to clients that gave up waiting during the parent's
    // pause after each failed fork; its log shows the forks did fail.
    let failed_forks = p.lines().iter().filter(|l| l.contains("fork for")).count();
    assert!(failed_forks > 0, "no 'fork for' line in a {wall:.2} s storm; stderr:\n{}", p.lines().join("\n"));
    assert!(cpu < 0.5 * wall, "the parent used {cpu:.2} s of CPU in a {wall:.2} s storm");

    for p in limited {
        prlimit(p, &format!("--nproc={orig}:"), Some(uid));
    }
    let served = poll_until(Duration::from_secs(5), || {
        let reply = fetch(addr, "/a.txt", Duration::from_secs(5));
        status_of(&reply) == Some(200) && body_of(&reply) == Some(b"forked\n".as_slice())
    });
    assert!(served, "not serving after the process limit was raised");
    let after = at_rest_after_refusals(pid, &before, "after the storm");
    assert_unchanged(&before, &after, "nproc storm");
    assert!(p.exited().is_none());
}

/// A body that is not all one byte, so a misplaced chunk shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed).collect()
}

/// Counts of what the soak's clients did.
#[derive(Default)]
struct Tally {
    /// Replies received on `/g*`, `/slow.txt` and malformed requests: each
    /// must have exactly one access-log line.
    answered: AtomicUsize,
    /// Requests for `/big.bin` answered, then reset mid-download: each must
    /// have exactly one access-log line too.
    resets: AtomicUsize,
    /// Requests for `/cut.bin` read below `min_send_rate`: each must be cut
    /// and logged with the body bytes the client then received, in all
    /// `cut_bytes`.
    cuts: AtomicUsize,
    cut_bytes: AtomicUsize,
}

/// The soak's `min_send_rate` and `min_send_rate_grace`: high enough that
/// a reader below the rate is cut within seconds, far below what the other
/// clients read at.
const SOAK_MIN_RATE: usize = 16 << 10;
const SOAK_GRACE: Duration = Duration::from_secs(3);

/// Reads the reply to `GET path` (with `Connection: close`) at `rate`
/// bytes/s for at most `slow`, then as fast as it comes until the server
/// closes. Returns everything received.
fn read_slowly(addr: SocketAddr, path: &str, rate: usize, slow: Duration) -> Vec<u8> {
    let mut c = Conn::connect(addr);
    c.send_request("GET", path, &["Connection: close"]);
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while start.elapsed() < slow {
        match c.stream.read_retrying(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("slow read of {path}: {e}"),
        }
        let due = start + Duration::from_secs_f64(got.len() as f64 / rate as f64);
        thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let (rest, closed) = c.read_until_close(Duration::from_secs(20));
    assert!(closed.is_some(), "{path}: not closed after the slow read");
    got.extend_from_slice(&rest);
    got
}

/// The slow reader's loop, while the other clients run: `/g3.bin` read at
/// four times `min_send_rate` must arrive whole and byte-exact; `/cut.bin`
/// read at an eighth of it must be cut (fewer bytes than the file) once
/// the grace is spent. Starts no round that could outlast `deadline`.
fn slow_reader(
    addr: SocketAddr,
    deadline: Instant,
    files: Arc<Vec<(String, Vec<u8>)>>,
    cut_len: usize,
    t: Arc<Tally>,
) {
    const ROUND: Duration = Duration::from_secs(8);
    let (path, body) = &files[3];
    for round in 0..20 {
        if Instant::now() + ROUND >= deadline {
            break;
        }
        if round % 2 == 0 {
            let reply = read_slowly(addr, path, 4 * SOAK_MIN_RATE, ROUND);
            assert_eq!(status_of(&reply), Some(200), "slow GET {path}");
            assert!(body_of(&reply) == Some(body.as_slice()), "slow GET {path}: body not byte-exact");
            t.answered.fetch_add(1, Ordering::SeqCst);
        } else {
            let reply = read_slowly(addr, "/cut.bin", SOAK_MIN_RATE / 8, SOAK_GRACE * 2);
            assert_eq!(status_of(&reply), Some(200), "too slow GET /cut.bin");
            let got = body_of(&reply).map_or(0, <[u8]>::len);
            assert!(got < cut_len, "a reader at 1/8 of min_send_rate got the whole of /cut.bin");
            t.cuts.fetch_add(1, Ordering::SeqCst);
            t.cut_bytes.fetch_add(got, Ordering::SeqCst);
        }
    }
}

/// One client's loop: good (close and keep-alive), malformed, slow and
/// resetting requests in turn, until `deadline` or `max` rounds.
fn soak_client(
    addr: SocketAddr,
    deadline: Instant,
    max: usize,
    files: Arc<Vec<(String, Vec<u8>)>>,
    t: Arc<Tally>,
) {
    let io = Duration::from_secs(10);
    for round in 0..max {
        if Instant::now() >= deadline {
            break;
        }
        let (path, body) = &files[round % files.len()];
        match round % 5 {
            0 => {
                let reply = fetch(addr, path, io);
                assert_eq!(status_of(&reply), Some(200), "GET {path}: {:?}", String::from_utf8_lossy(&reply));
                assert!(body_of(&reply) == Some(body.as_slice()), "GET {path}: body not byte-exact");
                t.answered.fetch_add(1, Ordering::SeqCst);
            }
            1 => {
                let mut c = Conn::connect(addr);
                for _ in 0..3 {
                    c.send_request("GET", path, &[]);
                    let r = c.read_response();
                    assert_eq!(r.status, 200, "keep-alive GET {path}");
                    assert!(r.body == *body, "keep-alive GET {path}: body not byte-exact");
                    t.answered.fetch_add(1, Ordering::SeqCst);
                }
            }
            2 => {
                let mut st = TcpStream::connect(addr).unwrap();
                st.set_read_timeout(Some(io)).unwrap();
                st.write_all(b"GET /bad path with spaces HTTP/1.1\r\nHost: soak\r\n\r\n").unwrap();
                let mut reply = Vec::new();
                let _ = st.read_to_end(&mut reply);
                assert_eq!(status_of(&reply), Some(400), "malformed: {:?}", String::from_utf8_lossy(&reply));
                t.answered.fetch_add(1, Ordering::SeqCst);
            }
            3 => {
                let mut st = TcpStream::connect(addr).unwrap();
                st.set_read_timeout(Some(io)).unwrap();
                st.set_nodelay(true).unwrap();
                for piece in
                    [&b"GET /slow.t"[..], b"xt HTTP/1.1\r\nHo", b"st: soak\r\nConnection: close\r\n", b"\r\n"]
                {
                    st.write_all(piece).unwrap();
                    thread::sleep(Duration::from_millis(100));
                }
                let mut reply = Vec::new();
                let _ = st.read_to_end(&mut reply);
                assert_eq!(status_of(&reply), Some(200), "slow: {:?}", String::from_utf8_lossy(&reply));
                assert!(body_of(&reply) == Some(b"slow but sure\n".as_slice()), "slow: body not byte-exact");
                t.answered.fetch_add(1, Ordering::SeqCst);
            }
            _ => {
                let mut c = Conn::connect(addr);
                c.send(b"GET /big.bin HTTP/1.1\r\nHost: soak\r\n\r\n");
                let mut buf = [0u8; 4096];
                // The reply started: the request reached the server, which
                // must log it however the reset cuts it.
                let n = c.stream.read_retrying(&mut buf).expect("the start of /big.bin before the reset");
                assert!(n > 0, "/big.bin: closed before any reply");
                // SO_LINGER 0: close() sends a reset instead of a FIN.
                nix::sys::socket::setsockopt(
                    &c.stream,
                    nix::sys::socket::sockopt::Linger,
                    &libc::linger { l_onoff: 1, l_linger: 0 },
                )
                .unwrap();
                drop(c);
                t.resets.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

fn access_lines(log: &Path) -> Vec<String> {
    fs::read_to_string(log).unwrap_or_default().lines().map(str::to_string).collect()
}

/// Guards the server over a long mixed run: four clients for 60 s, each
/// cycling through good requests (closed and keep-alive, byte-exact
/// bodies), malformed ones (400), slow ones and ones reset mid-download,
/// and a fifth reading large replies slowly, above `min_send_rate` (whole
/// and byte-exact) and below it (cut). At the end: no children, the
/// parent's descriptors and memory as at the start, and exactly one
/// access-log line per reply the clients received, per reset request, and
/// per cut one (with the bytes the client got).
#[test]
fn mixed_soak_sixty_seconds() {
    if cannot_inspect_server() {
        return;
    }
    const SOAK: Duration = Duration::from_secs(60);
    const THREADS: usize = 4;
    const MAX_ROUNDS: usize = 3000;
    let dir = TempDir::new("soak-mixed");
    chmod(dir.path(), 0o755);
    let files: Vec<(String, Vec<u8>)> = [1, 1500, 70_000, 300_000]
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("/g{i}.bin"), pattern(n, i as u8)))
        .collect();
    let mut entries: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (&p[1..], b.as_slice())).collect();
    let big = pattern(4 << 20, 0x5a);
    entries.push(("big.bin", &big));
    entries.push(("slow.txt", b"slow but sure\n"));
    let cut = pattern(8 << 20, 0xc7);
    entries.push(("cut.bin", &cut));
    let root = make_root(&dir.path().join("root"), &entries);
    let log = dir.path().join("access.log");
    let cfg = dir.path().join("forkhttpd.toml");
    let extra = [
        "max_children_per_ip = 0".to_string(),
        format!("access_log = {}", toml_str(log.to_str().unwrap())),
        format!("min_send_rate = {SOAK_MIN_RATE}"),
        format!("min_send_rate_grace = {}", SOAK_GRACE.as_secs()),
    ];
    fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &extra)).unwrap();
    let mut p = Proc::spawn(server_command().arg("--config").arg(&cfg).current_dir(dir.path()));
    let addr = p.wait_listeners(0, 1)[0];
    let pid = p.pid();
    // Warm up (first fork, first log write) before the baseline.
    let reply = fetch(addr, "/slow.txt", Duration::from_secs(10));
    assert_eq!(status_of(&reply), Some(200));
    let before = at_rest(pid, "before the soak");
    assert!(poll_until(Duration::from_secs(5), || access_lines(&log).len() == 1), "warm-up not logged");

    let files = Arc::new(files);
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + SOAK;
    let mut workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (files, tally) = (files.clone(), tally.clone());
            thread::spawn(move || soak_client(addr, deadline, MAX_ROUNDS, files, tally))
        })
        .collect();
    let (slow_files, slow_tally, cut_len) = (files.clone(), tally.clone(), cut.len());
    workers.push(thread::spawn(move || slow_reader(addr, deadline, slow_files, cut_len, slow_tally)));
    for w in workers {
        w.join().expect("a soak client failed");
    }
    assert!(p.exited().is_none(), "server died in the soak; stderr:\n{}", p.lines().join("\n"));

    let after = at_rest(pid, "after the soak");
    assert_unchanged(&before, &after, "mixed soak");
    let answered = tally.answered.load(Ordering::SeqCst);
    let resets = tally.resets.load(Ordering::SeqCst);
    let cuts = tally.cuts.load(Ordering::SeqCst);
    eprintln!(
        "mixed soak: {answered} replies, {resets} resets, {cuts} slow reads cut, RSS {} -> {} KiB, {} fds",
        before.rss,
        after.rss,
        after.fds.len()
    );
    assert!(answered > 100, "only {answered} replies in {SOAK:?}");
    // Children write their line before exiting, and all have exited.
    let lines = access_lines(&log);
    let (reset_lines, rest): (Vec<&String>, Vec<&String>) =
        lines[1..].iter().partition(|l| l.contains("\"GET /big.bin "));
    let (cut_lines, attributed): (Vec<&String>, Vec<&String>) =
        rest.into_iter().partition(|l| l.contains("\"GET /cut.bin "));
    assert!(resets > 0 && cuts > 0, "{resets} resets and {cuts} cut slow reads in {SOAK:?}");
    assert_eq!(reset_lines.len(), resets, "access-log lines for /big.bin vs requests reset mid-download");
    let logged_cut: usize = cut_lines
        .iter()
        .map(|l| {
            let c = parse_clf(l).unwrap_or_else(|| panic!("not a log line: {l}"));
            assert_eq!(c.status, 200, "{l}");
            c.bytes.parse::<usize>().unwrap_or_else(|_| panic!("no byte count: {l}"))
        })
        .sum();
    assert_eq!(
        (cut_lines.len(), logged_cut),
        (cuts, tally.cut_bytes.load(Ordering::SeqCst)),
        "access-log lines and bytes for /cut.bin vs slow reads cut and body bytes they received"
    );
    assert_eq!(
        attributed.len(),
        answered,
        "access-log lines (other than /big.bin) vs replies received; stderr:\n{}",
        p.lines().join("\n")
    );
    let r = get_close(addr, "/g1.bin");
    assert_eq!(r.status, 200);
    assert!(p.exited().is_none());
}
