//! The key processes: handshakes signed by them (ECDSA and RSA keys, TLS
//! 1.3 and 1.2); one per CPU by default, and with two each signs its
//! share; a serving child's memory holds no private-key bytes while each
//! key process's does; each runs sandboxed; a key process killed is
//! started again, alone (the other signs meanwhile), a stopped one fails
//! handshakes without hanging them; a reload hands over new keys to each
//! while a child of the old generation still signs with the old one, and
//! changes how many there are.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rcgen::KeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConnection, StreamOwned};

use crate::common::*;
use crate::tls::{VALID, der_of, https_server};

/// The pid of the key process `s` logged starting, the `nth` time (0:
/// the first).
fn key_process(s: &TestServer, nth: usize) -> u32 {
    let lines = s.wait_for_lines(nth + 1, Duration::from_secs(10), |l| {
        l.contains("key process ") && l.ends_with(" started")
    });
    let line =
        lines.get(nth).unwrap_or_else(|| panic!("no key process start #{nth}; stderr:\n{}", s.stderr()));
    let pid: u32 =
        line.split("key process ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    // Logged as it is forked: wait until it has its keys (the server
    // says it started after that) and has set itself up (the filter is
    // its last step).
    s.wait_for_lines(1, Duration::from_secs(10), |l| l.contains(" started: pid "));
    let status = || fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    poll_until(Duration::from_secs(5), || status().contains("Seccomp:\t2"));
    pid
}

/// The pids of the first `n` key processes `s` started, in order, each
/// set up as `key_process` waits for.
fn key_processes(s: &TestServer, n: usize) -> Vec<u32> {
    (0..n).map(|nth| key_process(s, nth)).collect()
}

/// How many key processes the default (`tls_key_processes = 0`) starts
/// on this machine: one per CPU this test may run on, as the server's
/// own count.
fn per_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// How often `pid` has gone to sleep waiting (`voluntary_ctxt_switches`
/// in `/proc/PID/status`, readable though it is not dumpable): a key
/// process sleeps in `poll` until a record comes, so this counts the
/// records it was woken for, and stands still while it has no work.
fn wake_ups(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:")).unwrap();
    line.trim().parse().unwrap()
}

/// `wake_ups` of each of `pids` once they have all stood still for a
/// while: idle, past the records of their start (the keys, the commit).
fn settled(pids: &[u32]) -> Vec<u64> {
    let sample = || pids.iter().map(|&p| wake_ups(p)).collect::<Vec<_>>();
    for _ in 0..25 {
        let first = sample();
        std::thread::sleep(Duration::from_millis(200));
        if sample() == first {
            return first;
        }
    }
    panic!("key processes {pids:?} never sleep: {:?}", sample());
}

/// `n` full handshakes, one after another, each with a request: each
/// must succeed.
fn handshakes(s: &TestServer, ca: &TestCa, n: usize) {
    for i in 0..n {
        let got = bounded_handshake(s, ca, Duration::from_secs(5));
        assert!(got.is_ok(), "handshake {i}: {got:?}; stderr:\n{}", s.stderr());
    }
}

/// A 2048-bit RSA key, made by openssl (rcgen's ring backend cannot make
/// one).
fn rsa_key(dir: &std::path::Path) -> KeyPair {
    let path = dir.join("rsa.pem");
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&path)
        .output()
        .expect("openssl genpkey");
    assert!(made.status.success(), "openssl genpkey: {}", String::from_utf8_lossy(&made.stderr));
    KeyPair::from_pem(&fs::read_to_string(&path).unwrap()).unwrap()
}

/// A full handshake and one request with only `version`, checking the
/// certificate served.
fn fetch(s: &TestServer, ca: &TestCa, version: &'static rustls::SupportedProtocolVersion, leaf: &[u8]) {
    let config = ca.client_config_with(&[version], session_store());
    let mut c = TlsConn::connect(s.addr(), "default.test", config)
        .unwrap_or_else(|e| panic!("{version:?} handshake: {e}; stderr:\n{}", s.stderr()));
    assert_eq!(c.peer_leaf(), leaf, "{version:?}: the configured certificate");
    c.send_request("GET", "/", "default.test", &["Connection: close"]);
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "signed\n"), "{version:?}");
}

