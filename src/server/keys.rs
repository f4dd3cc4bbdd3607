//! The accept loop's side of the key process (`tls::keys`): keys handed
//! over at start and on each reload, a channel for each HTTPS child, and
//! a key process that died started again with the keys read anew.
//!
//! Runs in: parent only.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::error::StartupError;
use crate::generation::Generation;
use crate::listener::Wire;
use crate::privileges::DropPlan;
use crate::tls::keys::KeyProcess;

use super::Server;

/// How long after a failed start of the key process it is tried again.
const START_RETRY: Duration = Duration::from_secs(1);

/// Gives `generation`'s private keys to the key process (started if it
/// is not running), when they are to be there.
pub(super) fn hand_over(keys: &mut KeyProcess, generation: &mut Generation) -> Result<(), StartupError> {
    let sandbox = generation.sandbox.is_some();
    match generation.tls.as_mut() {
        Some(tls) => tls.hand_over(keys, generation.drop_plan.as_ref(), sandbox),
        None => Ok(()),
    }
}

impl Server {
    /// `hand_over` for a generation a reload built.
    pub(super) fn hand_keys_over(&mut self, generation: &mut Generation) -> Result<(), StartupError> {
        hand_over(&mut self.keys, generation)
    }

    /// Tells the key process that the generation in force serves from now
    /// on, so that it can forget the keys of older ones once their
    /// children are gone.
    pub(super) fn commit_keys(&self) {
        if let Some(g) = self.generation.tls.as_ref().and_then(|t| t.key_generation) {
            self.keys.commit(g);
        }
    }

    /// The channel to the key process for a child about to serve a
    /// connection on `wire`: HTTPS connections only, when the keys are
    /// in the key process.
    pub(super) fn key_channel(&self, wire: Wire) -> Option<OwnedFd> {
        if !wire.tls {
            return None;
        }
        let generation = self.generation.tls.as_ref()?.key_generation?;
        self.keys.channel(generation)
    }

    /// Starts the key process again if it died and its restart is due;
    /// then, if the running key process does not hold the current
    /// generation's keys (it was started since they were handed over:
    /// after a death, or by a reload that then failed), reads the key
    /// files again and hands them over. The keys of older generations
    /// are gone with the process that died (their children's handshakes
    /// fail), and a key file that no longer matches its certificate is
    /// left out, logged once, until the reload that serves the new pair.
    pub(super) fn restart_key_process(&mut self, now: Instant) {
        if self.keys.restart_due().is_some_and(|due| due <= now) {
            let sandbox = self.generation.sandbox.is_some();
            if let Err(e) = self.keys.ensure_started(self.generation.drop_plan.as_ref(), sandbox) {
                log::error!("{e}; trying again in {START_RETRY:?}");
                self.keys.retry_at(now + START_RETRY);
                return;
            }
        }
        let Some(tls) = self.generation.tls.as_mut() else {
            return;
        };
        if !tls.keys_remote()
            || self.keys.pid().is_none()
            || tls.key_generation.is_some_and(|g| self.keys.holds(g))
        {
            return;
        }
        let guard = DropPlan::guard(self.generation.drop_plan.as_ref());
        let handed = tls.reread_keys(guard).and_then(|()| hand_over(&mut self.keys, &mut self.generation));
        self.commit_keys();
        self.spawner_stale = true;
        match handed {
            Ok(()) => log::info!(
                "key process {}: HTTPS handshakes are signed again",
                self.keys.pid().map_or(0, |p| p.as_raw())
            ),
            Err(e) => log::error!("key process restarted without a key: {e}"),
        }
    }
}
