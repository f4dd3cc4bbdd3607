//! Reloading: `SIGHUP` builds a new generation and, if it is whole,
//! swaps it in for the connections accepted from then on, rebinding the
//! listeners where the list changed; `SIGUSR1` (and every reload)
//! reopens the log files.
//!
//! Runs in: parent only, from the accept loop.

use std::io;

use crate::config::{Config, ErrorLogTarget};
use crate::error::StartupError;
use crate::generation::{Generation, Purpose};
use crate::listener::{self, Listener};
use crate::log::{self as logging, AccessLog};
use crate::scoreboard::Counter;

use super::{ACCEPT_BATCH, Server, skip_accept_error};

impl Server {
    /// `SIGHUP`: reads the config again. A bad config is logged and the
    /// old one stays. A good one applies to connections accepted from now
    /// on (existing children keep the one they were forked with): new sites and roots,
    /// limits and timeouts, listeners rebound where the list changed. Log
    /// files are reopened either way.
    pub(super) fn reload(&mut self) {
        self.notify("RELOADING=1");
        let source = self.config().source.clone();
        log::info!(
            "reloading configuration from {}",
            source.as_deref().map_or("built-in defaults".into(), |p| p.display().to_string())
        );
        self.watch.restamp();
        let built =
            Generation::build(source.as_deref(), &self.overrides, Some(&self.generation), Purpose::Serve);
        let status = match self.apply_reload(built) {
            Ok(None) => {
                log::info!("configuration reloaded; listeners from systemd kept");
                "STATUS=serving; configuration reloaded"
            }
            Ok(Some(c)) if c.failed.is_empty() => {
                log::info!("configuration reloaded; {c}");
                "STATUS=serving; configuration reloaded"
            }
            Ok(Some(c)) => {
                log::warn!(
                    "configuration reloaded, but {} listen address(es) could not be bound; {c}",
                    c.failed.len()
                );
                "STATUS=serving; configuration reloaded, some listen addresses not bound (see the log)"
            }
            Err(e) => {
                log::error!("reload failed: {e}; keeping the previous configuration");
                "STATUS=serving the previous configuration: reload failed (see the log)"
            }
        };
        self.reopen_logs();
        self.watch.follow(&self.generation);
        let status = self.watch.status(status, &self.generation);
        self.notify(&format!("READY=1\n{status}"));
    }

    /// Applies a built generation; returns what changed in the listeners
    /// (`None` when they come from systemd and are kept as they are).
    fn apply_reload(
        &mut self,
        built: Result<Generation, StartupError>,
    ) -> Result<Option<listener::Changes>, StartupError> {
        let mut generation = built?;
        self.hand_keys_over(&mut generation)?;
        let config = &generation.config;
        let access_log = AccessLog::open(&config.logging.access_log, generation.guard())?;
        let changes = if self.socket_activated {
            listener::require_trusted(self.listeners.iter().any(|l| l.wire.proxy), &config.proxy.trusted)?;
            listener::require_certificate(
                self.listeners.iter().any(|l| l.wire.tls),
                generation.tls.is_some(),
            )?;
            if config.listeners != self.config().listeners {
                log::warn!(
                    "listen addresses come from systemd socket activation; the changed list is ignored"
                );
            }
            None
        } else {
            Some(self.rebind(config))
        };
        warn_restart_needed(self.config(), config);
        self.scoreboard.reloaded(generation.config.limits.max_children);
        self.generation = generation;
        self.access_log = access_log;
        self.commit_keys();
        Ok(changes)
    }

    /// Makes the listeners match `config.listeners` (see `listener::rebind`);
    /// what is queued on a listener that goes is handed over first.
    fn rebind(&mut self, config: &Config) -> listener::Changes {
        let old = std::mem::take(&mut self.listeners);
        let (new, changes) =
            listener::rebind(old, &config.listeners, config.backlog, &mut |l| self.hand_over(l));
        self.listeners = new;
        changes
    }

    /// Accepts every connection queued on `l`, a listener a reload
    /// removes, before it closes (closing would reset them): each is served
    /// under the configuration in force when it connected, or answered
    /// `503` at `max_children`. Returns how many there were.
    fn hand_over(&mut self, l: Listener) -> usize {
        let mut accepted = 0;
        // The kernel queues at most `backlog` connections; a few more may
        // arrive meanwhile, but not without bound.
        let most = usize::try_from(self.config().backlog).unwrap_or(0) + ACCEPT_BATCH;
        for _ in 0..most {
            match l.accept() {
                Ok((stream, peer)) => {
                    accepted += 1;
                    if self.live() < self.config().limits.max_children && self.paused_until.is_none() {
                        self.spawn(stream, peer, l.wire);
                    } else {
                        self.scoreboard.count(Counter::RefusedMaxChildren);
                        self.refuse(stream, peer, l.wire);
                    }
                }
                Err(e) if skip_accept_error(&e) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::error!("accept on {} while closing it: {e}", l.addr);
                    break;
                }
            }
        }
        self.settle();
        accepted
    }

    /// `SIGUSR1` (and every reload): reopens the access log (and an
    /// `error_log` file) by its path, so that after logrotate renames the
    /// file new lines go to a new one. On failure the old file stays in use.
    pub(super) fn reopen_logs(&mut self) {
        let guard = self.generation.guard();
        logging::reopen_error_log(&self.config().logging.error_log, guard);
        // Children inherit the log descriptors (and, after a reload, the
        // generation) from the spawner: a new one forks them from now on.
        self.spawner_stale = true;
        match AccessLog::open(&self.config().logging.access_log, guard) {
            Ok(log) => {
                self.access_log = log;
                log::info!("reopened log files");
            }
            Err(e) => log::error!("{e}; still writing to the previous access log"),
        }
    }
}

/// Warns, naming the key, about each change from `old` to `new` that a
/// reload does not apply: the pid file stays where it was written, and
/// daemon messages keep their target (a reload only reopens an `error_log`
/// file, by its new path). A restart applies them.
fn warn_restart_needed(old: &Config, new: &Config) {
    if new.pid_file != old.pid_file {
        let name =
            |p: &Option<std::path::PathBuf>| p.as_ref().map_or("none".into(), |p| p.display().to_string());
        log::warn!(
            "pid_file changed from {} to {}: a reload does not move the pid file; restart to apply it",
            name(&old.pid_file),
            name(&new.pid_file)
        );
    }
    let both_files = matches!(
        (&old.logging.error_log, &new.logging.error_log),
        (ErrorLogTarget::File(_), ErrorLogTarget::File(_))
    );
    if new.logging.error_log != old.logging.error_log && !both_files {
        log::warn!(
            "error_log changed from {} to {}: daemon messages keep their target until a restart",
            old.logging.error_log,
            new.logging.error_log
        );
    }
}