#[test]
fn ecdsa_and_rsa_keys_sign_through_the_key_process_in_tls13_and_tls12() {
    let certs = TempDir::new("keyproc");
    let ca = TestCa::new();
    let ecdsa = ca.issue(certs.path(), "ecdsa", &["default.test"], VALID);
    let rsa = ca.issue_for(rsa_key(certs.path()), certs.path(), "rsa", &["default.test"], VALID);
    for cert in [&ecdsa, &rsa] {
        let s = https_server(cert, &[], &[("index.html", b"signed\n")]);
        let pid = key_process(&s, 0);
        assert_eq!(fs::read_to_string(format!("/proc/{pid}/comm")).unwrap().trim(), "forkhttpd-keys");
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            fetch(&s, &ca, version, &der_of(cert));
        }
    }
}

#[test]
fn the_key_process_is_sandboxed_and_not_dumpable() {
    let certs = TempDir::new("keyproc");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let s = https_server(&cert, &[], &[]);
    for pid in key_processes(&s, per_cpu()) {
        sandboxed_child_of_the_parent(&s, pid);
    }
}

/// Checks that key process `pid` is sandboxed, not dumpable, without
/// root, and a child of `s`'s parent.
fn sandboxed_child_of_the_parent(s: &TestServer, pid: u32) {
    assert_eq!(fs::read_to_string(format!("/proc/{pid}/comm")).unwrap().trim(), "forkhttpd-keys");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| status.lines().find(|l| l.starts_with(k)).map(|l| l[k.len()..].trim().to_string());
    assert_eq!(field("Seccomp:").as_deref(), Some("2"), "{status}");
    assert_eq!(field("NoNewPrivs:").as_deref(), Some("1"), "{status}");
    // Not dumpable: it writes no core file, and its memory is closed to
    // its own account.
    let stat = proc_stat(pid).expect("its stat");
    assert_eq!(stat.ppid, s.pid(), "a child of the parent");
    if nix::unistd::geteuid().is_root() {
        let uid = status_ids(pid, "Uid:").unwrap();
        assert!(uid.iter().all(|&u| u != 0), "it dropped root as children do: {uid:?}");
    }
}

/// Which of `needles` occur in the memory of `pid`, read through
/// `/proc/PID/mem` (root may, though the process is not dumpable): every
/// writable or anonymous mapping (a file mapped read-only is the binary
/// or a library, which holds no key). Also returns how many bytes were
/// read, so that a reader that read nothing cannot pass for one that
/// found nothing. Everything is read first, then searched: the process
/// must not end meanwhile.
fn memory_holds(pid: u32, needles: &[(&str, Vec<u8>)]) -> (Vec<String>, usize) {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut regions = Vec::new();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (range, perms, inode) = (f[0], f[1], f[4]);
        let anonymous = inode == "0";
        if !perms.starts_with('r') || line.contains("[vvar") || line.contains("[vsyscall]") {
            continue;
        }
        if !(anonymous || perms.as_bytes()[1] == b'w') {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (u64::from_str_radix(start, 16).unwrap(), u64::from_str_radix(end, 16).unwrap());
        let mut buf = vec![0; usize::try_from(end - start).unwrap()];
        if let Ok(n) = mem.read_at(&mut buf, start) {
            buf.truncate(n);
            regions.push(buf);
        }
    }
    let read = regions.iter().map(Vec::len).sum();
    let found = needles
        .iter()
        .filter(|(_, needle)| regions.iter().any(|r| r.windows(needle.len()).any(|w| w == &needle[..])))
        .map(|(name, _)| name.to_string())
        .collect();
    (found, read)
}

