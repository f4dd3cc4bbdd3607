//! The parent process: start-up with built-in defaults, listening-socket
//! options (name resolution, IPV6_V6ONLY, SO_REUSEADDR, backlog), descriptor
//! hygiene across fork, the `max_children` cap, resource exhaustion (EMFILE
//! on accept, EAGAIN on fork), and the `Server`/`Content-Type` headers.
//!
//! Tests that need root or an external tool (`ss`, `prlimit`, `setpriv`)
//! print why and return when it is missing.

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `prlimit --pid PID ARG`, asserting success.
fn prlimit(pid: u32, arg: &str) {
    prlimit_cmd(pid, arg, Command::new("prlimit"));
}

/// `prlimit --pid PID ARG` run as `uid`/`gid` `uid`: changing the limits of
/// another user's process takes CAP_SYS_RESOURCE, which root may lack (in
/// containers); a caller with the target's uids and gids needs none to move
/// a soft limit within the hard one.
fn prlimit_as(uid: u32, pid: u32, arg: &str) {
    let u = uid.to_string();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", &u, "--regid", &u, "--clear-groups", "--", "prlimit"]);
    prlimit_cmd(pid, arg, cmd);
}

fn prlimit_cmd(pid: u32, arg: &str, mut cmd: Command) {
    let out = run_tool(cmd.arg("--pid").arg(pid.to_string()).arg(arg), Duration::from_secs(5));
    assert!(out.success(), "prlimit --pid {pid} {arg} failed: {}", out.describe());
}

/// Soft and hard values of one line of /proc/PID/limits (e.g. "Max open files").
fn proc_limit(pid: u32, name: &str) -> (String, String) {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).expect("read /proc/PID/limits");
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name:?} in limits"));
    let mut f = line[name.len()..].split_whitespace();
    (f.next().unwrap().to_string(), f.next().unwrap().to_string())
}

/// The descriptor numbers open in `pid`.
pub(crate) fn open_fds(pid: u32) -> Vec<u32> {
    let rd = fs::read_dir(format!("/proc/{pid}/fd")).unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"));
    let mut v: Vec<u32> =
        rd.flatten().filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok())).collect();
    v.sort_unstable();
    v
}

/// The inodes of the sockets open in `pid` (`socket:[INODE]` links).
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let rd = fs::read_dir(format!("/proc/{pid}/fd")).unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"));
    rd.flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|t| {
            let t = t.to_str()?.to_string();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Real uid of `pid` (first field of `Uid:` in /proc/PID/status).
fn real_uid(pid: u32) -> Option<u32> {
    status_ids(pid, "Uid:")?.first().copied()
}

/// Number of tasks (threads included, as RLIMIT_NPROC counts them) whose
/// real uid is `uid`.
pub(crate) fn tasks_of_uid(uid: u32) -> usize {
    let mut n = 0;
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(s) = fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let field = |k: &str| status_line_ids(&s, k)?.first().copied();
        if field("Uid:") == Some(uid) {
            n += field("Threads:").unwrap_or(1) as usize;
        }
    }
    n
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let st = proc_stat(pid).expect("read /proc/PID/stat");
    st.utime + st.stime
}

fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// One row of /proc/net/tcp or /proc/net/tcp6.
#[derive(Debug, Clone)]
struct TcpRow {
    local: SocketAddr,
    remote: SocketAddr,
    state: u8,
    inode: u64,
}

/// Parse `0100007F:1F90` (v4) or a 32-hex-digit v6 address with port.
fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (a, p) = s.rsplit_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let ip = match a.len() {
        8 => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(a, 16).ok()?.to_le_bytes())),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                let w = u32::from_str_radix(&a[i * 8..i * 8 + 8], 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Every TCP socket of this network namespace (IPv4 and IPv6).
fn tcp_table() -> Vec<TcpRow> {
    let mut rows = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(file) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let (Some(local), Some(remote), Ok(state), Ok(inode)) = (
                parse_proc_addr(f[1]),
                parse_proc_addr(f[2]),
                u8::from_str_radix(f[3], 16),
                f[9].parse::<u64>(),
            ) else {
                continue;
            };
            rows.push(TcpRow { local, remote, state, inode });
        }
    }
    rows
}

