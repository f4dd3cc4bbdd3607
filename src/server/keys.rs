//! The accept loop's side of the key processes (`tls::keys`): keys
//! handed over at start and on each reload, a channel to one of them for
//! each HTTPS child, and a key process that died started again with the
//! keys read anew.
//!
//! Runs in: parent only.

use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::error::StartupError;
use crate::generation::Generation;
use crate::listener::Wire;
use crate::privileges::DropPlan;
use crate::tls::keys::{self, KeyProcesses, Launch};

use super::Server;

/// How `generation` starts its key processes, and how many. Counting
/// reads the CPU affinity and cgroup files: at start and on a hand-over,
/// never on every round of the accept loop.
fn launch(generation: &Generation) -> Launch<'_> {
    Launch {
        plan: generation.drop_plan.as_ref(),
        sandbox: generation.sandbox.is_some(),
        count: keys::count(generation.config.tls_key_processes),
    }
}

/// Gives `generation`'s private keys to the key processes (started, as
/// many as it asks for, where they are not running), when they are to be
/// there.
pub(super) fn hand_over(keys: &mut KeyProcesses, generation: &mut Generation) -> Result<(), StartupError> {
    let Some(mut tls) = generation.tls.take() else {
        return Ok(());
    };
    let handed = tls.hand_over(keys, launch(generation));
    generation.tls = Some(tls);
    handed
}

impl Server {
    /// `hand_over` for a generation a reload built.
    pub(super) fn hand_keys_over(&mut self, generation: &mut Generation) -> Result<(), StartupError> {
        hand_over(&mut self.keys, generation)
    }

    /// Tells the key processes that the generation in force serves from
    /// now on, so that they can forget the keys of older ones once their
    /// children are gone.
    pub(super) fn commit_keys(&self) {
        if let Some(g) = self.generation.tls.as_ref().and_then(|t| t.key_generation) {
            self.keys.commit(g);
        }
    }

    /// The channel to a key process for a child about to serve a
    /// connection on `wire`: HTTPS connections only, when the keys are
    /// in the key processes.
    pub(super) fn key_channel(&mut self, wire: Wire) -> Option<OwnedFd> {
        if !wire.tls {
            return None;
        }
        let generation = self.generation.tls.as_ref()?.key_generation?;
        self.keys.channel(generation)
    }

    /// Starts again each key process that died and whose restart is due;
    /// then, if a running key process does not hold the current
    /// generation's keys (it was started since they were handed over:
    /// after a death, or by a reload that then failed), reads the key
    /// files again and hands them to it, leaving the others as they are.
    /// The keys of older generations are gone with the process that died
    /// (their children's handshakes on it fail), and a key file that no
    /// longer matches its certificate is left out, logged once, until
    /// the reload that serves the new pair.
    pub(super) fn restart_key_process(&mut self, now: Instant) {
        let (plan, sandbox) = (self.generation.drop_plan.as_ref(), self.generation.sandbox.is_some());
        self.keys.restart_due_ones(now, plan, sandbox);
        let Some(tls) = self.generation.tls.as_mut() else {
            return;
        };
        if !tls.keys_remote()
            || self.keys.pids().next().is_none()
            || tls.key_generation.is_some_and(|g| self.keys.all_hold(g))
        {
            return;
        }
        let guard = DropPlan::guard(self.generation.drop_plan.as_ref());
        let handed = tls.reread_keys(guard).and_then(|()| hand_over(&mut self.keys, &mut self.generation));
        self.commit_keys();
        self.spawner_stale = true;
        match handed {
            Ok(()) => log::info!("key processes {}: HTTPS handshakes are signed by each", self.pid_list()),
            Err(e) => log::error!("key process restarted without a key: {e}"),
        }
    }

    /// The running key processes' pids, for a message.
    fn pid_list(&self) -> String {
        self.keys.pids().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
    }
}