/// The first prime of an RSA PKCS#8 key (big-endian, no leading zero),
/// walked out of its DER: PrivateKeyInfo { version, algorithm,
/// OCTET STRING { RSAPrivateKey { version, n, e, d, p, ... } } }.
fn rsa_prime(pkcs8: &[u8]) -> Vec<u8> {
    fn element(b: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = b[0];
        let (len, at) = match b[1] {
            l if l < 0x80 => (usize::from(l), 2),
            l => {
                let n = usize::from(l & 0x7f);
                (b[2..2 + n].iter().fold(0, |a, &x| a << 8 | usize::from(x)), 2 + n)
            }
        };
        (tag, &b[at..at + len], &b[at + len..])
    }
    let (_, info, _) = element(pkcs8);
    let rest = element(info).2; // version
    let rest = element(rest).2; // algorithm
    let (_, octets, _) = element(rest);
    let (_, rsa, _) = element(octets);
    let mut rest = rsa;
    for _ in 0..4 {
        rest = element(rest).2; // version, n, e, d
    }
    let p = element(rest).1;
    p.strip_prefix(&[0]).unwrap_or(p).to_vec()
}

/// What of `key` (a PEM file) is looked for: the PKCS#8 DER's start, its
/// first base64 line, and the RSA prime `p` in both byte orders (ring
/// keeps it as little-endian limbs, so a process holding the parsed key
/// has it reversed).
fn key_needles(key: &std::path::Path) -> Vec<(&'static str, Vec<u8>)> {
    let pem = fs::read_to_string(key).unwrap();
    let PrivateKeyDer::Pkcs8(der) = PrivateKeyDer::from_pem_file(key).unwrap() else { panic!("not PKCS#8") };
    let der = der.secret_pkcs8_der().to_vec();
    let p = rsa_prime(&der);
    let mut reversed = p.clone();
    reversed.reverse();
    let b64 = pem.lines().nth(1).unwrap().as_bytes().to_vec();
    vec![
        ("the PKCS#8 DER", der[der.len() - 48..].to_vec()),
        ("a base64 line of the PEM file", b64),
        ("the prime p", p[8..40].to_vec()),
        ("the prime p as limbs", reversed[8..40].to_vec()),
    ]
}

#[test]
fn a_serving_childs_memory_holds_no_key_bytes() {
    if !nix::unistd::geteuid().is_root() {
        skip("reading a non-dumpable process's memory takes root (CAP_SYS_PTRACE)");
        return;
    }
    let certs = TempDir::new("keyproc");
    let ca = TestCa::new();
    let cert = ca.issue_for(rsa_key(certs.path()), certs.path(), "rsa", &["default.test"], VALID);
    let needles = key_needles(&cert.key);
    let certificate = ("the certificate", der_of(&cert)[..64].to_vec());
    let all: Vec<_> = needles.iter().cloned().chain([certificate.clone()]).collect();
    for key_process_on in [true, false] {
        let config = [format!("tls_key_process = {key_process_on}"), "keepalive_timeout = 60".to_string()];
        let s = https_server(&cert, &config, &[("index.html", b"x")]);
        let keys = if key_process_on { key_processes(&s, per_cpu()) } else { Vec::new() };
        // A child that has made its handshake, kept alive.
        let mut c = TlsConn::connect(s.addr(), "default.test", ca.client_config()).unwrap();
        c.send_request("GET", "/", "default.test", &[]);
        assert_eq!(c.read_response().status, 200);
        let kids =
            wait_children(s.pid(), Duration::from_secs(5), |k| k.iter().any(|p| !keys.contains(&p.pid)));
        let child = kids.iter().find(|p| !keys.contains(&p.pid)).expect("the serving child").pid;
        let (found, read) = memory_holds(child, &all);
        assert!(read > 64 << 10, "read {read} bytes of the child's memory");
        assert!(found.contains(&certificate.0.to_string()), "the child holds its certificate: {found:?}");
        if key_process_on {
            let secrets: Vec<_> = found.iter().filter(|f| *f != certificate.0).collect();
            assert!(secrets.is_empty(), "a serving child holds {secrets:?} of the private key");
            // The same search finds the parsed key where it is: in each.
            for &pid in &keys {
                let (in_keys, _) = memory_holds(pid, &needles);
                assert!(
                    in_keys.iter().any(|f| f == "the prime p as limbs"),
                    "key process {pid} holds the parsed key: {in_keys:?}"
                );
            }
            let (in_parent, _) = memory_holds(s.pid(), &needles);
            assert!(in_parent.is_empty(), "the parent holds {in_parent:?} of the private key");
        } else {
            assert!(
                found.iter().any(|f| f == "the prime p as limbs"),
                "with tls_key_process = false the child holds the parsed key: {found:?}"
            );
        }
    }
}

