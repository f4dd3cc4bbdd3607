//! Running a command with its output captured: line by line, to completion, or as a long-running `Proc`.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{STARTUP_TIMEOUT, parse_listening_line, terminate_child, wait_child};

/// Lines read from a pipe by a background thread.
#[derive(Default)]
pub struct Lines {
    lines: Mutex<Vec<String>>,
    cond: Condvar,
    eof: Mutex<bool>,
}

impl Lines {
    /// Starts a thread that reads `r` line by line into a new `Lines`.
    pub fn drain(r: impl Read + Send + 'static) -> Arc<Lines> {
        let lines = Arc::new(Lines::default());
        let l2 = Arc::clone(&lines);
        thread::spawn(move || {
            let mut reader = BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_string();
                        l2.lines.lock().unwrap().push(line);
                        l2.cond.notify_all();
                    }
                }
            }
            *l2.eof.lock().unwrap() = true;
            l2.cond.notify_all();
        });
        lines
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.snapshot().join("\n")
    }

    pub fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    pub fn is_eof(&self) -> bool {
        *self.eof.lock().unwrap()
    }

    /// Waits until at least `n` lines with index >= `from` satisfy `pred`;
    /// returns those lines (fewer than `n` on timeout).
    pub fn wait_from(
        &self,
        from: usize,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lines.lock().unwrap();
        loop {
            let matching: Vec<String> = guard.iter().skip(from).filter(|l| pred(l)).cloned().collect();
            let now = Instant::now();
            if matching.len() >= n || now >= deadline {
                return matching;
            }
            guard =
                self.cond.wait_timeout(guard, (deadline - now).min(Duration::from_millis(100))).unwrap().0;
        }
    }

    /// Waits for the first line (index >= `from`) satisfying `pred`.
    pub fn wait_line(&self, from: usize, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.wait_from(from, 1, timeout, pred).into_iter().next()
    }

    /// Waits up to `timeout` for the next line (or EOF).
    pub fn wait_more(&self, timeout: Duration) {
        let guard = self.lines.lock().unwrap();
        let _ = self.cond.wait_timeout(guard, timeout).unwrap();
    }

    /// Waits until the pipe reaches EOF; returns whether it did.
    pub fn wait_eof(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.eof.lock().unwrap();
        loop {
            if *guard {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self.cond.wait_timeout(guard, (deadline - now).min(Duration::from_millis(50))).unwrap().0;
        }
    }
}

/// The result of running a short-lived command to completion.
pub struct Output {
    pub pid: u32,
    /// `None` if it did not exit within the timeout (it was then killed).
    pub status: Option<ExitStatus>,
    /// The lines of stdout and of stderr, each joined with `\n`.
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Whether both pipes reached EOF, i.e. no process left behind (such as
    /// a daemon) still holds them.
    pub released: bool,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn describe(&self) -> String {
        format!(
            "status {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (stdout and stderr captured) until it exits or `timeout`
/// passes (then it is SIGKILLed).  The pipes may be held open by a
/// grandchild (a daemon), so they are waited for at most `pipe_wait` each
/// after the exit; the output is whatever arrived by then.
pub fn run_waiting(cmd: &mut Command, timeout: Duration, pipe_wait: Duration) -> Output {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let out = Lines::drain(child.stdout.take().unwrap());
    let err = Lines::drain(child.stderr.take().unwrap());
    let status = wait_child(&mut child, timeout);
    let elapsed = start.elapsed();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let released = out.wait_eof(pipe_wait) & err.wait_eof(pipe_wait);
    Output { pid: child.id(), status, stdout: out.text(), stderr: err.text(), elapsed, released }
}

/// [`run_waiting`] with half a second for the pipes.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    run_waiting(cmd, timeout, Duration::from_millis(500))
}

/// Runs a helper tool to completion; panics if it does not finish within
/// `timeout`.
pub fn run_tool(cmd: &mut Command, timeout: Duration) -> Output {
    let out = run_waiting(cmd, timeout, timeout);
    assert!(out.status.is_some(), "{cmd:?} did not finish within {timeout:?}");
    out
}

/// A process started by a test with its stderr collected line by line;
/// SIGTERMed (then SIGKILLed) and reaped on drop.
pub struct Proc {
    child: Child,
    pub log: Arc<Lines>,
    /// The program and its arguments, for messages.
    what: String,
}

impl Proc {
    /// Spawns `cmd` with stdin and stdout on /dev/null.
    pub fn spawn(cmd: &mut Command) -> Proc {
        let what = format!("{:?} {:?}", cmd.get_program(), cmd.get_args().collect::<Vec<_>>());
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let log = Lines::drain(child.stderr.take().unwrap());
        Proc { child, log, what }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A snapshot of all stderr lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.snapshot()
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn is_running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    /// SIGTERM and wait up to `timeout`; SIGKILL if it does not exit.
    pub fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        terminate_child(&mut self.child, timeout)
    }

    /// SIGKILL (if still running) and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` until `found` picks something out of the stderr
    /// lines.  Returns `Err(status)` if the process exits first, `Ok(None)`
    /// on timeout.
    fn wait_for<T>(
        &mut self,
        timeout: Duration,
        found: impl Fn(&[String]) -> Option<T>,
    ) -> Result<Option<T>, ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = found(&self.lines()) {
                return Ok(Some(t));
            }
            if let Some(st) = self.exited() {
                // Let the drain thread collect the last lines (without
                // blocking on a pipe that a process left behind still holds).
                self.log.wait_eof(Duration::from_secs(1));
                return found(&self.lines()).map(Some).ok_or(st);
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.log.wait_more(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` for a line matching `pred`. Returns `Err(status)`
    /// if the process exits first, `Ok(None)` on timeout.
    pub fn wait_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, ExitStatus> {
        self.wait_for(timeout, |lines| lines.iter().find(|l| pred(l)).cloned())
    }

    /// Waits up to [`STARTUP_TIMEOUT`] for `n` `listening on` lines from
    /// index `from` on; panics (with the stderr so far) if the process exits
    /// first or the time runs out.
    pub fn wait_listeners(&mut self, from: usize, n: usize) -> Vec<SocketAddr> {
        let found = |lines: &[String]| {
            let addrs: Vec<SocketAddr> =
                lines.iter().skip(from).filter_map(|l| parse_listening_line(l)).collect();
            (addrs.len() >= n).then_some(addrs)
        };
        match self.wait_for(STARTUP_TIMEOUT, found) {
            Ok(Some(addrs)) => addrs,
            Err(status) => {
                panic!("{} exited during startup with {status}; stderr:\n{}", self.what, self.log.text())
            }
            Ok(None) => panic!(
                "{} did not report {n} 'listening on' line(s) within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                self.what,
                self.log.text()
            ),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}
