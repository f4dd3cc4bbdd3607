//! Idle keep-alive given back under pressure: an idle keep-alive
//! connection holds a whole child, so when the live children reach
//! `keepalive_give_back_from_percent` of `max_children`, the parent asks
//! the child idle longest between requests to close its connection, and
//! the slot it frees serves a new client instead of leaving it queued.
//!
//! Runs in: parent only. The ask is `GIVE_BACK_SIGNAL`; the child has it
//! blocked except while it waits for the first byte of a request (see
//! `stream::Client::read_with`), so it ends that wait and closes between
//! two requests, as RFC 9112 9.6 allows, and never cuts a response: a
//! child that began a request since its slot said idle finishes it and
//! closes at its next wait. The scoreboard says which children are idle;
//! since any child could write there, the parent reads only the slots of
//! children it forked, checked by pid, and signals only its own unreaped
//! children (whose pids cannot have been reused).

use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::scoreboard::{Counter, State};
use crate::signals::GIVE_BACK_SIGNAL;

use super::Server;

impl Server {
    /// Whether giving back is on (`keepalive_give_back_from_percent` is
    /// not 0), no child asked already is still to exit, and a child is
    /// idle: then, at `max_children`, the listeners are still watched, and
    /// a client waiting makes the parent ask one to close.
    pub(super) fn may_give_back(&self) -> bool {
        self.config().limits.give_back_from > 0 && self.asked == 0 && self.longest_idle().is_some()
    }

    /// Whether the live children not yet asked to close reach
    /// `keepalive_give_back_from_percent` of `max_children`.
    pub(super) fn under_pressure(&self) -> bool {
        let from = self.config().limits.give_back_from;
        from > 0 && self.children.len().saturating_sub(self.asked) >= from
    }

    /// Asks the child idle longest to close its connection, if there is one.
    pub(super) fn give_back(&mut self) {
        let Some(pid) = self.longest_idle() else { return };
        match kill(pid, GIVE_BACK_SIGNAL) {
            Ok(()) => {
                if self.children.mark_asked(pid) {
                    self.asked += 1;
                }
                self.scoreboard.count(Counter::GivenBack);
                log::debug!("asked child {pid}, idle longest, to give its connection back");
            }
            Err(e) => log::warn!("kill {pid} {GIVE_BACK_SIGNAL}: {e}"),
        }
    }

    /// The child, not asked yet, whose slot says it has been idle between
    /// requests the longest.
    fn longest_idle(&self) -> Option<Pid> {
        self.children
            .iter()
            .filter(|(_, c)| !c.asked)
            .filter_map(|(pid, c)| Some((pid, self.scoreboard.read(c.slot?, pid)?)))
            .filter(|(_, v)| v.state == Some(State::Idle))
            .min_by_key(|(_, v)| v.since_ns)
            .map(|(pid, _)| pid)
    }
}