/// A child forked on the first bytes of a ClientHello, which it has not
/// yet got whole (the listener defers accepting until bytes arrive): the
/// client's connection, its socket, and the rest of the hello to send.
fn early_child(s: &TestServer, ca: &TestCa) -> (ClientConnection, TcpStream, Vec<u8>) {
    let before = children_of(s.pid()).len();
    let mut conn =
        ClientConnection::new(ca.client_config(), ServerName::try_from("default.test").unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let mut sock = TcpStream::connect(s.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sock.write_all(&hello[..5]).unwrap();
    let forked = wait_children(s.pid(), Duration::from_secs(5), |k| k.len() > before);
    assert!(forked.len() > before, "a child for the early connection");
    (conn, sock, hello.split_off(5))
}

/// A handshake that must end (either way) within `limit`: `Ok` when it
/// completed and a request was answered.
fn bounded_handshake(s: &TestServer, ca: &TestCa, limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    let got = TlsConn::connect(s.addr(), "default.test", ca.client_config()).map_err(|e| e.to_string());
    let got = got.and_then(|mut c| {
        c.send_request("GET", "/", "default.test", &["Connection: close"]);
        let r = c.read_response();
        if r.status == 200 { Ok(()) } else { Err(format!("status {}", r.status)) }
    });
    assert!(started.elapsed() < limit, "a handshake took {:?}: {got:?}", started.elapsed());
    got
}

/// With one key process, killed: handshakes fail at once until it is
/// back (see the test after for one of two).
#[test]
fn a_killed_key_process_is_started_again_and_nothing_hangs() {
    let certs = TempDir::new("keyproc");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let s = https_server(&cert, &["tls_key_processes = 1".to_string()], &[("index.html", b"x")]);
    let first = key_process(&s, 0);
    bounded_handshake(&s, &ca, Duration::from_secs(5)).expect("a handshake before");
    // A child forked before the kill, which has not yet signed.
    let (conn, mut waiting, rest) = early_child(&s, &ca);
    kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    // Handshakes meanwhile end at once, one way or the other.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let _ = bounded_handshake(&s, &ca, Duration::from_secs(2));
    }
    let second = key_process(&s, 1);
    assert_ne!(first, second);
    assert!(wait_gone(first, Duration::from_secs(5)), "the dead key process is reaped, no zombie");
    let ok =
        poll_until(Duration::from_secs(10), || bounded_handshake(&s, &ca, Duration::from_secs(5)).is_ok());
    assert!(ok, "handshakes succeed again; stderr:\n{}", s.stderr());
    let status = fs::read_to_string(format!("/proc/{second}/status")).unwrap();
    assert!(status.contains("Seccomp:\t2"), "the new one is sandboxed too:\n{status}");
    // The child forked before the kill fails its handshake (its channel
    // went with the key process), and exits normally.
    waiting.write_all(&rest).unwrap();
    let mut stream = StreamOwned::new(conn, waiting);
    let mut byte = [0];
    assert!(stream.read(&mut byte).is_err(), "its handshake fails");
    let log = s.stderr();
    assert!(log.contains(&format!("key process {first} was killed by SIGKILL")), "{log}");
    let crashed: Vec<_> = log.lines().filter(|l| l.contains("child ") && l.contains("killed by")).collect();
    assert!(crashed.is_empty(), "no child crashed: {crashed:?}");
    let failed: Vec<_> =
        log.lines().filter(|l| l.contains("child ") && l.contains("exited with status")).collect();
    assert!(failed.is_empty(), "no child failed: {failed:?}");
}

#[test]
fn a_stopped_key_process_fails_handshakes_in_bounded_time() {
    let certs = TempDir::new("keyproc");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let s = https_server(&cert, &["tls_key_processes = 2".to_string()], &[("index.html", b"x")]);
    let pids: Vec<Pid> = key_processes(&s, 2).into_iter().map(|p| Pid::from_raw(p as i32)).collect();
    for &pid in &pids {
        kill(pid, Signal::SIGSTOP).unwrap();
    }
    let stopped = bounded_handshake(&s, &ca, Duration::from_secs(8));
    for &pid in &pids {
        kill(pid, Signal::SIGCONT).unwrap();
    }
    assert!(stopped.is_err(), "a handshake signed by a stopped key process cannot succeed");
    let again = bounded_handshake(&s, &ca, Duration::from_secs(5));
    assert!(again.is_ok(), "a handshake once it runs again: {again:?}; stderr:\n{}", s.stderr());
}

#[test]
fn a_reload_hands_over_new_keys_and_the_old_generation_still_signs() {
    let certs = TempDir::new("keyproc");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let old = der_of(&cert);
    let mut s = https_server(&cert, &[], &[("index.html", b"signed\n")]);
    let keys = key_processes(&s, per_cpu());
    // A child of the first generation, which gets its ClientHello whole
    // only after the reload.
    let (conn, mut early, rest) = early_child(&s, &ca);
    let renewed = ca.issue(certs.path(), "renewed", &["default.test"], VALID);
    let new = der_of(&renewed);
    fs::rename(&renewed.key, &cert.key).unwrap();
    fs::rename(&renewed.cert, &cert.cert).unwrap();
    s.signal(Signal::SIGHUP);
    let reloaded = s.wait_for_lines(1, Duration::from_secs(10), |l| l.contains("configuration reloaded"));
    assert!(!reloaded.is_empty(), "{}", s.stderr());
    // Each key process signs with the new key: connections go to them in turn.
    for _ in 0..2 * keys.len() {
        fetch(&s, &ca, &rustls::version::TLS13, &new);
    }
    // The first generation's child signs with the first key.
    early.write_all(&rest).unwrap();
    let mut stream = StreamOwned::new(conn, early);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).expect("the old generation's handshake");
    }
    let leaf = stream.conn.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(leaf, old, "the child forked before the reload serves the old pair");
    assert_eq!(key_processes(&s, keys.len()), keys, "the same key processes throughout");
    let starts = s.lines().iter().filter(|l| l.contains("key process ") && l.ends_with(" started")).count();
    assert_eq!(starts, keys.len(), "{}", s.stderr());
}