const TCP_ESTABLISHED: u8 = 0x01;
const TCP_LISTEN: u8 = 0x0A;

/// Rows of `ss OPTS` (header dropped), split into columns.
fn ss_rows(opts: &str) -> Vec<Vec<String>> {
    let out = run_tool(Command::new("ss").arg(opts), Duration::from_secs(10));
    assert!(out.success(), "ss {opts} failed: {}", out.stderr);
    out.stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|c| c.len() >= 5)
        .collect()
}

fn count_matching(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

// ---------------------------------------------------------------------------
// 1. Built-in defaults
// ---------------------------------------------------------------------------

/// Guards the built-in defaults used when forkhttpd is started with no
/// arguments and no config file: listen on 127.0.0.1:8080, serve `www`
/// relative to the working directory (with `index.html` as the index), run
/// in the foreground, and write daemon messages and the access log to
/// stderr. Fails if any default differs (wrong port or root → connect
/// error / 404 / wrong body; messages or access log elsewhere → missing
/// lines).
#[test]
fn no_arguments_serves_www_on_127_0_0_1_8080() {
    let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    match TcpListener::bind(addr) {
        Ok(l) => drop(l),
        Err(e) => {
            crate::common::skip(&format!("127.0.0.1:8080 is not available ({e})"));
            return;
        }
    }
    let dir = TempDir::new("parent-default-run");
    fs::create_dir_all(dir.path().join("www")).unwrap();
    let marker = format!("default-run index {}\n", std::process::id());
    fs::write(dir.path().join("www/index.html"), &marker).unwrap();

    let mut p = Proc::spawn(server_command().current_dir(dir.path()));
    match p.wait_line(Duration::from_secs(10), |l| l.contains(" started: ")) {
        Ok(Some(_)) => {}
        Ok(None) => panic!("no start line within 10 s; stderr:\n{}", p.lines().join("\n")),
        Err(st) => {
            let text = p.lines().join("\n");
            if text.contains("in use") {
                crate::common::skip(&format!(
                    "127.0.0.1:8080 was taken by another process meanwhile:\n{text}"
                ));
                return;
            }
            panic!("forkhttpd with no arguments exited with {st}; stderr:\n{text}");
        }
    }
    let lines = p.lines();
    let listening: Vec<SocketAddr> = lines.iter().filter_map(|l| parse_listening_line(l)).collect();
    assert_eq!(listening, vec![addr], "default listen address; stderr:\n{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.contains("listening on 127.0.0.1:8080")),
        "stderr must say 'listening on 127.0.0.1:8080':\n{}",
        lines.join("\n")
    );

    let r = get_close(addr, "/");
    assert_eq!(r.status, 200, "GET / on the default server: {:?}", r.headers);
    assert_eq!(r.body_str(), marker, "GET / must serve ./www/index.html");
    let r = get_close(addr, "/index.html");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), marker);

    let access =
        |req: &'static str| move |l: &str| parse_clf(l).is_some_and(|c| c.request == req && c.status == 200);
    for req in ["GET / HTTP/1.1", "GET /index.html HTTP/1.1"] {
        let found = p.wait_line(Duration::from_secs(5), access(req));
        assert!(
            matches!(found, Ok(Some(_))),
            "no access-log line for {req:?} on stderr; stderr:\n{}",
            p.lines().join("\n")
        );
    }

    let st = p.stop(Duration::from_secs(5)).expect("server did not exit within 5 s of SIGTERM");
    assert!(st.success(), "exit status after SIGTERM: {st}; stderr:\n{}", p.lines().join("\n"));
}

// ---------------------------------------------------------------------------
// 2.-5. Listening sockets
// ---------------------------------------------------------------------------

