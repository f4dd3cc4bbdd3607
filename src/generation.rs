//! One generation of the server: everything a configuration file makes
//! before a single connection is served under it, built by one builder for
//! start-up, `--check-config` and every reload alike: the validated
//! configuration, the privilege plan, the trust checks on the files that
//! decided it, each site with its document root opened, and the sites'
//! TLS certificates. The session-ticket keys are not per generation: made
//! with the first one, each later one takes them over, and the parent
//! rotates them on their schedule (`rotate_ticket_keys`).
//!
//! Runs in: parent, once at start (or `--check-config`) and again on each
//! `SIGHUP`, as root when started so. A new generation replaces the old one
//! whole; children keep the generation they were forked with.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use crate::config::{self, Config, Overrides, SiteConfig};
use crate::error::{ConfigError, StartupError};
use crate::file::{self, Root};
use crate::privileges::DropPlan;
use crate::safeopen::{self, Guard};
use crate::sandbox::Plan;
use crate::tls::tickets::TicketKeys;
use crate::tls::{KeyHome, Tls};

/// What a generation is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// To serve (start-up, reload): with `tls_key_process`, the private
    /// keys are read for the key process and not parsed here.
    Serve,
    /// `--check-config`: every key is parsed here and checked against its
    /// certificate, and nothing is served.
    Check,
}

/// One site as children serve it: its validated keys, its document root
/// opened, and that root's path as a child sees it.
#[derive(Debug)]
pub struct ServedSite {
    /// The site's keys, validated.
    pub config: SiteConfig,
    /// Its document root (`O_PATH`: the descriptor grants lookups, not
    /// reads), opened and probed by the parent; children resolve every
    /// path beneath it.
    pub root: OwnedFd,
    /// The root's path as a child sees it (`child_root`), worked out once
    /// per generation rather than by every child.
    pub child_root: PathBuf,
}

impl ServedSite {
    /// The root as the file lookups take it.
    pub fn root(&self) -> Root<'_> {
        Root { fd: self.root.as_fd(), path: &self.child_root }
    }
}

/// What one configuration makes: built whole, or not at all.
#[derive(Debug)]
pub struct Generation {
    /// The validated configuration (every site's keys are in `sites`).
    pub config: Config,
    /// How children give up root, if the parent has it.
    pub drop_plan: Option<DropPlan>,
    /// What each child confines itself with (`sandbox = true`).
    pub sandbox: Option<Plan>,
    /// The sites: `sites[0]` is the default site (the top-level keys, no
    /// hosts), then each `[[site]]` in file order.
    pub sites: Vec<ServedSite>,
    /// The sites' certificates and the TLS configuration, when the
    /// default site has a certificate (every HTTPS listener needs one).
    pub tls: Option<Tls>,
    /// The ACME webroot (`acme_webroot`) opened (`O_PATH`, like a site
    /// root), when one is configured: children look challenge tokens up
    /// beneath it. Its path is `config.acme_webroot`, which a sandbox must
    /// let children read beneath.
    pub acme_webroot: Option<OwnedFd>,
    /// The session-ticket keys `tls` seals tickets with: the running
    /// server's, shared (a reload keeps them, so tickets issued before it
    /// still resume).
    pub tickets: TicketKeys,
}

impl Generation {
    /// Reads `path` (or nothing: the built-in defaults) with the
    /// command-line `overrides`, and makes everything it decides, in
    /// privilege order: the configuration, the privilege plan, the trust
    /// checks, then every site's root (before any listener, so that a
    /// server that could serve nothing never says "listening").
    /// `running` is the generation of the server already running (on a
    /// reload; `None` at start): its guard and its session-ticket keys.
    /// The private keys of a generation built to serve with the key
    /// process are read, not parsed: `Tls::hand_over` gives them to it.
    pub fn build(
        path: Option<&Path>,
        overrides: &Overrides,
        running: Option<&Generation>,
        purpose: Purpose,
    ) -> Result<Generation, StartupError> {
        let running_guard = running.and_then(Generation::guard);
        let (config, site_configs) = Config::load(path, overrides, running_guard)?;
        let drop_plan = DropPlan::for_config(&config, &site_configs[0].root)?;
        trusted(&config, DropPlan::guard(drop_plan.as_ref()), running_guard)?;
        // Made before any fork, so that every child has the same ones.
        let tickets = match running {
            Some(g) => g.tickets.clone(),
            None => TicketKeys::new(Instant::now()).map_err(StartupError::TicketKeys)?,
        };
        // Certificates (and, later, access rules) load here, as root,
        // before any fork, by the config file's rule: the account children
        // run as must not be able to change them.
        let home = match purpose {
            Purpose::Serve if config.tls_key_process => KeyHome::KeyProcess,
            _ => KeyHome::Children,
        };
        let tls = Tls::load(
            &site_configs,
            DropPlan::guard(drop_plan.as_ref()),
            tickets.ticketer(config.tls_ticket_rotation),
            home,
        )?;
        let chroot = drop_plan.as_ref().and_then(|p| p.chroot.as_deref());
        let sites = site_configs
            .into_iter()
            .map(|site| {
                let root = open_root(&site.root)?;
                let child_root = child_root(&site.root, chroot);
                Ok(ServedSite { config: site, root, child_root })
            })
            .collect::<Result<_, StartupError>>()?;
        // Like a root, it must exist at start: an ACME client creates
        // `.well-known/acme-challenge/` beneath it, not the webroot itself.
        let acme_webroot = config.acme_webroot.as_deref().map(open_root).transpose()?;
        let sandbox = config.privileges.sandbox.then(Plan::new).transpose().map_err(StartupError::Sandbox)?;
        Ok(Generation { config, drop_plan, sandbox, sites, tls, tickets, acme_webroot })
    }