#[test]
fn one_key_process_per_cpu_by_default_and_two_share_the_handshakes() {
    let certs = TempDir::new("keyproc");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let s = https_server(&cert, &[], &[]);
    let pool = key_processes(&s, per_cpu());
    let kids = children_of(s.pid());
    let named = |pid: u32| fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let keys: Vec<u32> =
        kids.iter().map(|k| k.pid).filter(|&p| named(p).trim() == "forkhttpd-keys").collect();
    assert_eq!(keys.len(), per_cpu(), "one per CPU: {pool:?}, {kids:?}");
    drop(s);
    let s = https_server(&cert, &["tls_key_processes = 2".to_string()], &[("index.html", b"x")]);
    let pids = key_processes(&s, 2);
    assert_ne!(pids[0], pids[1]);
    for &pid in &pids {
        sandboxed_child_of_the_parent(&s, pid);
    }
    let before = settled(&pids);
    handshakes(&s, &ca, 8);
    let after: Vec<u64> = pids.iter().map(|&p| wake_ups(p)).collect();
    for i in 0..2 {
        // Each of its handshakes wakes it for the channel, the signature
        // and the channel's end: 4 handshakes in turn, at least 8 wake-ups.
        assert!(
            after[i] >= before[i] + 4,
            "key process {} signed its share: {before:?} -> {after:?}",
            pids[i]
        );
    }
}

