//! Counters every process of the server shares (one mapping made before
//! any fork), and the warnings they limit: a client's warnings, crashes of
//! children and lost access-log lines are each reported at most once a
//! minute across the whole server, with how many were left out. The same
//! mapping holds whether the access-log file ends in a cut line.
//!
//! Runs in: parent (mapping, reporting crashes) and child (counting,
//! reporting).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

/// Slots of `SHARED`, the counters every process of the server shares.
pub(super) const WARNED_AT: usize = 0;
pub(super) const LINES_LOST: usize = 1;
pub(super) const FILE_TORN: usize = 2;
const CLIENT_WARNED_AT: usize = 3;
const CLIENT_WARNINGS: usize = 4;
const CRASH_WARNED_AT: usize = 5;
const CRASH_WARNINGS: usize = 6;
pub(super) const SLOTS: usize = 7;

/// State shared by the parent and every child (mapped by `init`, before
/// any fork): `WARNED_AT`, the monotonic second (plus one) of the last
/// warning about lost access-log lines; `LINES_LOST`, the lines lost since;
/// `FILE_TORN`, 1 while the access-log file ends in the middle of a line;
/// `CLIENT_WARNED_AT` and `CLIENT_WARNINGS`, the same pair as the first
/// two for `client_warning`; `CRASH_WARNED_AT` and `CRASH_WARNINGS`, the
/// pair for `crash_warning`. `None` if the mapping failed: then every
/// warning is logged, and a cut line is not ended.
static SHARED: OnceLock<Option<&'static [AtomicU64; SLOTS]>> = OnceLock::new();

/// The shared counters, mapped on first use (`None` if the mapping
/// failed).
pub(super) fn shared() -> Option<&'static [AtomicU64; SLOTS]> {
    *SHARED.get_or_init(|| crate::sys::shared_counters().ok())
}

/// Counts one event in slot `count`, and says whether a report of it is
/// due: when the last report (its time in slot `at`) was `interval` or
/// more ago, across every process of the server. Returns the events
/// counted since the last report, this one included, to the one process
/// that makes the report; `None` to the others. Every event is due
/// without the shared mapping.
pub(super) fn report_due(at: usize, count: usize, interval: Duration) -> Option<u64> {
    let Some(shared) = shared() else {
        return Some(1);
    };
    shared[count].fetch_add(1, Ordering::Relaxed);
    // CLOCK_MONOTONIC is one clock for every process on the machine, and
    // does not jump with the wall clock.
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| t.tv_sec().unsigned_abs()) + 1;
    let last = shared[at].load(Ordering::Relaxed);
    if last != 0 && now < last.saturating_add(interval.as_secs()) {
        return None;
    }
    // Of the processes that report in the same second, one does.
    shared[at].compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).ok()?;
    Some(shared[count].swap(0, Ordering::Relaxed).max(1))
}

/// The least time between two `client_warning`s across the whole server.
const CLIENT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Logs a warning that a client's request or connection causes (a path
/// refused for leaving the root, a connection refused by a PROXY
/// listener) at most once every `CLIENT_WARNING_INTERVAL` across the whole
/// server, saying how many were left out since the last one: a client that
/// repeats the request cannot flood the daemon log. Each of those requests
/// still gets its access-log line.
pub fn client_warning(args: std::fmt::Arguments<'_>) {
    rate_limited_warning(CLIENT_WARNED_AT, CLIENT_WARNINGS, "client", args);
}

/// Logs that a child was killed by a signal (a crash: an abort, a fault)
/// as `client_warning` logs, at most once every `CLIENT_WARNING_INTERVAL`
/// saying how many were left out: a client whose every request crashes
/// its child cannot flood the daemon log either. It counts apart from the
/// client warnings, so that a flood of those never hides a crash.
pub fn crash_warning(args: std::fmt::Arguments<'_>) {
    rate_limited_warning(CRASH_WARNED_AT, CRASH_WARNINGS, "crash", args);
}

/// Logs `args` as a warning if one of its `kind` is due (slots `at` and
/// `count`, see `report_due`), with how many were left out since the last.
fn rate_limited_warning(at: usize, count: usize, kind: &str, args: std::fmt::Arguments<'_>) {
    match report_due(at, count, CLIENT_WARNING_INTERVAL) {
        None => {}
        Some(1) => log::warn!("{args}"),
        Some(n) => log::warn!(
            "{args} ({} such warning(s) before this one were not logged: {kind} warnings are \
             logged at most once every {}s)",
            n - 1,
            CLIENT_WARNING_INTERVAL.as_secs()
        ),
    }
}
