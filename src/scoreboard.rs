//! The scoreboard: what each child is doing, and the server's counters, in
//! memory shared by the parent and every child (`sys::SharedWords`), so
//! that a child reports with plain atomic stores, no system call, and the
//! parent (or the child answering the status page, `status`) reads it.
//!
//! Runs in: both. The parent makes the counters once, before the first
//! fork, and a board of `max_children` slots, rebuilt when a reload changes
//! that number (children of the old generation keep writing to the board
//! they were forked with, which the parent keeps until the last of them
//! has exited). It picks a free slot for each child at the fork and frees
//! it when it reaps the child; the child writes only through its `Slot`.
//!
//! A slot is `SLOT_WORDS` words (256 bytes): a sequence word (odd while
//! its child is writing, so a reader can tell a torn read and retry), the
//! pid, the state and when it began (`CLOCK_MONOTONIC`, read through the
//! vDSO: no system call), bytes sent and requests served on the
//! connection, the client's address, the site and the request line (cut
//! to fixed lengths). Every child can write the whole mapping, so nothing
//! read from it is trusted: the reader bounds every length, decodes text
//! leniently, gives up on a slot whose sequence never settles, and the
//! parent acts only on slots of children it forked itself (`read`'s pid
//! check). The worst a hostile child can do is lie in the page and the
//! metrics, or mark another child idle so that it is asked to close
//! between two requests.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;

use crate::sys::SharedWords;

/// Words in one child's slot.
pub const SLOT_WORDS: usize = 32;
const SEQ: usize = 0;
const PID: usize = 1;
const STATE: usize = 2;
const SINCE: usize = 3;
const BYTES: usize = 4;
const REQUESTS: usize = 5;
const ADDR: usize = 6;
/// The site's name: words 8..14 (a length byte, then up to 47 bytes).
const SITE: (usize, usize) = (8, 14);
/// The request line: words 14..32 (a length byte, then up to 143 bytes).
const LINE: (usize, usize) = (14, 32);
/// How often a reader retries a slot its child is writing.
const READ_TRIES: usize = 16;

/// What a child is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The TLS handshake.
    Handshake,
    /// Reading a request's head (from the connection's start, or from the
    /// first byte of a later request).
    Reading,
    /// Answering a request, from its parsed head to the last byte sent.
    Sending,
    /// Idle between two requests of a kept-alive connection.
    Idle,
}

impl State {
    /// Every state, in the order pages and metrics list them.
    pub const ALL: [State; 4] = [State::Handshake, State::Reading, State::Sending, State::Idle];

    /// The state's name in the status page and metrics.
    pub fn name(self) -> &'static str {
        match self {
            State::Handshake => "handshake",
            State::Reading => "reading",
            State::Sending => "sending",
            State::Idle => "idle",
        }
    }

    fn word(self) -> u64 {
        match self {
            State::Handshake => 1,
            State::Reading => 2,
            State::Sending => 3,
            State::Idle => 4,
        }
    }

    fn from_word(w: u64) -> Option<State> {
        State::ALL.into_iter().find(|s| s.word() == w)
    }
}

/// The server's counters, each a word of the counters mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Connections accepted.
    Accepted,
    /// Connections answered `503` because their address held its share.
    RefusedPerAddress,
    /// Times the parent stopped accepting at `max_children` with no idle
    /// child to ask to close: new connections waited in the kernel's queue.
    RefusedMaxChildren,
    /// Connections answered `503` because `fork` failed.
    RefusedFork,
    /// Idle connections the parent asked their child to close.
    GivenBack,
    /// Configuration reloads applied.
    Reloads,
    /// Response bytes sent (heads and bodies).
    BytesSent,
    /// TLS handshakes completed.
    TlsHandshakes,
    /// Of those, resumed sessions.
    TlsResumptions,
}

impl Counter {
    fn word(self) -> usize {
        match self {
            Counter::Accepted => 4,
            Counter::RefusedPerAddress => 5,
            Counter::RefusedMaxChildren => 6,
            Counter::RefusedFork => 7,
            Counter::GivenBack => 8,
            Counter::Reloads => 9,
            Counter::BytesSent => 10,
            Counter::TlsHandshakes => 11,
            Counter::TlsResumptions => 12,
        }
    }
}

