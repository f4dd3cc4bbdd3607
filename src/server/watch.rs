//! Certificates that renew themselves: every `tls_watch_interval` the
//! parent looks at each certificate and key file (`lstat`, and `stat`
//! through a link: no descriptor kept, no byte read) and, when one changed, reloads as `SIGHUP` does, so
//! a certificate an ACME client renewed is served without a hook. Once a
//! day (and with every status line) it checks how close each certificate
//! is to its end, for the log and systemd's `STATUS=`.
//!
//! Runs in: parent only, from the accept loop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::stat::{FileStat, lstat, stat};

use crate::generation::Generation;
use crate::tls::{EXPIRY_WARNING, Pair};

use super::Server;

/// How often the certificates' ends are checked besides every load: the
/// warning counts days.
const EXPIRY_CHECK: Duration = Duration::from_secs(86_400);

/// What tells one version of a file from the next without reading it: a
/// file replaced by rename (as ACME clients do) has a new inode, one
/// rewritten in place a new size or times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    fn of(st: &FileStat) -> Version {
        Version {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

/// A watched path's version and, when it is a symbolic link, the version
/// of the file the links lead to: certbot re-points its `live/` link (a
/// new link), but a link to that link stays the same while its end
/// changes, and a link's target may be rewritten in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    own: Version,
    end: Option<Version>,
}

/// The stamp of `path`; `None` while it cannot be looked at (missing,
/// say): its coming back is a change too.
fn stamp(path: &Path) -> Option<Stamp> {
    let own = Version::of(&lstat(path).ok()?);
    let end = stat(path).ok().map(|st| Version::of(&st));
    Some(Stamp { own, end })
}

/// The watched files and the two timers.
#[derive(Debug)]
pub(super) struct Watch {
    /// Every certificate and key file of the generation in force, with
    /// its stamp as of the last load.
    files: Vec<(PathBuf, Option<Stamp>)>,
    /// When to look at the files next (`None`: not watched).
    next_look: Option<Instant>,
    /// When to check the certificates' ends next (`None`: no certificate).
    next_expiry: Option<Instant>,
    /// The status line last sent, without the certificates' warnings.
    status: String,
}

impl Watch {
    /// Watches `generation`'s files; their stamps are taken now, right
    /// after the generation read them.
    pub(super) fn new(generation: &Generation) -> Watch {
        let mut watch =
            Watch { files: Vec::new(), next_look: None, next_expiry: None, status: String::new() };
        watch.follow(generation);
        watch
    }

    /// Stamps every watched file again. Called before a reload reads them,
    /// so that a file replaced while the reload runs (a key renamed into
    /// place just after its certificate) shows as a change next time.
    pub(super) fn restamp(&mut self) {
        for (path, old) in &mut self.files {
            *old = stamp(path);
        }
    }

    /// After a reload (applied or not): watches the files of the generation
    /// in force. A file already watched keeps the stamp `restamp` took
    /// before the reload read it; one the new config names is stamped now.
    pub(super) fn follow(&mut self, generation: &Generation) {
        let old = std::mem::take(&mut self.files);
        let pairs = generation.tls.iter().flat_map(|t| t.pairs.iter());
        for path in pairs.flat_map(|p| [&p.files.certificate, &p.files.key]) {
            if self.files.iter().any(|(p, _)| p == path) {
                continue;
            }
            let known = old.iter().find(|(p, _)| p == path).map(|(_, s)| *s);
            self.files.push((path.clone(), known.unwrap_or_else(|| stamp(path))));
        }
        let now = Instant::now();
        let interval = generation.config.tls_watch_interval.filter(|_| !self.files.is_empty());
        self.next_look = interval.map(|i| now + i);
        self.next_expiry = (!self.files.is_empty()).then(|| now + EXPIRY_CHECK);
    }

    /// When the accept loop must wake for this, if ever.
    pub(super) fn due(&self) -> Option<Instant> {
        self.next_look.into_iter().chain(self.next_expiry).min()
    }

    /// The first watched file whose stamp changed.
    fn changed(&self) -> Option<&Path> {
        self.files.iter().find(|(path, old)| stamp(path) != *old).map(|(p, _)| p.as_path())
    }

    /// `status` (a `STATUS=` line) with a warning for each certificate of
    /// `generation` near its end, remembered for the daily check.
    pub(super) fn status(&mut self, status: &str, generation: &Generation) -> String {
        status.clone_into(&mut self.status);
        let pairs = generation.tls.iter().flat_map(|t| t.pairs.iter());
        let mut line = status.to_string();
        for warning in ending(pairs, SystemTime::now()) {
            line.push_str("; ");
            line.push_str(&warning);
        }
        line
    }
}

