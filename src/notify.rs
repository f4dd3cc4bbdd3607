//! The systemd readiness protocol (`sd_notify`): one datagram per state
//! change to the socket named by `$NOTIFY_SOCKET`; and systemd's watchdog
//! (`WatchdogSec=`), kept alive by the accept loop with `WATCHDOG=1`.
//!
//! Runs in: parent only; children never notify (the unit's
//! `NotifyAccess=main` would ignore them anyway).

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// A connection to systemd's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Watchdog>,
}

/// systemd's watchdog: `WATCHDOG=1` is due every `interval`, from `pid`.
#[derive(Debug)]
struct Watchdog {
    interval: Duration,
    /// The process systemd expects the pings from (`$WATCHDOG_PID`): after
    /// `--daemon` detaches, that is no longer this one.
    pid: u32,
    next: Instant,
}

impl Notifier {
    /// The notifier named by `$NOTIFY_SOCKET` (a path, or `@name` for the
    /// abstract namespace); `None` when not started by systemd. With
    /// `$WATCHDOG_USEC` (for this process, if `$WATCHDOG_PID` names one),
    /// the watchdog is on.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let name = name.as_bytes();
        let addr = match name.strip_prefix(b"@") {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name)?,
            None => SocketAddr::from_pathname(OsStr::from_bytes(name))?,
        };
        let me = std::process::id();
        let usec = std::env::var_os("WATCHDOG_USEC");
        let watchdog =
            match watchdog_interval(usec.as_deref(), std::env::var_os("WATCHDOG_PID").as_deref(), me) {
                Ok(interval) => {
                    interval.map(|interval| Watchdog { interval, pid: me, next: Instant::now() + interval })
                }
                Err(what) => {
                    log::warn!("systemd's watchdog is not kept: {what}");
                    None
                }
            };
        Ok(Some(Notifier { socket: UnixDatagram::unbound()?, addr, watchdog }))
    }

    /// Sends `state` (for example `READY=1`). A failure is logged, never
    /// fatal: systemd's view of us is not worth stopping the server for.
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.addr) {
            log::warn!("sd_notify {state:?}: {e}");
        }
    }

    /// When the next `WATCHDOG=1` is due (`None`: no watchdog): the accept
    /// loop's wait ends by then.
    pub fn watchdog_due(&self) -> Option<Instant> {
        self.watchdog.as_ref().map(|w| w.next)
    }

    /// Sends `WATCHDOG=1` if it is due. Called on every round of the
    /// accept loop, so the pings stop when the loop stops (the process
    /// stopped or wedged), and systemd then kills and restarts it.
    pub fn feed_watchdog(&mut self) {
        let now = Instant::now();
        let Some(w) = self.watchdog.as_mut().filter(|w| now >= w.next) else {
            return;
        };
        w.next = now + w.interval;
        if std::process::id() == w.pid {
            self.notify("WATCHDOG=1");
        }
    }
}

/// How often to send `WATCHDOG=1`, from `$WATCHDOG_USEC` and
/// `$WATCHDOG_PID` read as sd_watchdog_enabled(3) reads them, in process
/// `me`: half the timeout (as that page advises), at least a millisecond;
/// `None` when there is no timeout or it is meant for another process; an
/// error for a value that is not a number.
fn watchdog_interval(usec: Option<&OsStr>, pid: Option<&OsStr>, me: u32) -> Result<Option<Duration>, String> {
    let Some(usec) = usec else { return Ok(None) };
    if let Some(pid) = pid {
        match pid.to_str().and_then(|p| p.parse::<u32>().ok()) {
            Some(pid) if pid == me => {}
            Some(_) => return Ok(None),
            None => return Err(format!("WATCHDOG_PID={pid:?} is not a process id")),
        }
    }
    match usec.to_str().and_then(|u| u.parse::<u64>().ok()) {
        Some(0) | Some(u64::MAX) => Ok(None),
        Some(usec) => Ok(Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))),
        None => Err(format!("WATCHDOG_USEC={usec:?} is not a number of microseconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(usec: Option<&str>, pid: Option<&str>) -> Result<Option<Duration>, String> {
        watchdog_interval(usec.map(OsStr::new), pid.map(OsStr::new), 42)
    }

    /// Half the timeout, for this process or any when no pid is named;
    /// off without a timeout, for another process, or with the values
    /// systemd itself means as "none"; an error for what is not a number.
    #[test]
    fn watchdog_interval_follows_sd_watchdog_enabled() {
        assert_eq!(interval(Some("30000000"), None), Ok(Some(Duration::from_secs(15))));
        assert_eq!(interval(Some("30000000"), Some("42")), Ok(Some(Duration::from_secs(15))));
        assert_eq!(interval(Some("30000000"), Some("43")), Ok(None));
        assert_eq!(interval(None, Some("42")), Ok(None));
        assert_eq!(interval(Some("0"), None), Ok(None));
        assert_eq!(interval(Some(&u64::MAX.to_string()), None), Ok(None));
        assert_eq!(interval(Some("1"), None), Ok(Some(Duration::from_millis(1))));
        assert!(interval(Some("30s"), None).is_err());
        assert!(interval(Some("30000000"), Some("x")).is_err());
    }
}