const START_UNIX: usize = 0;
const START_MONO: usize = 1;
const GENERATION: usize = 2;
const MAX_CHILDREN: usize = 3;
/// Requests by status class: word `REQUESTS_BY_CLASS + c` for `c`xx (1 to 5).
const REQUESTS_BY_CLASS: usize = 16;
/// Child deaths by signal: word `DEATHS + n` for signal `n` (below 64).
const DEATHS: usize = 32;
const COUNTER_WORDS: usize = DEATHS + 64;

/// Nanoseconds of `CLOCK_MONOTONIC` (the vDSO answers: no system call).
pub fn now_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| {
            u64::try_from(t.tv_sec()).unwrap_or(0).saturating_mul(1_000_000_000)
                + u64::try_from(t.tv_nsec()).unwrap_or(0)
        })
        .unwrap_or(0)
}

/// A slot by board and index, as the parent hands them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotId {
    board: u64,
    index: usize,
}

impl SlotId {
    /// The slot as two words for the parent's table of children (the
    /// index stored plus one, so that two zero words mean no slot).
    pub fn to_words(self) -> [u64; 2] {
        [self.board, u64::try_from(self.index).unwrap_or(u64::MAX).wrapping_add(1)]
    }

    /// The slot `to_words` made, or `None` from two zero words.
    pub fn from_words(words: [u64; 2]) -> Option<SlotId> {
        let index = usize::try_from(words[1].checked_sub(1)?).ok()?;
        Some(SlotId { board: words[0], index })
    }
}

#[derive(Debug)]
struct Board {
    id: u64,
    words: SharedWords,
    slots: usize,
    /// Free slot indexes (parent's bookkeeping), lowest last.
    free: Vec<usize>,
}

impl Board {
    fn new(id: u64, slots: usize) -> nix::Result<Board> {
        let words = SharedWords::new(slots.saturating_mul(SLOT_WORDS))?;
        Ok(Board { id, words, slots, free: (0..slots).rev().collect() })
    }

    fn slot(&self, index: usize) -> &[AtomicU64] {
        &self.words.words()[index * SLOT_WORDS..(index + 1) * SLOT_WORDS]
    }

    fn live(&self) -> usize {
        self.slots - self.free.len()
    }
}

/// The counters and the boards: the parent's, and each child's copy.
#[derive(Debug)]
pub struct Scoreboard {
    counters: SharedWords,
    /// Oldest first; the last is the one new children get slots on.
    boards: Vec<Board>,
    next_id: u64,
}

impl Scoreboard {
    /// The counters and a board for `max_children` children. Call in the
    /// parent before the first fork. Returns the `mmap` error.
    pub fn new(max_children: usize) -> nix::Result<Scoreboard> {
        let counters = SharedWords::new(COUNTER_WORDS)?;
        let w = counters.words();
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        w[START_UNIX].store(unix, Ordering::Relaxed);
        w[START_MONO].store(now_ns(), Ordering::Relaxed);
        w[GENERATION].store(1, Ordering::Relaxed);
        w[MAX_CHILDREN].store(max_children as u64, Ordering::Relaxed);
        Ok(Scoreboard { counters, boards: vec![Board::new(0, max_children)?], next_id: 1 })
    }

    /// A reload was applied with `max_children`: the generation goes up, and
    /// a new board is made if the size changed (on failure to map one, the
    /// old board stays, and children beyond its size go without a slot).
    pub fn reloaded(&mut self, max_children: usize) {
        self.count(Counter::Reloads);
        let w = self.counters.words();
        w[GENERATION].fetch_add(1, Ordering::Relaxed);
        w[MAX_CHILDREN].store(max_children as u64, Ordering::Relaxed);
        if self.boards.last().is_some_and(|b| b.slots == max_children) {
            return;
        }
        match Board::new(self.next_id, max_children) {
            Ok(b) => {
                self.next_id += 1;
                self.boards.push(b);
                self.drop_idle_boards();
            }
            Err(e) => log::error!("scoreboard for {max_children} children: {e}; keeping the old one"),
        }
    }