/// Guards name resolution of listen addresses: `localhost:0` goes through
/// getaddrinfo and every address it yields is bound and served. Fails if
/// the server only accepts numeric addresses (startup error) or binds
/// something other than what `localhost` resolves to.
#[test]
fn listen_localhost_resolves_through_getaddrinfo() {
    let s = TestServer::builder().no_config_file().listen("localhost:0").start();
    s.write_file("hello.txt", b"hello localhost\n");
    let started = s.wait_for_lines(1, Duration::from_secs(5), |l| l.contains(" started: "));
    assert_eq!(started.len(), 1, "no start line; stderr:\n{}", s.lines().join("\n"));
    let addrs: Vec<SocketAddr> = s.lines().iter().filter_map(|l| parse_listening_line(l)).collect();

    let mut want: Vec<IpAddr> = ("localhost", 0).to_socket_addrs().unwrap().map(|a| a.ip()).collect();
    want.sort();
    want.dedup();
    let mut got: Vec<IpAddr> = addrs.iter().map(|a| a.ip()).collect();
    got.sort();
    assert_eq!(got, want, "listeners {addrs:?} vs getaddrinfo(localhost) {want:?}");
    for a in &addrs {
        assert!(a.ip().is_loopback(), "{a} is not loopback");
        assert_ne!(a.port(), 0, "logged a port-0 address");
        let r = get_close(*a, "/hello.txt");
        assert_eq!(r.status, 200, "GET via {a}");
        assert_eq!(r.body, b"hello localhost\n");
    }
}

/// Guards `IPV6_V6ONLY` being set explicitly on IPv6 listeners: with the
/// Linux default (net.ipv6.bindv6only = 0) a `[::]:P` socket without it
/// also owns IPv4 port P, and binding `0.0.0.0:P` fails with EADDRINUSE.
#[test]
fn ipv6_listener_is_v6only() {
    if TcpListener::bind("[::1]:0").is_err() {
        crate::common::skip("IPv6 loopback unavailable");
        return;
    }
    // Control: does a socket left at the system default take IPv4 too?
    // (std does not set IPV6_V6ONLY.) If not, this system cannot tell.
    let discriminates = {
        let l = TcpListener::bind("[::]:0").unwrap();
        let q = l.local_addr().unwrap().port();
        TcpListener::bind(("0.0.0.0", q)).is_err()
    };
    if !discriminates {
        eprintln!(
            "note: IPv6 sockets are v6-only by default here (bindv6only=1); the check below cannot fail"
        );
    }

    let s = TestServer::builder().listen("[::]:0").start();
    s.write_file("v6.txt", b"over v6\n");
    let a = s.addr();
    assert!(a.is_ipv6() && a.ip().is_unspecified(), "listener {a}");
    let p = a.port();
    let v4 = TcpListener::bind(("0.0.0.0", p));
    assert!(
        v4.is_ok(),
        "binding 0.0.0.0:{p} failed ({:?}): the [::]:{p} listener also took IPv4 (IPV6_V6ONLY not set)",
        v4.err()
    );
    drop(v4);

    let r = get_close(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), p), "/v6.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"over v6\n");
}

