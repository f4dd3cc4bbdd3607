//! The account children serve requests as: the configured user and group
//! looked up by name, and the refusal of root.
//!
//! Runs in: parent, when the config is read (`config`); `privileges` drops
//! to it in each child.

use nix::unistd::{Gid, Group, Uid, User};

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