    /// Takes a free slot of the current board for a child about to be
    /// forked to serve `client` (`tls`: starting with a handshake), and
    /// fills it in before the fork, so no reader sees the previous
    /// child's values. `None` when every slot is taken.
    pub fn take(&mut self, client: IpAddr, tls: bool) -> Option<SlotId> {
        let board = self.boards.last_mut()?;
        let index = board.free.pop()?;
        let id = SlotId { board: board.id, index };
        let slot = Slot { words: board.slot(index) };
        slot.write(|w| {
            w[PID].store(0, Ordering::Relaxed);
            w[BYTES].store(0, Ordering::Relaxed);
            w[REQUESTS].store(0, Ordering::Relaxed);
            let v6 = match client {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            let bits = u128::from(v6);
            w[ADDR].store((bits >> 64) as u64, Ordering::Relaxed);
            w[ADDR + 1].store(bits as u64, Ordering::Relaxed);
            put_text(&w[SITE.0..SITE.1], b"");
            put_text(&w[LINE.0..LINE.1], b"");
        });
        slot.set(if tls { State::Handshake } else { State::Reading });
        Some(id)
    }

    /// Records the pid the fork gave the child in `id`.
    pub fn set_pid(&self, id: SlotId, pid: Pid) {
        if let Some(words) = self.words(id) {
            words[PID].store(u64::try_from(pid.as_raw()).unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// Frees `id` (its child has been reaped), and the board it was on if
    /// that is an old one no child uses any more.
    pub fn release(&mut self, id: SlotId) {
        let Some(board) = self.boards.iter_mut().find(|b| b.id == id.board) else { return };
        if id.index >= board.slots || board.free.contains(&id.index) {
            return;
        }
        Slot { words: board.slot(id.index) }.write(|w| {
            w[STATE].store(0, Ordering::Relaxed);
            w[PID].store(0, Ordering::Relaxed);
        });
        board.free.push(id.index);
        self.drop_idle_boards();
    }

    /// Unmaps the old boards with no live child left.
    fn drop_idle_boards(&mut self) {
        let current = self.boards.last().map(|b| b.id);
        self.boards.retain(|b| Some(b.id) == current || b.live() > 0);
    }

    /// The child's writing handle for `id` (`None`: it has no slot).
    pub fn slot(&self, id: Option<SlotId>) -> Option<Slot<'_>> {
        id.and_then(|id| self.words(id)).map(|words| Slot { words })
    }

    fn words(&self, id: SlotId) -> Option<&[AtomicU64]> {
        let board = self.boards.iter().find(|b| b.id == id.board)?;
        (id.index < board.slots).then(|| board.slot(id.index))
    }

    /// What slot `id` says, if its pid is `pid` (the parent checks the
    /// slot against the child it forked there) and it can be read whole.
    pub fn read(&self, id: SlotId, pid: Pid) -> Option<SlotView> {
        let view = read_slot(self.words(id)?)?;
        (i64::from(view.pid) == i64::from(pid.as_raw())).then_some(view)
    }

    /// Every slot in use, on every board, as far as it can be read.
    pub fn slots(&self) -> Vec<SlotView> {
        self.boards
            .iter()
            .flat_map(|b| (0..b.slots).map(move |i| b.slot(i)))
            .filter_map(read_slot)
            .filter(|v| v.pid != 0)
            .collect()
    }

    /// Adds one to `c`.
    pub fn count(&self, c: Counter) {
        self.add(c, 1);
    }

    /// Adds `n` to `c`.
    pub fn add(&self, c: Counter, n: u64) {
        self.counters.words()[c.word()].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a response with status `code`.
    pub fn response(&self, code: u16) {
        let class = usize::from(code / 100);
        if (1..=5).contains(&class) {
            self.counters.words()[REQUESTS_BY_CLASS + class].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a child killed by signal number `sig`.
    pub fn death(&self, sig: i32) {
        if let Some(w) = usize::try_from(sig).ok().and_then(|s| self.counters.words().get(DEATHS + s)) {
            w.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters and gauges as they are now.
    pub fn totals(&self) -> Totals {
        let w = self.counters.words();
        let get = |i: usize| w[i].load(Ordering::Relaxed);
        Totals {
            start_unix: get(START_UNIX),
            uptime_ns: now_ns().saturating_sub(get(START_MONO)),
            generation: get(GENERATION),
            max_children: get(MAX_CHILDREN),
            by_class: std::array::from_fn(|c| get(REQUESTS_BY_CLASS + 1 + c)),
            deaths: (1..64).map(|s| (s as i32, get(DEATHS + s))).filter(|&(_, n)| n > 0).collect(),
            values: COUNTERS.map(|c| (c, get(c.word()))),
        }
    }
}

/// Every counter, in the order the metrics list them.
pub const COUNTERS: [Counter; 9] = [
    Counter::Accepted,
    Counter::RefusedPerAddress,
    Counter::RefusedMaxChildren,
    Counter::RefusedFork,
    Counter::GivenBack,
    Counter::Reloads,
    Counter::BytesSent,
    Counter::TlsHandshakes,
    Counter::TlsResumptions,
];

/// A snapshot of the counters.
#[derive(Debug)]
pub struct Totals {
    /// When the server started, in seconds since the epoch.
    pub start_unix: u64,
    /// Nanoseconds since the server started.
    pub uptime_ns: u64,
    /// The generation in force: 1 at start, one more per reload.
    pub generation: u64,
    /// `max_children` in force.
    pub max_children: u64,
    /// Requests answered with 1xx to 5xx.
    pub by_class: [u64; 5],
    /// Children killed by each signal (number, count), those with a count.
    pub deaths: Vec<(i32, u64)>,
    values: [(Counter, u64); 9],
}

impl Totals {
    /// The value of `c`.
    pub fn get(&self, c: Counter) -> u64 {
        self.values.iter().find(|(k, _)| *k == c).map_or(0, |(_, v)| *v)
    }
}

/// One slot, as read.
#[derive(Clone, Debug)]
pub struct SlotView {
    /// The child's pid, as the parent wrote it.
    pub pid: u32,
    /// Its state (`None`: a value no child writes).
    pub state: Option<State>,
    /// When that state began, in `now_ns` nanoseconds.
    pub since_ns: u64,
    /// Bytes sent on the connection.
    pub bytes: u64,
    /// Requests answered on the connection.
    pub requests: u64,
    /// The client's address.
    pub client: IpAddr,
    /// The site of the last request (lossily decoded).
    pub site: String,
    /// The last request line, cut (lossily decoded, control characters
    /// replaced).
    pub request_line: String,
}

/// Reads a slot whole, or `None` when it is free or its sequence never
/// settles (a child writing it, or one writing garbage).
fn read_slot(w: &[AtomicU64]) -> Option<SlotView> {
    for _ in 0..READ_TRIES {
        let seq = w[SEQ].load(Ordering::Acquire);
        if seq % 2 == 1 {
            std::hint::spin_loop();
            continue;
        }
        let state_word = w[STATE].load(Ordering::Relaxed);
        let hi = u128::from(w[ADDR].load(Ordering::Relaxed));
        let lo = u128::from(w[ADDR + 1].load(Ordering::Relaxed));
        let view = SlotView {
            pid: u32::try_from(w[PID].load(Ordering::Relaxed)).unwrap_or(0),
            state: State::from_word(state_word),
            since_ns: w[SINCE].load(Ordering::Relaxed),
            bytes: w[BYTES].load(Ordering::Relaxed),
            requests: w[REQUESTS].load(Ordering::Relaxed),
            client: Ipv6Addr::from(hi << 64 | lo).to_canonical(),
            site: get_text(&w[SITE.0..SITE.1]),
            request_line: get_text(&w[LINE.0..LINE.1]),
        };
        fence(Ordering::Acquire);
        if w[SEQ].load(Ordering::Relaxed) != seq {
            continue;
        }
        return (state_word != 0).then_some(view);
    }
    None
}

/// Writes `text` (cut to what fits) into `words`: a length byte, then the bytes.
fn put_text(words: &[AtomicU64], text: &[u8]) {
    let room = words.len() * 8 - 1;
    let text = &text[..text.len().min(room)];
    let byte = |i: usize| if i == 0 { text.len() as u8 } else { text.get(i - 1).copied().unwrap_or(0) };
    for (k, w) in words.iter().enumerate() {
        let mut b = [0u8; 8];
        for (j, x) in b.iter_mut().enumerate() {
            *x = byte(k * 8 + j);
        }
        w.store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
}

/// Reads what `put_text` wrote, whatever a child left there: the length is
/// bounded, invalid UTF-8 replaced, control characters shown as `?`.
fn get_text(words: &[AtomicU64]) -> String {
    let mut bytes = Vec::with_capacity(words.len() * 8);
    for w in words {
        bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    let len = usize::from(bytes[0]).min(bytes.len() - 1);
    String::from_utf8_lossy(&bytes[1..=len]).chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// A child's writing handle on its own slot. Each change is one write
/// section: the sequence word odd, the values, the sequence even again.
#[derive(Clone, Copy, Debug)]
pub struct Slot<'a> {
    words: &'a [AtomicU64],
}

impl Slot<'_> {
    fn write(&self, f: impl FnOnce(&[AtomicU64])) {
        let w = self.words;
        w[SEQ].fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        f(w);
        w[SEQ].fetch_add(1, Ordering::Release);
    }

    /// The child is now in `state`, from now.
    pub fn set(&self, state: State) {
        let now = now_ns();
        self.write(|w| {
            w[STATE].store(state.word(), Ordering::Relaxed);
            w[SINCE].store(now, Ordering::Relaxed);
        });
    }

    /// The child is answering a request with `request_line`.
    pub fn sending(&self, request_line: &[u8]) {
        let now = now_ns();
        self.write(|w| {
            w[STATE].store(State::Sending.word(), Ordering::Relaxed);
            w[SINCE].store(now, Ordering::Relaxed);
            put_text(&w[LINE.0..LINE.1], request_line);
        });
    }

    /// The request is for the site named `site`.
    pub fn site(&self, site: &str) {
        self.write(|w| put_text(&w[SITE.0..SITE.1], site.as_bytes()));
    }

    /// A response is done: `bytes` sent on the connection so far. With
    /// `idle`, the connection stays open and the child is idle until the
    /// next request; without, it is closing, and stays `Sending` until it
    /// exits (so it is neither shown nor asked to close as an idle one).
    pub fn answered(&self, bytes: u64, idle: bool) {
        let now = now_ns();
        self.write(|w| {
            if idle {
                w[STATE].store(State::Idle.word(), Ordering::Relaxed);
                w[SINCE].store(now, Ordering::Relaxed);
            }
            w[BYTES].store(bytes, Ordering::Relaxed);
            w[REQUESTS].fetch_add(1, Ordering::Relaxed);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_reads_back_what_its_child_wrote() {
        let mut board = Scoreboard::new(2).unwrap();
        let id = board.take("192.0.2.7".parse().unwrap(), false).unwrap();
        board.set_pid(id, Pid::from_raw(4242));
        let slot = board.slot(Some(id)).unwrap();
        slot.sending(b"GET /\x01caf\xc3\xa9 HTTP/1.1");
        slot.site("example");
        slot.answered(1234, true);
        let v = board.read(id, Pid::from_raw(4242)).unwrap();
        assert_eq!(v.state, Some(State::Idle));
        assert_eq!((v.bytes, v.requests), (1234, 1));
        assert_eq!(v.client, "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!((v.site.as_str(), v.request_line.as_str()), ("example", "GET /?café HTTP/1.1"));
        assert!(board.read(id, Pid::from_raw(4243)).is_none(), "another pid's slot");
        board.release(id);
        assert!(board.slots().is_empty());
    }

    #[test]
    fn text_is_cut_and_a_hostile_length_is_bounded() {
        let board = Scoreboard::new(1).unwrap();
        let w = board.boards[0].slot(0);
        put_text(&w[LINE.0..LINE.1], &[b'a'; 500]);
        assert_eq!(get_text(&w[LINE.0..LINE.1]).len(), (LINE.1 - LINE.0) * 8 - 1);
        w[SITE.0].store(u64::MAX, Ordering::Relaxed);
        assert_eq!(get_text(&w[SITE.0..SITE.1]).chars().count(), (SITE.1 - SITE.0) * 8 - 1);
    }

    #[test]
    fn a_slot_whose_sequence_never_settles_is_not_read() {
        let mut board = Scoreboard::new(1).unwrap();
        let id = board.take("::1".parse().unwrap(), true).unwrap();
        board.set_pid(id, Pid::from_raw(7));
        assert_eq!(board.read(id, Pid::from_raw(7)).unwrap().state, Some(State::Handshake));
        board.boards[0].slot(0)[SEQ].store(1, Ordering::Relaxed);
        assert!(board.read(id, Pid::from_raw(7)).is_none());
    }

    #[test]
    fn a_reload_that_changes_the_size_keeps_the_old_board_for_its_children() {
        let mut board = Scoreboard::new(1).unwrap();
        let old = board.take("::1".parse().unwrap(), false).unwrap();
        assert!(board.take("::1".parse().unwrap(), false).is_none(), "one slot only");
        board.reloaded(3);
        assert_eq!(board.boards.len(), 2);
        let new = board.take("::1".parse().unwrap(), false).unwrap();
        board.release(old);
        assert_eq!(board.boards.len(), 1, "the old board goes with its last child");
        assert!(board.slot(Some(new)).is_some());
        assert_eq!(board.totals().generation, 2);
        assert_eq!(board.totals().get(Counter::Reloads), 1);
    }
}
