//! Daemon messages on stderr when stderr is systemd's journal: sd-daemon
//! `<N>` priority prefixes and no ident, so `journalctl -p err` finds a
//! start-time error; anywhere else the plain `forkhttpd[pid]: level:` form.

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use crate::common::{TempDir, server_command, wait_child};

/// Runs `--check-config` on a config with an unknown key, its stderr a
/// pipe, with `JOURNAL_STREAM` naming that pipe (`matching`) or another
/// inode; returns what it wrote to stderr.
fn check_config_stderr(name: &str, matching: bool) -> String {
    let dir = TempDir::new(name);
    let conf = dir.path().join("bad.toml");
    std::fs::write(&conf, "no_such_key = 1\n").unwrap();
    let (mut reader, writer) = std::io::pipe().unwrap();
    let st = nix::sys::stat::fstat(&writer).unwrap();
    let ino = if matching { st.st_ino } else { st.st_ino + 1 };
    let mut cmd: Command = server_command();
    cmd.arg("--check-config").arg("--config").arg(&conf);
    cmd.env("JOURNAL_STREAM", format!("{}:{ino}", st.st_dev))
        .stdout(writer.try_clone().unwrap())
        .stderr(writer);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let status = wait_child(&mut child, Duration::from_secs(10)).expect("--check-config did not finish");
    assert!(!status.success(), "--check-config accepted an unknown key");
    let mut out = String::new();
    reader.read_to_string(&mut out).unwrap();
    out
}

/// Fails without the journal detection: the error line would start with
/// `forkhttpd[pid]: error:` and arrive in the journal at priority info.
#[test]
fn stderr_lines_carry_the_priority_when_stderr_is_the_journal() {
    let out = check_config_stderr("journal-prefix", true);
    let line =
        out.lines().find(|l| l.contains("no_such_key")).unwrap_or_else(|| panic!("no error line in {out:?}"));
    assert!(line.starts_with("<3>"), "error line without the <3> prefix: {line:?}");
    assert!(!out.contains("forkhttpd["), "ident repeated in a journal line: {out:?}");
}

/// A stale `JOURNAL_STREAM` (stderr redirected since) is not trusted.
#[test]
fn stderr_lines_stay_plain_when_stderr_is_not_the_journal() {
    let out = check_config_stderr("journal-plain", false);
    let line =
        out.lines().find(|l| l.contains("no_such_key")).unwrap_or_else(|| panic!("no error line in {out:?}"));
    assert!(line.starts_with("forkhttpd[") && line.contains(": error: "), "unexpected line: {line:?}");
}
