//! Reading `/proc`: process state, children, ids, and accept queues.

use std::fs;
use std::net::SocketAddr;
use std::time::Duration;

use super::{contains, poll_until};

/// Fields of `/proc/PID/stat` after the command name.
#[derive(Debug, Clone)]
pub struct Stat {
    /// The command name (`comm`).
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    pub tty_nr: i64,
    /// User and system CPU time, in clock ticks.
    pub utime: u64,
    pub stime: u64,
}

pub fn proc_stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn self_stat() -> Stat {
    parse_stat(&fs::read_to_string("/proc/self/stat").unwrap()).unwrap()
}

fn parse_stat(s: &str) -> Option<Stat> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    // f[0] is field 3 of proc_pid_stat(5) (state).
    let f: Vec<&str> = s[close + 1..].split_whitespace().collect();
    Some(Stat {
        comm: s.get(open + 1..close)?.to_string(),
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        session: f.get(3)?.parse().ok()?,
        tty_nr: f.get(4)?.parse().ok()?,
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
    })
}

#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: u32,
    pub state: char,
}

/// What process `pid` is doing, for a failure message: its state, the
/// kernel function it sleeps in, the system call it is in, and its pending
/// and blocked signals (so a parent stuck outside its wait, or with a
/// signal pending, shows as such).
pub fn process_report(pid: u32) -> String {
    let read = |what: &str| fs::read_to_string(format!("/proc/{pid}/{what}")).unwrap_or_default();
    let status = read("status");
    let field = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map_or("?", str::trim).to_string()
    };
    let syscall = read("syscall");
    format!(
        "pid {pid}: state {}, wchan {}, syscall {}, SigPnd {}, ShdPnd {}, SigBlk {}",
        field("State"),
        read("wchan"),
        syscall.split_whitespace().next().unwrap_or("?"),
        field("SigPnd"),
        field("ShdPnd"),
        field("SigBlk")
    )
}

/// The number of connections waiting in the accept queue of the IPv4 TCP
/// listener on `addr` (the `rx_queue` of its `/proc/net/tcp` line), if
/// there is such a listener in this network namespace.
pub fn accept_queue(addr: SocketAddr) -> Option<u32> {
    let SocketAddr::V4(v4) = addr else { return None };
    let local = format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port());
    fs::read_to_string("/proc/net/tcp").ok()?.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // f[1] local address, f[3] state (0A: LISTEN), f[4] tx_queue:rx_queue.
        if f.get(1) != Some(&local.as_str()) || f.get(3) != Some(&"0A") {
            return None;
        }
        u32::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok()
    })
}

/// The server's spawner's process name (`forkhttpd::spawner::NAME`).
pub const SPAWNER: &str = "forkhttpd-spawn";

/// All processes whose parent is `ppid`, read from `/proc/<pid>/stat`,
/// but the spawner (a server's children are the connections' processes).
pub fn children_of(ppid: u32) -> Vec<ProcInfo> {
    processes_of(ppid)
        .filter(|(_, st)| st.comm != SPAWNER)
        .map(|(pid, st)| ProcInfo { pid, state: st.state })
        .collect()
}

/// The pids of the server `ppid`'s spawners (one, but for a moment after
/// a reload).
pub fn spawners_of(ppid: u32) -> Vec<u32> {
    processes_of(ppid).filter(|(_, st)| st.comm == SPAWNER).map(|(pid, _)| pid).collect()
}

fn processes_of(ppid: u32) -> impl Iterator<Item = (u32, Stat)> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, proc_stat(pid)?)))
        .filter(move |(_, st)| st.ppid == ppid)
}

/// Polls the children of `ppid` until `done` accepts them or `timeout`
/// passes; returns the last list read.
pub fn wait_children(ppid: u32, timeout: Duration, done: impl Fn(&[ProcInfo]) -> bool) -> Vec<ProcInfo> {
    let mut kids = Vec::new();
    poll_until(timeout, || {
        kids = children_of(ppid);
        done(&kids)
    });
    kids
}

/// The numbers on the line starting with `key` (such as `Uid:` or
/// `Groups:`) of a `/proc/PID/status` text.
pub fn status_line_ids(status: &str, key: &str) -> Option<Vec<u32>> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    Some(line[key.len()..].split_whitespace().filter_map(|x| x.parse().ok()).collect())
}

/// The numbers on a `/proc/PID/status` line such as `Uid:` or `Groups:`.
pub fn status_ids(pid: u32, key: &str) -> Option<Vec<u32>> {
    status_line_ids(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?, key)
}

/// Whether `pid` no longer runs (no such process, or a zombie).
pub fn is_gone(pid: u32) -> bool {
    match proc_stat(pid) {
        None => true,
        Some(st) => st.state == 'Z' || st.state == 'X',
    }
}

/// Polls until `pid` is gone; returns whether it went within `timeout`.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    poll_until(timeout, || is_gone(pid))
}

/// Whether `/proc/PID/cmdline` names the forkhttpd binary (guards against
/// killing a recycled pid).
pub fn is_forkhttpd(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).map(|c| contains(&c, b"forkhttpd")).unwrap_or(false)
}