/// Guards `SO_REUSEADDR` on listeners: after a connection the server closed
/// first (its side is in TIME_WAIT on port P), a restarted server must be
/// able to bind port P at once. Without SO_REUSEADDR that bind fails with
/// EADDRINUSE for as long as TIME_WAIT lasts (60 s on Linux).
#[test]
fn restart_binds_despite_time_wait() {
    if missing_tool("ss") {
        return;
    }
    let mut s = TestServer::start();
    s.write_file("a.txt", b"first\n");
    let addr = s.addr();
    let p = addr.port();
    let mut c = s.connect();
    c.send_request("GET", "/a.txt", &["Connection: close"]);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.connection_has("close"));
    c.expect_closed(); // the server closed first ...
    drop(c); // ... and our FIN moves its side from FIN_WAIT2 to TIME_WAIT.
    assert!(s.terminate(Duration::from_secs(5)).is_some(), "server did not stop on SIGTERM");

    let time_wait = |rows: &[Vec<String>]| {
        rows.iter().any(|c| c[0] == "TIME-WAIT" && c[3].parse::<SocketAddr>().is_ok_and(|l| l == addr))
    };
    let mut rows = Vec::new();
    let seen = poll_until(Duration::from_secs(3), || {
        rows = ss_rows("-tan");
        time_wait(&rows)
    });
    assert!(
        seen,
        "no TIME-WAIT socket with local address {addr} after the server closed a connection first; \
         the restart below would not exercise SO_REUSEADDR. ss -tan rows for port {p}: {:?}",
        rows.iter().filter(|c| c[3].ends_with(&format!(":{p}"))).collect::<Vec<_>>()
    );

    let s2 = TestServer::builder().listen(&format!("127.0.0.1:{p}")).start();
    assert_eq!(s2.addr(), addr);
    s2.write_file("a.txt", b"second\n");
    let r = s2.get("/a.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"second\n");
}

fn listen_backlog(addr: SocketAddr) -> Option<u32> {
    ss_rows("-ltn")
        .into_iter()
        .find(|c| c[0] == "LISTEN" && c[3].parse::<SocketAddr>().is_ok_and(|l| l == addr))
        .and_then(|c| c[2].parse().ok())
}

/// Guards the listen(2) backlog: 1024 by default and the `backlog` key
/// applied. `ss -ltn` shows a listener's backlog in Send-Q. (std's own
/// default is 128, so a server ignoring the key would show neither.)
#[test]
fn backlog_default_and_configured() {
    if missing_tool("ss") {
        return;
    }
    let somaxconn: u32 = fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX);
    if somaxconn < 1024 {
        eprintln!("note: net.core.somaxconn = {somaxconn} caps the default backlog");
    }
    let s = TestServer::start();
    assert_eq!(listen_backlog(s.addr()), Some(1024.min(somaxconn)), "default backlog of {}", s.addr());
    let s77 = TestServer::builder().config("backlog = 77").start();
    assert_eq!(listen_backlog(s77.addr()), Some(77.min(somaxconn)), "backlog = 77 on {}", s77.addr());
    // Above the C library's SOMAXCONN (4096 in glibc, 128 in musl) the
    // kernel caps the value at net.core.somaxconn; it is no start-up error.
    let big = TestServer::builder().config("backlog = 70000").start();
    assert_eq!(listen_backlog(big.addr()), Some(70000.min(somaxconn)), "backlog = 70000 on {}", big.addr());
}

// ---------------------------------------------------------------------------
// 6. Descriptors across fork
// ---------------------------------------------------------------------------

/// Guards descriptor hygiene across fork: the child closes every listening
/// socket (else a child would keep the port open, and could accept), and
/// the parent closes its copy of the client socket (else connections
/// outlive their child and the parent leaks a descriptor per connection).
#[test]
fn child_holds_no_listener_and_parent_no_client_socket() {
    if cannot_inspect_server() {
        return;
    }
    let s = TestServer::start();
    s.write_file("a.txt", b"fd check\n");
    let (c, _) = get_keepalive(s.addr(), "/a.txt");
    let client = c.stream.local_addr().unwrap();

    let mut kids = Vec::new();
    assert!(
        poll_until(Duration::from_secs(5), || {
            kids = s.children().into_iter().filter(|k| k.state != 'Z').collect();
            kids.len() == 1
        }),
        "expected exactly one live child for the open connection, got {kids:?}"
    );
    let child = kids[0].pid;
    let child_socks = socket_inodes(child);
    let parent_socks = socket_inodes(s.pid());
    let table = tcp_table();

    let all_listeners: HashSet<u64> =
        table.iter().filter(|r| r.state == TCP_LISTEN && r.inode != 0).map(|r| r.inode).collect();
    let ours: HashSet<u64> =
        table.iter().filter(|r| r.state == TCP_LISTEN && r.local == s.addr()).map(|r| r.inode).collect();
    assert_eq!(ours.len(), 1, "listening sockets on {} in /proc/net/tcp: {ours:?}", s.addr());
    let conn: Vec<&TcpRow> = table
        .iter()
        .filter(|r| r.state == TCP_ESTABLISHED && r.local == s.addr() && r.remote == client)
        .collect();
    assert_eq!(conn.len(), 1, "server side of {client} -> {} in /proc/net/tcp: {conn:?}", s.addr());
    let conn_inode = conn[0].inode;

    let leaked: Vec<&u64> = child_socks.intersection(&all_listeners).collect();
    assert!(leaked.is_empty(), "child {child} holds listening socket(s) {leaked:?}");
    // Positive control: the inode matching works (the child holds the connection).
    assert!(
        child_socks.contains(&conn_inode),
        "child {child} does not hold the connection socket {conn_inode}; its sockets: {child_socks:?}"
    );
    let parent_listeners: HashSet<u64> = parent_socks.intersection(&all_listeners).copied().collect();
    assert_eq!(parent_listeners, ours, "the parent must hold exactly its own listener(s)");
    assert!(
        !parent_socks.contains(&conn_inode),
        "the parent still holds the client socket (inode {conn_inode}) after forking"
    );
}

