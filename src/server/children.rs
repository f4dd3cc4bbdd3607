//! The parent's table of its live children: each child's pid, the address
//! it serves, its scoreboard slot and whether it was asked to give its
//! connection back; and how many children serve each address.
//!
//! Runs in: parent only. Both tables live in memory that children get
//! zeroed instead of shared (`sys::ParentWords`): the parent writes them
//! after every fork and every exit, and in its heap each of those writes
//! would copy a page into every child forked before it (during a burst of
//! 500 connections, most pages of both tables into most children). A
//! child never reads them.
//!
//! Each table is open addressing with linear probing, kept at most half
//! full; a removal shifts the entries after it back (no tombstones). The
//! hash is std's keyed SipHash, so that clients choosing their addresses
//! cannot line them up in one probe sequence. Room is made before a fork
//! (`reserve`), so recording a child never fails once it exists.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;

use nix::unistd::Pid;

use crate::scoreboard::SlotId;
use crate::sys::ParentWords;

/// Words per slot: a tag word (0: empty), the 128 bits of an address, and
/// (a child's; zero in the per-address table) its scoreboard slot's two
/// words, the second also holding `ASKED`.
const WORDS: usize = 5;
/// Slots in the first table made; each growth doubles them.
const FIRST_SLOTS: usize = 64;
/// Set in the tag word of every occupied slot.
const OCCUPIED: u64 = 1 << 63;
/// Set in the tag word when the address is IPv6.
const V6: u64 = 1 << 62;
/// The low half of the tag word: a pid, or a count.
const LOW: u64 = u32::MAX as u64;
/// Set in a child's last word once it was asked to give its connection back.
const ASKED: u64 = 1 << 63;

type Slot = [u64; WORDS];

/// What the parent knows of a live child.
#[derive(Clone, Copy, Debug)]
pub(super) struct Child {
    /// Its scoreboard slot (`None` if there was none free).
    pub(super) slot: Option<SlotId>,
    /// Asked to give its idle connection back.
    pub(super) asked: bool,
}

/// The live children and the count per address.
#[derive(Debug)]
pub(super) struct Children {
    /// Slot: tag (`OCCUPIED`, `V6`, the pid in `LOW`), address, scoreboard
    /// slot (and `ASKED`).
    by_pid: Table,
    /// Slot: tag (`OCCUPIED`, `V6`, the count in `LOW`), address.
    per_ip: Table,
}

impl Default for Children {
    fn default() -> Children {
        Children { by_pid: Table::new(pid_hash), per_ip: Table::new(address_hash) }
    }
}

impl Children {
    /// How many children are live.
    pub(super) fn len(&self) -> usize {
        self.by_pid.len
    }

    /// Whether no child is live.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for `more` children, so that `insert` after the fork
    /// cannot fail. Returns the `mmap` error when the tables cannot grow.
    pub(super) fn reserve(&mut self, more: usize) -> nix::Result<()> {
        self.by_pid.reserve(more)?;
        self.per_ip.reserve(more)
    }

    /// Records the child `pid`, serving `ip` from scoreboard slot `slot`.
    /// Call `reserve` first.
    pub(super) fn insert(&mut self, pid: Pid, ip: IpAddr, slot: Option<SlotId>) {
        let [board, index] = slot.map_or([0, 0], SlotId::to_words);
        let entry =
            [OCCUPIED | address_family(ip) | pid_bits(pid), address_hi(ip), address_lo(ip), board, index];
        if let (i, false) = self.by_pid.find(&entry, same_pid) {
            self.by_pid.fill(i, entry);
        }
        match self.per_ip.find(&entry, same_address) {
            (i, true) => self.per_ip.add(i, 1),
            (i, false) => self.per_ip.fill(i, [OCCUPIED | address_family(ip) | 1, entry[1], entry[2], 0, 0]),
        }
    }

    /// Forgets the child `pid`; returns what was recorded of it, if it was.
    pub(super) fn remove(&mut self, pid: Pid) -> Option<Child> {
        let probe = [OCCUPIED | pid_bits(pid), 0, 0, 0, 0];
        let (i, true) = self.by_pid.find(&probe, same_pid) else {
            return None;
        };
        let entry = self.by_pid.slot(i);
        self.by_pid.take(i);
        if let (j, true) = self.per_ip.find(&entry, same_address) {
            if self.per_ip.slot(j)[0] & LOW > 1 {
                self.per_ip.add(j, -1);
            } else {
                self.per_ip.take(j);
            }
        }
        Some(child_of(&entry))
    }

