//! The account children serve requests as: the configured user and group
//! looked up by name, and the refusal of root and of the privileged system
//! groups.
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

    /// Refuses an identity that would serve requests with root's uid, with
    /// root's gid (group 0 reads every `root:root 0640` file) or with
    /// another privileged system group (see `privileged_group`). Children
    /// hold no other group: `DropPlan::apply` sets the supplementary groups
    /// to this one gid alone, so the user's own membership of such a group
    /// (if any) is dropped and needs no check. `group_given` says whether
    /// the gid came from the `group` key or is the user's primary group.
    /// Returns the config key at fault and why.
    pub fn refuse_privileged(&self, group_given: bool) -> Result<(), (&'static str, String)> {
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
        let (key, whose) = if group_given {
            ("group", "the configured group".to_string())
        } else {
            ("user", format!("the primary group of {:?}", self.user))
        };
        if self.gid.as_raw() == 0 {
            return Err((
                key,
                format!(
                    "refusing to serve requests with group root (gid 0, {whose}): set `group` to an \
                     unprivileged group, or set allow_root = true"
                ),
            ));
        }
        // A gid no group database names has no name to judge: only its
        // number counts.
        let name = Group::from_gid(self.gid).ok().flatten().map(|g| g.name).unwrap_or_default();
        if privileged_group(self.gid.as_raw(), &name) {
            return Err((
                key,
                format!(
                    "refusing to serve requests with the privileged system group {name:?} (gid {}, \
                     {whose}): set `group` to an unprivileged group such as www-data or nogroup, \
                     or set allow_root = true",
                    self.gid
                ),
            ));
        }
        Ok(())
    }
}

/// The groups below gid 100 a web server is meant to run as: Debian's and
/// Arch's `www-data`/`http` (gid 33), Fedora's `apache` (48), and the
/// `nobody`/`nogroup` of systems that number it below 100. They own no
/// files of the system's.
const WEB_GROUPS: [&str; 5] = ["www-data", "http", "apache", "nobody", "nogroup"];

/// Privileged groups that distributions number dynamically (gid 100 and
/// up), so that the gid rule alone misses them: each reads secrets
/// (`shadow`, `ssl-cert`: private keys, `systemd-journal`: every log) or
/// is root by another name (`sudo`, `wheel`, `admin`, `docker`, `lxd`).
const PRIVILEGED_GROUPS: [&str; 8] =
    ["shadow", "ssl-cert", "systemd-journal", "sudo", "wheel", "admin", "docker", "lxd"];

/// Whether group `gid` named `name` is a privileged system group children
/// must not serve with. Gids below 100 are the statically allocated system
/// groups (Debian policy 9.2.2; the same range on Fedora and Arch), and
/// many of them hand out the system: `disk` (6) the raw disks, `kmem` (15)
/// kernel memory, `shadow` (42) the password hashes, `tty` (5) every
/// terminal, `adm` (4) the logs, `sudo` (27) root, `staff` (50)
/// `/usr/local`. A list of them would miss the next one, so the whole
/// range is refused but for the web servers' own groups (`WEB_GROUPS`);
/// above it, the named dynamic ones (`PRIVILEGED_GROUPS`).
fn privileged_group(gid: u32, name: &str) -> bool {
    if gid < 100 { !WEB_GROUPS.contains(&name) } else { PRIVILEGED_GROUPS.contains(&name) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system groups that hand out the system are refused, by gid or
    /// by name; the groups web servers run as, and ordinary ones, are not.
    #[test]
    fn privileged_groups() {
        for (gid, name) in [(0, "root"), (4, "adm"), (5, "tty"), (6, "disk"), (15, "kmem")]
            .into_iter()
            .chain([(27, "sudo"), (42, "shadow"), (50, "staff"), (1, "daemon"), (60, "")])
            .chain([(103, "ssl-cert"), (999, "systemd-journal"), (998, "docker"), (10, "wheel")])
        {
            assert!(privileged_group(gid, name), "{name} ({gid}) must be refused");
        }
        for (gid, name) in [(33, "www-data"), (33, "http"), (48, "apache"), (65534, "nogroup")]
            .into_iter()
            .chain([(99, "nobody"), (100, "users"), (1000, "alice"), (105, "haproxy"), (4242, "")])
        {
            assert!(!privileged_group(gid, name), "{name} ({gid}) must be accepted");
        }
    }
}
