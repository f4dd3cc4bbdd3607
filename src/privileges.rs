//! Who serves requests: the account lookup (parent, when the config is
//! read) and the drop from root to that account (child, before it reads a
//! single byte from the client).
//!
//! Runs in: parent (`DropPlan::for_config`, `DropPlan::guard`,
//! `DropPlan::empty_bounding_set`) and child (`DropPlan::apply`). The
//! account itself is looked up in `account`.
//!
//! The parent keeps root, as Apache's does, so that a reload can bind new
//! ports below 1024 and reopen root-owned log files; it never parses client
//! input. It empties its capability bounding set once at start
//! (`empty_bounding_set`): that takes nothing from a process that never
//! executes a program, and every child inherits the empty set instead of
//! spending some forty `prctl` calls on it per connection. Each child then
//! gives root up for good, in the order the classic servers agree on:
//! optional `chroot` + `chdir("/")`, then `setgroups`, `setgid`, and
//! `setuid` last, and then checks that root cannot be regained.

use std::fmt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{Uid, chdir, chroot, geteuid, setgid, setgroups, setuid};

use crate::account::Identity;
use crate::config::Config;
use crate::error::{ConfigError, StartupError};
use crate::safeopen::Guard;
use crate::sys;

/// What a child does to give up root, decided once in the parent.
#[derive(Clone, Debug)]
pub struct DropPlan {
    /// The account to become.
    pub identity: Identity,
    /// The directory to `chroot` into first, if any.
    pub chroot: Option<PathBuf>,
}

/// Why a child could not give up root. The child exits without serving.
#[derive(Debug)]
pub enum DropError {
    /// `chroot` or the `chdir("/")` after it failed.
    Chroot(Errno),
    /// `setgroups` failed.
    SetGroups(Errno),
    /// `setgid` failed.
    SetGid(Errno),
    /// `setuid` failed.
    SetUid(Errno),
    /// After the drop, `setuid(0)` succeeded: the drop did not take.
    RootRegained,
}

impl fmt::Display for DropError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropError::Chroot(e) => write!(f, "chroot: {e}"),
            DropError::SetGroups(e) => write!(f, "setgroups: {e}"),
            DropError::SetGid(e) => write!(f, "setgid: {e}"),
            DropError::SetUid(e) => write!(f, "setuid: {e}"),
            DropError::RootRegained => {
                write!(f, "root could be regained after dropping privileges")
            }
        }
    }
}

impl std::error::Error for DropError {}

impl DropPlan {
    /// The guard for what a root parent opens by path (see `safeopen`):
    /// `None` without a plan (the parent is not root: every process is the
    /// same user already) or when children stay root.
    pub fn guard(plan: Option<&DropPlan>) -> Option<Guard> {
        let id = &plan?.identity;
        Guard::for_account(id.uid, id.gid)
    }

    /// The plan for `config` in this process, whose `chroot` is into
    /// `default_root` (the default site's): `None` when not running as
    /// root (there is nothing to give up, and `user`, `group` and `chroot`
    /// do not apply). Refuses a plan that would serve with uid 0, gid 0 or
    /// a privileged system group unless `allow_root` says so.
    /// (`Config::load` refuses it first, naming the line; this is the gate
    /// where the plan is made, for any `Config`.)
    pub fn for_config(config: &Config, default_root: &Path) -> Result<Option<DropPlan>, StartupError> {
        if !geteuid().is_root() {
            return Ok(None);
        }
        if !config.privileges.allow_root
            && let Err((key, what)) =
                config.privileges.identity.refuse_privileged(config.privileges.group_given)
        {
            let file = config.source.clone();
            return Err(ConfigError { file, line: None, site: None, key: Some(key.to_string()), what }.into());
        }
        Ok(Some(DropPlan {
            identity: config.privileges.identity.clone(),
            chroot: config.privileges.chroot.then(|| default_root.to_path_buf()),
        }))
    }

    /// Empties this (root) process's capability bounding set, so that no
    /// child can ever regain a capability it gave up. Call once in the
    /// parent, before the first fork (it needs `CAP_SETPCAP`).
    pub fn empty_bounding_set(&self) -> Result<(), StartupError> {
        sys::drop_bounding_set().map_err(StartupError::BoundingSet)
    }

    /// Gives up root in this (child) process, for good.
    pub fn apply(&self) -> Result<(), DropError> {
        if let Some(dir) = &self.chroot {
            chroot(dir).map_err(DropError::Chroot)?;
            chdir("/").map_err(DropError::Chroot)?;
        }
        let id = &self.identity;
        setgroups(&[id.gid]).map_err(DropError::SetGroups)?;
        setgid(id.gid).map_err(DropError::SetGid)?;
        setuid(id.uid).map_err(DropError::SetUid)?;
        if !id.uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
            return Err(DropError::RootRegained);
        }
        Ok(())
    }
}
