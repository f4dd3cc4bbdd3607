//! The configuration read end to end: the helpers every file's tests
//! load a config with, and the defaults and paths of the whole.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::listener::{ListenSpec, Wire};

/// Loads `text` after a `root` line naming a temporary directory.
pub(super) fn load_str(text: &str) -> Result<Config, StartupError> {
    load_str_with_sites(text).map(|(config, _)| config)
}

/// `load_str`, with the sites.
pub(super) fn load_str_with_sites(text: &str) -> Result<(Config, Vec<SiteConfig>), StartupError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let file = dir.join("c.toml");
    let mut f = fs::File::create(&file).unwrap();
    write!(f, "root = {:?}\n{text}", dir.display().to_string()).unwrap();
    Config::load(Some(&file), &Overrides::default(), None)
}

#[test]
fn empty_file_gives_defaults() {
    let c = load_str("").unwrap();
    let plain = ListenSpec { addr: DEFAULT_LISTEN.to_string(), wire: Wire::default() };
    assert_eq!(c.listeners, [plain]);
    assert_eq!(c.backlog, DEFAULT_BACKLOG);
    assert_eq!(c.limits.max_children, DEFAULT_MAX_CHILDREN);
    assert_eq!(c.limits.header_timeout, Duration::from_secs(10));
    assert_eq!(c.logging.access_log, AccessLogTarget::Stderr);
}

#[test]
fn relative_paths_resolve_against_the_base_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    fs::create_dir_all(base.join("site")).unwrap();
    let file = base.join("c.toml");
    fs::write(&file, "root = \"site\"\naccess_log = \"logs/a.log\"\npid_file = \"p.pid\"\n").unwrap();
    let ov = Overrides { base_dir: Some(base.clone()), ..Overrides::default() };
    // The process's own working directory plays no part.
    let (c, sites) = Config::load(Some(&file), &ov, None).unwrap();
    assert_eq!(sites[0].root, fs::canonicalize(base.join("site")).unwrap());
    assert_eq!(c.logging.access_log, AccessLogTarget::File(base.join("logs/a.log")));
    assert_eq!(c.pid_file, Some(base.join("p.pid")));
    let ov = Overrides { root: Some(PathBuf::from("site")), ..ov };
    let (_, sites) = Config::load(None, &ov, None).unwrap();
    assert_eq!(sites[0].root, fs::canonicalize(base.join("site")).unwrap());
}

/// Writes `text` (after a `root` line, as `load_str`) with `{dir}`
/// replaced by a temporary directory holding `a/` and `b/`.
pub(super) fn load_sites(text: &str) -> Result<Vec<SiteConfig>, StartupError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("a")).unwrap();
    fs::create_dir_all(dir.join("b")).unwrap();
    let file = dir.join("c.toml");
    let text = text.replace("{dir}", dir.to_str().unwrap());
    fs::write(&file, format!("root = {:?}\n{text}", dir.display().to_string())).unwrap();
    Config::load(Some(&file), &Overrides::default(), None).map(|(_, sites)| sites)
}