    /// Marks the child `pid` as asked to give its connection back; returns
    /// whether it is live and was not asked before.
    pub(super) fn mark_asked(&mut self, pid: Pid) -> bool {
        let probe = [OCCUPIED | pid_bits(pid), 0, 0, 0, 0];
        let (i, true) = self.by_pid.find(&probe, same_pid) else {
            return false;
        };
        let mut entry = self.by_pid.slot(i);
        if entry[4] & ASKED != 0 {
            return false;
        }
        entry[4] |= ASKED;
        self.by_pid.write(i, entry);
        true
    }

    /// The live children, with what is recorded of each.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Pid, Child)> + '_ {
        (0..self.by_pid.slots())
            .map(|i| self.by_pid.slot(i))
            .filter(|entry| entry[0] & OCCUPIED != 0)
            .map(|entry| (pid_of(&entry), child_of(&entry)))
    }

    /// How many live children serve `ip`.
    pub(super) fn count_from(&self, ip: IpAddr) -> usize {
        let probe = [OCCUPIED | address_family(ip), address_hi(ip), address_lo(ip), 0, 0];
        match self.per_ip.find(&probe, same_address) {
            (i, true) => usize::try_from(self.per_ip.slot(i)[0] & LOW).unwrap_or(usize::MAX),
            _ => 0,
        }
    }

    /// The pids of the live children.
    pub(super) fn pids(&self) -> Vec<Pid> {
        self.iter().map(|(pid, _)| pid).collect()
    }

    /// Forgets every child.
    pub(super) fn clear(&mut self) {
        *self = Children::default();
    }
}

/// One open-addressing table of `WORDS`-word slots.
#[derive(Debug)]
struct Table {
    /// `None` until the first `reserve`.
    words: Option<ParentWords>,
    /// Occupied slots.
    len: usize,
    /// The key of the address hash.
    seed: RandomState,
    /// An entry's hash.
    hash: fn(&RandomState, &Slot) -> u64,
}

impl Table {
    fn new(hash: fn(&RandomState, &Slot) -> u64) -> Table {
        Table { words: None, len: 0, seed: RandomState::new(), hash }
    }

    fn slots(&self) -> usize {
        self.words.as_ref().map_or(0, |w| w.len() / WORDS)
    }

    fn slot(&self, i: usize) -> Slot {
        let w = self.words.as_deref().unwrap_or_default();
        let mut slot = [0; WORDS];
        slot.copy_from_slice(&w[i * WORDS..(i + 1) * WORDS]);
        slot
    }

    fn write(&mut self, i: usize, slot: Slot) {
        if let Some(w) = self.words.as_deref_mut() {
            w[i * WORDS..(i + 1) * WORDS].copy_from_slice(&slot);
        }
    }

    /// Puts `slot` in the empty slot `i`.
    fn fill(&mut self, i: usize, slot: Slot) {
        self.write(i, slot);
        self.len += 1;
    }

    /// Adds `n` to the count in slot `i`.
    fn add(&mut self, i: usize, n: i32) {
        let mut slot = self.slot(i);
        slot[0] = (slot[0] & !LOW) | (slot[0] & LOW).wrapping_add_signed(i64::from(n)) & LOW;
        self.write(i, slot);
    }

    fn home(&self, slot: &Slot) -> usize {
        // Truncation keeps the low bits, which the mask takes anyway.
        (self.hash)(&self.seed, slot) as usize & (self.slots() - 1)
    }

    /// The slot holding the entry that `same` says matches `key`, and
    /// `true`; or the empty slot where `key` belongs, and `false` (slot 0
    /// of a table with no slots). Ends: the table is never full.
    fn find(&self, key: &Slot, same: fn(&Slot, &Slot) -> bool) -> (usize, bool) {
        let n = self.slots();
        if n == 0 {
            return (0, false);
        }
        let mut i = self.home(key);
        loop {
            let s = self.slot(i);
            if s[0] == 0 {
                return (i, false);
            }
            if same(&s, key) {
                return (i, true);
            }
            i = (i + 1) & (n - 1);
        }
    }

    /// Empties slot `i`, moving back each entry after it that a probe
    /// from its home slot would no longer reach.
    fn take(&mut self, mut i: usize) {
        let n = self.slots();
        let mut j = i;
        loop {
            j = (j + 1) & (n - 1);
            let s = self.slot(j);
            if s[0] == 0 {
                break;
            }
            let home = self.home(&s);
            // Whether `home` lies cyclically in (i, j]: then `s` stays.
            let stays = if i <= j { i < home && home <= j } else { i < home || home <= j };
            if !stays {
                self.write(i, s);
                i = j;
            }
        }
        self.write(i, [0; WORDS]);
        self.len -= 1;
    }