// ---------------------------------------------------------------------------
// 7. max_children
// ---------------------------------------------------------------------------

/// Guards the `max_children` cap: at the cap the parent stops accepting
/// (new connections wait in the backlog, unanswered), logs that once (not
/// per connection), never runs more children than the cap, and resumes
/// (oldest waiting connection first) as soon as a child exits.
#[test]
fn max_children_cap_holds_connections_in_backlog() {
    // (Named so that the temp dir in the start line does not say max_children.)
    // Idle connections are not given back here: they hold the cap.
    let s = TestServer::builder()
        .name("parent-cap")
        .config("max_children = 2")
        .config("keepalive_give_back_from_percent = 0")
        .start();
    s.write_file("a.txt", b"capped\n");
    let live = |s: &TestServer| s.children().len();

    let (c1, _) = get_keepalive(s.addr(), "/a.txt");
    let (c2, _) = get_keepalive(s.addr(), "/a.txt");
    assert!(poll_until(Duration::from_secs(3), || live(&s) == 2), "children: {:?}", s.children());

    let send = |c: &mut Conn| c.send_request("GET", "/a.txt", &[]);
    let mut c3 = s.connect();
    send(&mut c3);
    // No response while at the cap: the connection waits in the backlog.
    c3.expect_open_and_quiet(Duration::from_millis(1000));
    let cap = |l: &str| l.contains("max_children");
    let capped = s.wait_for_lines(1, Duration::from_secs(2), cap);
    assert_eq!(capped.len(), 1, "expected one max_children line; stderr:\n{}", s.lines().join("\n"));

    let mut c4 = s.connect();
    send(&mut c4);
    let mut c5 = s.connect();
    send(&mut c5);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        count_matching(&s.lines(), "max_children"),
        1,
        "the cap must be logged once, not per connection; stderr:\n{}",
        s.lines().join("\n")
    );
    assert_eq!(live(&s), 2, "children at the cap: {:?}", s.children());
    c4.expect_open_and_quiet(Duration::from_millis(100));
    c5.expect_open_and_quiet(Duration::from_millis(100));

    // A child exits → the first waiting connection is accepted and answered.
    drop(c1);
    let t0 = Instant::now();
    c3.stream.set_read_timeout(Some(Duration::from_millis(2500))).unwrap();
    let r3 = match c3.try_read_response(false) {
        Ok(Some(r)) => r,
        other => panic!(
            "the waiting connection was not answered within {:?} after a child exited: {:?}; stderr:\n{}",
            t0.elapsed(),
            other.map(|o| o.map(|r| r.status)),
            s.lines().join("\n")
        ),
    };
    assert_eq!(r3.status, 200);
    assert_eq!(r3.body, b"capped\n");
    assert!(t0.elapsed() <= Duration::from_secs(3), "answered only after {:?}", t0.elapsed());

    // Back at the cap (c2's and c3's children): c4 and c5 still wait.
    thread::sleep(Duration::from_millis(300));
    let kids = s.children();
    assert_eq!(kids.len(), 2, "children after the first exit: {kids:?}");
    c4.expect_open_and_quiet(Duration::from_millis(300));
    c5.expect_open_and_quiet(Duration::from_millis(100));
    assert_eq!(count_matching(&s.lines(), "max_children"), 1, "stderr:\n{}", s.lines().join("\n"));
    drop((c2, c3, c4, c5));
}