#[test]
fn killing_one_of_two_key_processes_leaves_handshakes_working_and_it_is_started_again() {
    let certs = TempDir::new("keyproc");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let s = https_server(&cert, &["tls_key_processes = 2".to_string()], &[("index.html", b"x")]);
    let pids = key_processes(&s, 2);
    let (dead, live) = (pids[0], pids[1]);
    handshakes(&s, &ca, 2);
    kill(Pid::from_raw(dead as i32), Signal::SIGKILL).unwrap();
    // Once it has exited (its sockets closed), reaped or not yet, every
    // connection goes to the live one.
    assert!(wait_gone(dead, Duration::from_secs(5)), "killed");
    handshakes(&s, &ca, 6);
    let again = key_process(&s, 2);
    assert!(!pids.contains(&again), "a new process: {again} after {pids:?}");
    assert!(proc_stat(dead).is_none(), "the dead one is reaped, no zombie");
    sandboxed_child_of_the_parent(&s, again);
    assert!(!is_gone(live), "the live one is left as it was");
    // The new one was handed the keys and signs its share; the other
    // still signs.
    let before = settled(&[live, again]);
    handshakes(&s, &ca, 8);
    let after = [wake_ups(live), wake_ups(again)];
    assert!(after[0] >= before[0] + 4 && after[1] >= before[1] + 4, "both sign: {before:?} -> {after:?}");
    let log = s.stderr();
    assert!(
        log.contains(&format!("key process {dead} was killed by SIGKILL; the other key process signs")),
        "{log}"
    );
    let starts = log.lines().filter(|l| l.contains("key process ") && l.ends_with(" started")).count();
    assert_eq!(starts, 3, "only the dead one is started again:\n{log}");
}

#[test]
fn a_reload_changes_how_many_key_processes_sign() {
    let certs = TempDir::new("keyproc");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let mut s = https_server(&cert, &["tls_key_processes = 2".to_string()], &[("index.html", b"x")]);
    let pids = key_processes(&s, 2);
    let reload = |s: &mut TestServer, count: usize| {
        let from = s.log().len();
        let tls_listen = format!("tls_listen = [\"{}\"]", s.addr());
        let lines: Vec<String> = s
            .config_lines()
            .iter()
            .map(|l| if l.starts_with("tls_listen") { tls_listen.clone() } else { l.clone() })
            .filter(|l| !l.starts_with("tls_key_processes"))
            .chain([format!("tls_key_processes = {count}")])
            .collect();
        s.rewrite_config(&[], s.root(), &lines);
        s.signal(Signal::SIGHUP);
        let done = |l: &str| l.contains("configuration reloaded") || l.contains("reload failed");
        let line = s.log().wait_line(from, Duration::from_secs(10), done);
        assert!(line.is_some_and(|l| l.contains("configuration reloaded")), "{}", s.stderr());
    };
    reload(&mut s, 1);
    let retired = s.wait_for_lines(1, Duration::from_secs(5), |l| l.contains("retired, has exited"));
    assert!(retired[0].contains(&format!("key process {}", pids[1])), "{}", s.stderr());
    assert!(wait_gone(pids[1], Duration::from_secs(5)) && !is_gone(pids[0]));
    handshakes(&s, &ca, 3);
    reload(&mut s, 3);
    let grown = key_processes(&s, 4);
    assert_eq!(grown[..2], pids[..], "{}", s.stderr());
    for &pid in &grown[2..] {
        sandboxed_child_of_the_parent(&s, pid);
    }
    let live = [grown[0], grown[2], grown[3]];
    let before = settled(&live);
    handshakes(&s, &ca, 9);
    let after = live.map(wake_ups);
    for i in 0..3 {
        assert!(after[i] >= before[i] + 4, "each of {live:?} signs: {before:?} -> {after:?}");
    }
}
