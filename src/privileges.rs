//! Who serves requests: the account lookup (parent, when the config is
//! read) and the drop from root to that account (child, before it reads a
//! single byte from the client).
//!
//! Runs in: parent (`Identity::lookup`, `DropPlan::for_config`,
//! `DropPlan::empty_bounding_set`) and child (`DropPlan::apply`).
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
use std::path::PathBuf;

use nix::errno::Errno;
use nix::unistd::{Gid, Group, Uid, User, chdir, chroot, geteuid, setgid, setgroups, setuid};

use crate::config::{Config, ConfigError};
use crate::error::StartupError;
use crate::sys;

/// A resolved account: the user name and the uid and gid it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user name as configured.
    pub user: String,
    /// Its uid.
    pub uid: Uid,
    /// The configured group's gid, or the user's primary group.
    pub gid: Gid,
}

impl Identity {
    /// Looks up `user` and `group` ("" = the user's primary group) in the
    /// system's account database. Returns the config key at fault and why.
    pub fn lookup(user: &str, group: &str) -> Result<Identity, (&'static str, String)> {
        let u = User::from_name(user)
            .map_err(|e| ("user", format!("cannot look up {user:?}: {e}")))?
            .ok_or_else(|| ("user", format!("names no existing user: {user:?}")))?;
        let gid = if group.is_empty() {
            u.gid
        } else {
            Group::from_name(group)
                .map_err(|e| ("group", format!("cannot look up {group:?}: {e}")))?
                .ok_or_else(|| ("group", format!("names no existing group: {group:?}")))?
                .gid
        };
        Ok(Identity { user: user.to_string(), uid: u.uid, gid })
    }

    /// Refuses an identity that would serve requests with root's uid or
    /// root's gid (group 0 reads every `root:root 0640` file). Children hold
    /// no other group: `DropPlan::apply` sets the supplementary groups to
    /// this one gid alone, so the user's own membership of group 0 (if any)
    /// is dropped and needs no check. `group_given` says whether the gid
    /// came from the `group` key or is the user's primary group. Returns the
    /// config key at fault and why.
    pub fn refuse_root(&self, group_given: bool) -> Result<(), (&'static str, String)> {
        if self.uid.is_root() {
            return Err((
                "user",
                format!(
                    "refusing to serve requests as root ({:?}): set `user` to an unprivileged account, \
                     or set allow_root = true",
                    self.user
                ),
            ));
        }
        if self.gid.as_raw() == 0 {
            let (key, whose) = if group_given {
                ("group", "the configured group".to_string())
            } else {
                ("user", format!("the primary group of {:?}", self.user))
            };
            return Err((
                key,
                format!(
                    "refusing to serve requests with group root (gid 0, {whose}): set `group` to an \
                     unprivileged group, or set allow_root = true"
                ),
            ));
        }
        Ok(())
    }
}

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
    /// The plan for `config` in this process: `None` when not running as
    /// root (there is nothing to give up, and `user`, `group` and `chroot`
    /// do not apply). Refuses a plan that would serve with uid or gid 0
    /// unless `allow_root` says so. (`Config::load` refuses it first, naming
    /// the line; this is the gate where the plan is made, for any `Config`.)
    pub fn for_config(config: &Config) -> Result<Option<DropPlan>, StartupError> {
        if !geteuid().is_root() {
            return Ok(None);
        }
        if !config.allow_root
            && let Err((key, what)) = config.identity.refuse_root(config.group_given)
        {
            let file = config.source.clone();
            return Err(ConfigError { file, line: None, site: None, key: Some(key.to_string()), what }.into());
        }
        Ok(Some(DropPlan {
            identity: config.identity.clone(),
            chroot: config.chroot.then(|| config.root.clone()),
        }))
    }

    /// Empties this (root) process's capability bounding set, so that no
    /// child can ever regain a capability it gave up. Call once in the
    /// parent, before the first fork (it needs `CAP_SETPCAP`).
    pub fn empty_bounding_set(&self) -> Result<(), StartupError> {
        sys::drop_bounding_set()
            .map_err(|e| StartupError::Daemon(format!("emptying the capability bounding set: {e}")))
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