// ---------------------------------------------------------------------------
// 8.-9. Resource exhaustion
// ---------------------------------------------------------------------------

/// Guards the EMFILE back-off: when accept fails for lack of descriptors
/// the parent logs it, pauses instead of spinning (poll would report the
/// listener readable again at once: a busy loop burning a whole CPU and
/// flooding the log), stays alive, and recovers once descriptors are
/// available again.
///
/// The soft RLIMIT_NOFILE is set to the lowest descriptor number not in
/// use: no new descriptor can be opened, so every accept fails. (A limit of
/// "open count + 2" would not do: the parent closes its copy of each client
/// socket right after fork, so it never holds more than one extra.)
#[test]
fn accept_emfile_backs_off_and_recovers() {
    if missing_tool("prlimit") || cannot_inspect_server() {
        return;
    }
    let mut s = TestServer::start();
    s.write_file("a.txt", b"fds\n");
    let pid = s.pid();
    assert_eq!(s.get("/a.txt").status, 200);
    assert!(poll_until(Duration::from_secs(5), || s.children().is_empty()), "child did not exit");

    let (orig_soft, _) = proc_limit(pid, "Max open files");
    let fds = open_fds(pid);
    let lowest_free = (0..).find(|n| !fds.contains(n)).unwrap();
    prlimit(pid, &format!("--nofile={lowest_free}:"));
    assert_eq!(proc_limit(pid, "Max open files").0, lowest_free.to_string());
    assert_eq!(open_fds(pid), fds, "the idle parent's descriptors changed");

    let mut conns = Vec::new();
    for _ in 0..6 {
        let mut c = s.connect();
        c.send_request("GET", "/a.txt", &[]);
        conns.push(c);
    }
    // glibc says "Too many open files", musl "No file descriptors available".
    let emfile = |l: &str| l.contains("accept:") && l.contains("(os error 24)");
    let hit = s.wait_for_lines(1, Duration::from_secs(3), emfile);
    assert!(!hit.is_empty(), "no 'accept: Too many open files' line; stderr:\n{}", s.lines().join("\n"));

    let ticks = clock_ticks_per_sec();
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs(2));
    let cpu = (cpu_ticks(pid) - cpu0) as f64 / ticks as f64;
    let wall = t0.elapsed().as_secs_f64();
    assert!(s.is_running(), "server died after EMFILE; stderr:\n{}", s.lines().join("\n"));
    assert!(
        cpu < 0.5,
        "the parent used {cpu:.2} s of CPU in {wall:.2} s with connections pending and accept failing: \
         a busy loop instead of a back-off"
    );
    let n = count_matching(&s.lines(), "accept:");
    let bound = 5 + 2 * t0.elapsed().as_secs() as usize;
    assert!(n <= bound, "{n} accept error lines: not paused between attempts (expected at most ~1/s)");
    for c in &mut conns {
        c.expect_open_and_quiet(Duration::from_millis(10));
    }

    drop(conns);
    prlimit(pid, &format!("--nofile={orig_soft}:"));
    let r = s.get("/a.txt");
    assert_eq!(r.status, 200, "not serving again after the limit was raised");
    assert_eq!(r.body, b"fds\n");
    assert!(s.is_running());
}