    /// Grows the table (doubling it, or to `FIRST_SLOTS`, until it is
    /// enough) if `more` entries would fill it past half.
    fn reserve(&mut self, more: usize) -> nix::Result<()> {
        let n = self.slots();
        if (self.len + more) * 2 <= n {
            return Ok(());
        }
        let mut bigger = (n * 2).max(FIRST_SLOTS);
        while (self.len + more) * 2 > bigger {
            bigger *= 2;
        }
        let mut grown = Table {
            words: Some(ParentWords::new(bigger * WORDS)?),
            len: 0,
            seed: self.seed.clone(),
            hash: self.hash,
        };
        for i in 0..n {
            let s = self.slot(i);
            if s[0] != 0 {
                let (at, _) = grown.find(&s, |_, _| false);
                grown.fill(at, s);
            }
        }
        *self = grown;
        Ok(())
    }
}

fn pid_bits(pid: Pid) -> u64 {
    u64::from(pid.as_raw().cast_unsigned())
}

/// Pids are the kernel's, not the clients': a multiplicative hash spreads
/// consecutive ones (its high half holds the mixed bits).
fn pid_hash(_: &RandomState, slot: &Slot) -> u64 {
    (slot[0] & LOW).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32
}

/// Addresses are the clients' own choice: std's keyed SipHash, so that
/// no client can line them up in one probe sequence.
fn address_hash(seed: &RandomState, slot: &Slot) -> u64 {
    seed.hash_one((slot[0] & V6, slot[1], slot[2]))
}

fn same_pid(a: &Slot, b: &Slot) -> bool {
    a[0] & LOW == b[0] & LOW
}

fn same_address(a: &Slot, b: &Slot) -> bool {
    a[0] & V6 == b[0] & V6 && a[1] == b[1] && a[2] == b[2]
}

fn address_family(ip: IpAddr) -> u64 {
    if ip.is_ipv6() { V6 } else { 0 }
}

fn address_hi(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(_) => 0,
        IpAddr::V6(a) => (u128::from(a) >> 64) as u64,
    }
}

fn address_lo(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        // The low 64 bits, by truncation.
        IpAddr::V6(a) => u128::from(a) as u64,
    }
}

fn pid_of(slot: &Slot) -> Pid {
    Pid::from_raw(((slot[0] & LOW) as u32).cast_signed())
}

fn child_of(slot: &Slot) -> Child {
    let slot_id = SlotId::from_words([slot[3], slot[4] & !ASKED]);
    Child { slot: slot_id, asked: slot[4] & ASKED != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Against std's maps, through growth and removals that shift entries
    /// back: the same children, the same counts.
    #[test]
    fn agrees_with_hash_maps() {
        let mut t = Children::default();
        let mut pids: HashMap<Pid, IpAddr> = HashMap::new();
        let ips: Vec<IpAddr> = vec![
            "127.0.0.1".parse().unwrap(),
            "10.0.0.7".parse().unwrap(),
            "::1".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
            "::ffff:127.0.0.1".parse().unwrap(),
        ];
        let mut x: u32 = 12345;
        for round in 0..4000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let pid = Pid::from_raw(i32::try_from(x % 700 + 2).unwrap());
            if pids.contains_key(&pid) || (round % 3 == 0 && !pids.is_empty()) {
                let gone = *pids.keys().nth(x as usize % pids.len()).unwrap();
                assert!(t.remove(gone).is_some() && pids.remove(&gone).is_some());
            } else {
                let ip = ips[(x >> 8) as usize % ips.len()];
                t.reserve(1).unwrap();
                t.insert(pid, ip, None);
                pids.insert(pid, ip);
            }
            assert_eq!(t.len(), pids.len());
            for ip in &ips {
                assert_eq!(t.count_from(*ip), pids.values().filter(|v| *v == ip).count(), "{ip}");
            }
        }
        let mut live = t.pids();
        live.sort();
        let mut want: Vec<Pid> = pids.keys().copied().collect();
        want.sort();
        assert_eq!(live, want);
        assert!(t.remove(Pid::from_raw(1)).is_none());
        // Asked once only, and the mark leaves the rest of the entry be.
        let some = live[0];
        assert!(t.mark_asked(some) && !t.mark_asked(some));
        let child = t.iter().find(|(pid, _)| *pid == some).unwrap().1;
        assert!(child.asked && child.slot.is_none());
        assert!(!t.mark_asked(Pid::from_raw(1)));
        t.clear();
        assert!(t.is_empty() && t.pids().is_empty());
    }
}