    /// Every directory a child reads beneath: the sites' roots and the
    /// ACME webroot, which the sandbox lets it read and nothing else.
    pub fn readable_roots(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.sites.iter().map(|s| s.root.as_fd()).chain(self.acme_webroot.as_ref().map(|fd| fd.as_fd()))
    }

    /// When the session-ticket keys are next due to rotate: a period
    /// (`tls_ticket_rotation`, as this generation says) after the last
    /// rotation. `None` without HTTPS, where no ticket is issued.
    pub fn ticket_rotation_due(&self) -> Option<Instant> {
        self.tls.as_ref()?;
        Some(self.tickets.rotated_at() + self.config.tls_ticket_rotation)
    }

    /// Rotates the session-ticket keys if they are due at `now`. Children
    /// forked from then on seal with the new key and still open tickets
    /// of the one before it; children already running keep the keys they
    /// were forked with. Returns whether the keys changed.
    pub fn rotate_ticket_keys(&mut self, now: Instant) -> bool {
        if self.ticket_rotation_due().is_none_or(|due| due > now) {
            return false;
        }
        match self.tickets.rotate(now) {
            Ok(()) => {
                log::info!(
                    "session-ticket key rotated; the previous one resumes sessions for {} s more",
                    self.config.tls_ticket_rotation.as_secs()
                );
                true
            }
            Err(e) => {
                log::error!("{e}; keeping the current key for another period");
                false
            }
        }
    }

    /// The guard for what the parent opens by path under this generation
    /// (see `DropPlan::guard`).
    pub fn guard(&self) -> Option<Guard> {
        DropPlan::guard(self.drop_plan.as_ref())
    }

    /// The default site's document root, canonical.
    pub fn default_root(&self) -> &Path {
        &self.sites[0].config.root
    }
}

/// The config decides what children run as, so the account children run
/// as must not be able to change it or a `mime_types` file (see
/// `safeopen`): the running server's guard was checked before a byte was
/// read (`Config::load`); the guard of the plan read (`guard`) is checked
/// now, before anything is done with it. The rule is the log files' rule,
/// which no longer depends on the guard (no account but root and the
/// server's own may change the files): this repeats `Config::load`'s check
/// with the plan's account named in a refusal.
fn trusted(config: &Config, guard: Option<Guard>, running: Option<Guard>) -> Result<(), StartupError> {
    if guard.is_none() || guard == running {
        return Ok(());
    }
    if let Some(p) = &config.source {
        safeopen::open_for_reading(p, guard).map_err(|e| config::unreadable(p, e))?;
    }
    for p in &config.mime_files {
        safeopen::open_for_reading(p, guard).map_err(|e| ConfigError {
            file: config.source.clone(),
            line: None,
            site: None,
            key: Some("mime_types".to_string()),
            what: format!("cannot read {}: {e}", p.display()),
        })?;
    }
    Ok(())
}

/// Opens a site's document root (`O_PATH`) and probes `openat2(2)` on it:
/// without that call nothing could be served, and a seccomp filter that
/// refuses it must stop the server at start (and `--check-config`), not
/// leave it listening and failing every request.
fn open_root(path: &Path) -> Result<OwnedFd, StartupError> {
    let root = open(path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| StartupError::Root { path: path.to_path_buf(), source: e.into() })?;
    file::probe(root.as_fd())
        .map_err(|e| StartupError::Openat2 { path: path.to_path_buf(), source: e.into() })?;
    Ok(root)
}

/// A site root's path as a child sees it: after a `chroot` into `chroot`
/// (the default site's root), that root is `/` and a root beneath it is
/// `/REST`. A root elsewhere keeps its host path, which no longer names
/// it: only the absolute-symlink fallback of `file::find` uses the path,
/// and everything it finds is still opened beneath the root's descriptor,
/// so such a site refuses absolute symlinks rather than serving outside
/// its root.
fn child_root(root: &Path, chroot: Option<&Path>) -> PathBuf {
    match chroot.map(|dir| root.strip_prefix(dir)) {
        Some(Ok(rest)) => Path::new("/").join(rest),
        _ => root.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under a chroot into the default root, that root and the roots
    /// beneath it are named from `/`; a root elsewhere, or any root
    /// without a chroot, keeps its host path.
    #[test]
    fn child_roots() {
        let default = Path::new("/srv/www");
        assert_eq!(child_root(default, Some(default)), Path::new("/"));
        assert_eq!(child_root(Path::new("/srv/www/b"), Some(default)), Path::new("/b"));
        assert_eq!(child_root(Path::new("/srv/other"), Some(default)), Path::new("/srv/other"));
        assert_eq!(child_root(Path::new("/srv/www/b"), None), Path::new("/srv/www/b"));
    }
}