/// Guards the parent's answer to a failed fork: it writes `503` with
/// `Retry-After` and `Connection: close` itself, logs `fork for`, keeps
/// running and serves again once forking works (after a short pause).
///
/// RLIMIT_NPROC only applies to unprivileged processes, so the server runs
/// under a uid of its own (not 65534: other tests' servers run their
/// children as nobody, and those exiting would lower the count between
/// setting the limit and the request). Its soft RLIMIT_NPROC is set to the
/// number of tasks of that uid, so the next fork fails with EAGAIN.
#[test]
fn fork_failure_answers_503_and_recovers() {
    if !is_root() {
        crate::common::skip("needs root to start the server as another uid (geteuid() != 0)");
        return;
    }
    if ["setpriv", "prlimit"].into_iter().any(missing_tool) {
        return;
    }
    // A uid no process uses.
    let base = 40000 + std::process::id() % 20000;
    let Some(uid) = (base..base + 200).find(|&u| tasks_of_uid(u) == 0) else {
        crate::common::skip("found no unused uid");
        return;
    };

    let dir = TempDir::new("parent-fork-failure");
    chmod(dir.path(), 0o755);
    let root = make_root(&dir.path().join("root"), &[("index.html", b"forked fine\n")]);
    let bin: PathBuf = dir.path().join("forkhttpd");
    fs::copy(BIN, &bin).unwrap();
    chmod(&bin, 0o755);
    let cfg = dir.path().join("forkhttpd.toml");
    fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &[] as &[&str])).unwrap();
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
    let addr = match p.wait_line(Duration::from_secs(10), |l| parse_listening_line(l).is_some()) {
        Ok(Some(l)) => parse_listening_line(&l).unwrap(),
        other => panic!("server under uid {uid} did not start: {other:?}; stderr:\n{}", p.lines().join("\n")),
    };
    let pid = p.pid();
    assert_eq!(real_uid(pid), Some(uid), "server pid {pid} is not running as uid {uid}");

    // Forking works before the limit.
    assert_eq!(get_close(addr, "/index.html").status, 200);
    assert!(poll_until(Duration::from_secs(5), || children_of(pid).is_empty()), "child did not exit");

    let (orig_soft, _) = proc_limit(pid, "Max processes");
    // The spawner forks the children, under its own limits (inherited
    // from the parent, as systemd's LimitNPROC= reaches both).
    let spawners = spawners_of(pid);
    assert_eq!(spawners.len(), 1, "the server's spawner: {spawners:?}");
    let limited = [pid, spawners[0]];
    // Limit = the tasks the uid has now: the next fork fails with EAGAIN.
    // Recount after setting in case the count changed meanwhile.
    // (The prlimit helper runs as `uid` too, but has exited and been reaped
    // before the recount.)
    let mut ok = false;
    for _ in 0..5 {
        let k = tasks_of_uid(uid);
        for p in limited {
            prlimit_as(uid, p, &format!("--nproc={k}:"));
        }
        if tasks_of_uid(uid) <= k {
            ok = true;
            break;
        }
    }
    assert!(ok, "the task count of uid {uid} kept changing");

    let mut c = Conn::connect(addr);
    c.send_request("GET", "/index.html", &[]);
    let r = c.read_response();
    assert_error_page(&r, 503);
    assert_eq!(r.header("retry-after"), Some("1"), "503 headers {:?}", r.headers);
    assert!(r.connection_has("close"), "503 must carry Connection: close; headers {:?}", r.headers);
    c.expect_closed();
    let logged = p.wait_line(Duration::from_secs(3), |l| l.contains("fork for"));
    assert!(
        matches!(logged, Ok(Some(_))),
        "no 'fork for' line after a failed fork; stderr:\n{}",
        p.lines().join("\n")
    );
    // The parent's own 503 is in the access log (stderr here), with no
    // request line: it never reads the request.
    let logged =
        p.wait_line(Duration::from_secs(3), |l| l.starts_with("127.0.0.1 - - [") && l.contains("\"\" 503 "));
    assert!(
        matches!(logged, Ok(Some(_))),
        "no access-log line for the parent's 503; stderr:\n{}",
        p.lines().join("\n")
    );
    assert!(p.exited().is_none(), "server died after the failed fork; stderr:\n{}", p.lines().join("\n"));

    for p in limited {
        prlimit_as(uid, p, &format!("--nproc={orig_soft}:"));
    }
    thread::sleep(Duration::from_millis(300));
    let r = get_close(addr, "/index.html");
    assert_eq!(r.status, 200, "not serving after the process limit was raised");
    assert_eq!(r.body, b"forked fine\n");
    assert!(p.exited().is_none());
}

