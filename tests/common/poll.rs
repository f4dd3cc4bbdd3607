//! Bounded polling, so a wait for a condition fails a test instead of hanging it.

use std::thread;
use std::time::{Duration, Instant};

/// Poll `cond` every 50 ms until it returns true or `timeout` elapses.
/// Returns whether it became true.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