impl Server {
    /// Called on every round of the accept loop: reloads when a
    /// certificate or key file changed (a broken pair keeps the previous
    /// generation, and the next reload waits for the next change), and
    /// once a day warns of certificates near their end.
    pub(super) fn watch_certificates(&mut self) {
        let now = Instant::now();
        if self.watch.next_look.is_some_and(|t| now >= t) {
            if let Some(path) = self.watch.changed() {
                log::info!("certificate file {} changed: reloading", path.display());
                // The reload restamps, and follows the new generation.
                self.reload();
                return;
            }
            let interval = self.config().tls_watch_interval;
            self.watch.next_look = interval.map(|i| now + i);
        }
        if self.watch.next_expiry.is_some_and(|t| now >= t) {
            self.watch.next_expiry = Some(now + EXPIRY_CHECK);
            let pairs = self.generation.tls.iter().flat_map(|t| t.pairs.iter());
            let warnings = ending(pairs, SystemTime::now());
            for w in &warnings {
                log::warn!("{w}: renew it");
            }
            if !warnings.is_empty() {
                let status = self.watch.status.clone();
                let line = self.watch.status(&status, &self.generation);
                self.notify(&line);
            }
        }
    }
}

/// A warning for each of `pairs` that has ended by `now` or ends within
/// `EXPIRY_WARNING`.
fn ending<'p>(pairs: impl Iterator<Item = &'p Pair>, now: SystemTime) -> Vec<String> {
    pairs.filter_map(|p| warning(&p.site, &p.files.certificate, p.not_after, now)).collect()
}

/// The warning for the certificate `cert` of `site`, valid until
/// `not_after`, at `now`: in whole days left, or that it has expired.
fn warning(site: &str, cert: &Path, not_after: SystemTime, now: SystemTime) -> Option<String> {
    let what = format!("certificate {} of {site}", cert.display());
    match not_after.duration_since(now) {
        Err(_) => Some(format!("{what} has expired")),
        Ok(left) if left <= EXPIRY_WARNING => match left.as_secs() / 86_400 {
            0 => Some(format!("{what} expires within a day")),
            1 => Some(format!("{what} expires in 1 day")),
            days => Some(format!("{what} expires in {days} days")),
        },
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing until 14 days before the end; then the whole days left;
    /// then that it has expired.
    #[test]
    fn warns_in_days_left_within_fourteen_days() {
        let end = SystemTime::UNIX_EPOCH + Duration::from_secs(100 * 86_400);
        let at = |days: f64| match days {
            ..0.0 => end + Duration::from_secs_f64(-days * 86_400.0),
            _ => end - Duration::from_secs_f64(days * 86_400.0),
        };
        let said = |days| warning("default site", Path::new("/c.pem"), end, at(days));
        assert_eq!(said(14.5), None);
        assert_eq!(said(14.0).as_deref(), Some("certificate /c.pem of default site expires in 14 days"));
        assert_eq!(said(5.7).as_deref(), Some("certificate /c.pem of default site expires in 5 days"));
        assert_eq!(said(1.2).as_deref(), Some("certificate /c.pem of default site expires in 1 day"));
        assert_eq!(said(0.5).as_deref(), Some("certificate /c.pem of default site expires within a day"));
        assert_eq!(said(-0.5).as_deref(), Some("certificate /c.pem of default site has expired"));
    }

    /// A file replaced by rename, or rewritten, stamps differently; one
    /// left alone stamps the same; a missing one has no stamp.
    #[test]
    fn stamps_tell_a_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, "one").unwrap();
        let first = stamp(&path);
        assert!(first.is_some());
        assert_eq!(stamp(&path), first);
        let next = dir.path().join("cert.pem.new");
        std::fs::write(&next, "one").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_ne!(stamp(&path), first, "a new inode");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(stamp(&path), None);
    }

    /// A link to a link re-pointed (certbot's `live/` at a renewal) stamps
    /// differently, though the link named is the same.
    #[test]
    fn stamps_tell_a_changed_end_of_links() {
        let dir = tempfile::tempdir().unwrap();
        let [one, two, live, named] =
            ["cert1.pem", "cert2.pem", "live.pem", "named.pem"].map(|n| dir.path().join(n));
        std::fs::write(&one, "one").unwrap();
        std::fs::write(&two, "two").unwrap();
        std::os::unix::fs::symlink(&one, &live).unwrap();
        std::os::unix::fs::symlink(&live, &named).unwrap();
        let first = stamp(&named);
        assert!(first.is_some_and(|s| s.end.is_some()));
        std::fs::remove_file(&live).unwrap();
        std::os::unix::fs::symlink(&two, &live).unwrap();
        assert_ne!(stamp(&named), first, "the end changed");
    }
}