// ---------------------------------------------------------------------------
// 10.-11. Headers
// ---------------------------------------------------------------------------

/// Guards the `server_version` key: by default exactly `Server: forkhttpd`
/// (no version disclosed), with `server_version = true` the version.
#[test]
fn server_header_and_server_version() {
    let s = TestServer::start();
    s.write_file("a.txt", b"x");
    let r = s.get("/a.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header_count("server"), 1, "headers {:?}", r.headers);
    assert_eq!(r.header("server"), Some("forkhttpd"));
    let r = s.get("/missing");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("server"), Some("forkhttpd"), "error pages too");

    let v = TestServer::builder().config("server_version = true").start();
    v.write_file("a.txt", b"x");
    let want = format!("forkhttpd/{}", env!("CARGO_PKG_VERSION"));
    let r = v.get("/a.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header_count("server"), 1, "headers {:?}", r.headers);
    assert_eq!(r.header("server"), Some(want.as_str()));
    let r = v.get("/missing");
    assert_eq!(r.header("server"), Some(want.as_str()), "error pages too");
}

/// Guards the extension → Content-Type table for every type the server
/// must know, the fallback for unknown extensions, and `charset=utf-8` on
/// every text/* type.
#[test]
fn content_types_by_extension() {
    const TEXT: &str = "; charset=utf-8";
    let cases: &[(&str, &str)] = &[
        ("page.html", "text/html; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("mod.mjs", "text/javascript; charset=utf-8"),
        ("data.json", "application/json"),
        ("feed.xml", "text/xml; charset=utf-8"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("logo.svg", "image/svg+xml"),
        ("pic.png", "image/png"),
        ("photo.jpeg", "image/jpeg"),
        ("photo.jpg", "image/jpeg"),
        ("anim.gif", "image/gif"),
        ("pic.webp", "image/webp"),
        ("pic.avif", "image/avif"),
        ("favicon.ico", "image/vnd.microsoft.icon"),
        ("font.woff", "font/woff"),
        ("font.woff2", "font/woff2"),
        ("font.ttf", "font/ttf"),
        ("doc.pdf", "application/pdf"),
        ("mod.wasm", "application/wasm"),
        ("clip.mp4", "video/mp4"),
        ("clip.webm", "video/webm"),
        ("song.mp3", "audio/mpeg"),
        ("bundle.zip", "application/zip"),
        ("archive.gz", "application/gzip"),
        ("blob.unknownext", "application/octet-stream"),
        ("noextension", "application/octet-stream"),
    ];
    let s = TestServer::start();
    for (i, (name, _)) in cases.iter().enumerate() {
        s.write_file(name, format!("file {i}\n").as_bytes());
    }
    let mut failures = Vec::new();
    for chunk in cases.chunks(7) {
        let mut c = s.connect();
        for (name, want) in chunk {
            c.send_request("GET", &format!("/{name}"), &[]);
            let r = c.read_response();
            assert_eq!(r.status, 200, "GET /{name}");
            let got = r.header("content-type").unwrap_or("<none>").to_string();
            if got != *want {
                failures.push(format!("{name}: got {got:?}, want {want:?}"));
            }
            if got.starts_with("text/") && !got.ends_with(TEXT) {
                failures.push(format!("{name}: text type {got:?} without charset=utf-8"));
            }
        }
    }
    assert!(failures.is_empty(), "Content-Type mismatches:\n{}", failures.join("\n"));
}
