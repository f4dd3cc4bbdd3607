//! The shipped files: the systemd units (`systemd/`) as systemd itself
//! judges them, the annotated example config (`config/forkhttpd.toml`), and
//! statements of the documentation and the config that once contradicted the code.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use forkhttpd::listener::DEFER_ACCEPT_SECS;

use crate::common::{BIN, TempDir, missing_tool, run_tool, server_command};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The line systemd-analyze security ends with.
const EXPOSURE: &str = "Overall exposure level for forkhttpd.service:";

/// Guards the hardening of `forkhttpd.service`: systemd's own offline
/// assessment must rate its exposure at most 2.0 (out of 10). Removing the
/// sandboxing directives (or the capability/syscall/address-family
/// restrictions) pushes the score far above that.
#[test]
fn service_exposure_level_is_at_most_2() {
    if missing_tool("systemd-analyze") {
        return;
    }
    let unit = repo().join("systemd/forkhttpd.service");
    let out = run_tool(
        Command::new("systemd-analyze").arg("security").arg("--offline=true").arg(&unit),
        Duration::from_secs(30),
    );
    let text = format!("{}\n{}", out.stdout, out.stderr);
    // The exit status is non-zero when a --threshold is exceeded; the score
    // itself is what is judged here, so parse the output regardless.
    let Some(i) = text.find(EXPOSURE) else {
        if text.contains("unrecognized option") || text.contains("unknown option") {
            crate::common::skip(&format!("this systemd-analyze has no --offline mode: {}", text.trim()));
            return;
        }
        panic!("no {EXPOSURE:?} line from systemd-analyze security ({:?}):\n{text}", out.status);
    };
    let score: f64 = text[i + EXPOSURE.len()..]
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the exposure level in:\n{text}"));
    assert!(
        score <= 2.0,
        "forkhttpd.service exposure level {score} > 2.0; systemd-analyze security says:\n{text}"
    );
}

/// Guards the unit files' validity: `systemd-analyze verify` must accept
/// the three units (known directives, valid values, existing executables,
/// consistent dependencies), the service with the HTTPS drop-in
/// (`https.conf`, installed as `forkhttpd.service.d/https.conf`) too, and
/// print nothing about them. The binary path is pointed at the freshly
/// built one, so the check does not depend on an installed copy.
#[test]
fn units_pass_systemd_analyze_verify() {
    if missing_tool("systemd-analyze") {
        return;
    }
    let tmp = TempDir::new("units-verify");
    let mut paths: Vec<PathBuf> = Vec::new();
    for name in ["forkhttpd.service", "forkhttpd.socket", "forkhttpd-https.socket"] {
        let text = fs::read_to_string(repo().join("systemd").join(name)).unwrap();
        let dst = tmp.path().join(name);
        fs::write(&dst, text.replace("/usr/local/bin/forkhttpd", BIN)).unwrap();
        paths.push(dst);
    }
    let drop_ins = tmp.path().join("forkhttpd.service.d");
    fs::create_dir(&drop_ins).unwrap();
    let https = fs::read_to_string(repo().join("systemd/https.conf")).unwrap();
    fs::write(drop_ins.join("https.conf"), https.replace("/usr/local/bin/forkhttpd", BIN)).unwrap();
    let service = fs::read_to_string(&paths[0]).unwrap();
    assert!(
        service.contains(&format!("ExecStart={BIN} ")),
        "ExecStart was not pointed at the built binary; the unit's binary path changed?"
    );

    let out = run_tool(
        // --man=no: the pages Documentation= names are installed with the
        // package (or the steps of docs/install.md), not on the machine running this.
        Command::new("systemd-analyze").arg("verify").arg("--man=no").args(&paths).current_dir(tmp.path()),
        Duration::from_secs(60),
    );
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let about_ours: Vec<&str> = text.lines().filter(|l| l.contains("forkhttpd")).collect();
    assert!(
        out.success() && about_ours.is_empty(),
        "systemd-analyze verify {paths:?} exited with {:?} and said:\n{text}",
        out.status
    );
}

/// Guards `TCP_DEFER_ACCEPT` under socket activation: systemd binds the
/// sockets, so only `DeferAcceptSec=` in each socket unit gives them the
/// deferral the server sets on the sockets it binds itself, with the same
/// period (`DEFER_ACCEPT_SECS`). Without the line, a client that connects
/// and sends nothing costs a fork at once.
#[test]
fn socket_units_defer_accept_as_the_server_does() {
    for name in ["forkhttpd.socket", "forkhttpd-https.socket"] {
        defers_accept_as_the_server_does(&repo().join("systemd").join(name));
    }
}

fn defers_accept_as_the_server_does(path: &Path) {
    let text = fs::read_to_string(path).unwrap();
    // A bare number is seconds to systemd, as is the same with an `s`.
    let values: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("DeferAcceptSec="))
        .map(|v| v.trim().strip_suffix('s').unwrap_or(v.trim()))
        .collect();
    assert_eq!(
        values,
        [DEFER_ACCEPT_SECS.to_string()],
        "{} must set DeferAcceptSec= once, to the server's own {DEFER_ACCEPT_SECS} s",
        path.display()
    );
}

/// Every key the server understands.
const KEYS: [&str; 29] = [
    "listen",
    "backlog",
    "root",
    "index",
    "listing",
    "fallback",
    "nosniff",
    "headers",
    "header_rules",
    "error_pages",
    "user",
    "group",
    "chroot",
    "allow_root",
    "pid_file",
    "max_children",
    "max_children_per_ip",
    "max_children_per_ip_from_percent",
    "header_timeout",
    "keepalive_timeout",
    "send_timeout",
    "min_send_rate",
    "min_send_rate_grace",
    "shutdown_grace",
    "max_header_bytes",
    "max_requests_per_connection",
    "access_log",
    "error_log",
    "server_version",
];

/// Guards the shipped example config: it documents every key (each set
/// once, right below a `#` comment line explaining it) and is accepted by
/// `--check-config`. A key added to the server but not to the example, an
/// undocumented key, or a file the server rejects all fail here.
#[test]
fn shipped_config_documents_every_key_and_checks_ok() {
    let path = repo().join("config/forkhttpd.toml");
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    for key in KEYS {
        let at: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')))
            .map(|(i, _)| i)
            .collect();
        match at.as_slice() {
            [] => problems.push(format!("{key}: not set in the file")),
            [i] => {
                if *i == 0 || !lines[i - 1].trim_start().starts_with('#') {
                    problems.push(format!("{key}: line {} is not preceded by a # comment line", i + 1));
                }
            }
            more => problems.push(format!("{key}: set on several lines {more:?}")),
        }
    }
    assert!(problems.is_empty(), "{}:\n{}", path.display(), problems.join("\n"));

    let out = run_tool(
        server_command()
            .args(["--check-config", "--no-bind", "--config", "config/forkhttpd.toml"])
            .current_dir(repo()),
        Duration::from_secs(10),
    );
    assert!(
        out.success() && out.stdout.contains("configuration OK"),
        "forkhttpd --check-config --no-bind --config config/forkhttpd.toml: {}",
        out.describe()
    );
}

/// The `#` comment lines right above `key = ...` in the shipped config,
/// joined into one line.
fn comment_above(text: &str, key: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')))
        .unwrap_or_else(|| panic!("{key} is not set in the shipped config"));
    let mut comment: Vec<&str> = lines[..at]
        .iter()
        .rev()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .collect();
    comment.reverse();
    comment.join(" ")
}

/// Two statements that were wrong (issue 16, 12c and 12d) and are pinned
/// now: the pid file is written in the foreground too, not with `--daemon`
/// only (the server does; see `startup::pid_file_is_written_in_the_foreground_too`),
/// and forkhttpd(8) says how an absolute symlink inside the root resolves
/// with and without `chroot` (see `startup::symlinks_inside_the_root_with_and_without_chroot`).
#[test]
fn shipped_docs_say_where_the_pid_file_is_written_and_how_absolute_links_resolve() {
    let config = fs::read_to_string(repo().join("config/forkhttpd.toml")).unwrap();
    let pid_comment = comment_above(&config, "pid_file");
    assert!(
        pid_comment.contains("in the foreground and with --daemon alike"),
        "the pid_file comment must say the file is written in the foreground too: {pid_comment:?}"
    );
    assert!(
        !pid_comment.contains("--daemon only"),
        "the pid_file comment says --daemon only: {pid_comment:?}"
    );

    // The page wraps its lines and marks fonts inline: compare its text
    // without the font escapes, with all whitespace runs as one space.
    let page = fs::read_to_string(repo().join("man/forkhttpd.8")).unwrap();
    let page = ["\\fB", "\\fI", "\\fR", "\\fP", "\\&"]
        .iter()
        .fold(page.replace("\\-", "-"), |text, escape| text.replace(escape, ""));
    let page = page.split_whitespace().collect::<Vec<_>>().join(" ");
    for sentence in [
        "Without chroot, an absolute target is a path on the host, served only if it lies inside the root",
        "With chroot, each child sees the root as /, so the same absolute target is looked up beneath \
         the root (/srv/www/a.html means ROOT/srv/www/a.html, usually 404)",
        "Use relative links to mean the same thing in both.",
    ] {
        assert!(page.contains(sentence), "man/forkhttpd.8 no longer says: {sentence:?}");
    }
}

/// The Debian package's copies of the units and the config (pkg/package/)
/// are what `pkg/sync` makes of their sources, and the changelog's first
/// entry is for Cargo.toml's version: `cargo deb` packages the copies as
/// committed, so an edit of systemd/ or config/ must reach them.
#[test]
fn package_copies_match_their_sources() {
    let out =
        run_tool(Command::new("sh").arg(repo().join("pkg/sync")).arg("--check"), Duration::from_secs(30));
    assert!(
        out.success(),
        "pkg/sync --check failed (run pkg/sync after editing systemd/ or config/):\n{}",
        out.stderr
    );
}

/// The documented commands that signal a server by its pid file: the
/// install guide's (docs/install.md) and forkhttpd(8)'s lines and the
/// logrotate snippet's fallback, as written, with the pid file's path
/// replaced by the test's.
fn pid_file_commands(pid_file: &Path) -> Vec<(String, String)> {
    let pid_file = pid_file.to_str().unwrap();
    let mut found = Vec::new();
    for (doc, roff) in
        [("docs/install.md", false), ("man/forkhttpd.8", true), ("config/forkhttpd.logrotate", false)]
    {
        let text = fs::read_to_string(repo().join(doc)).unwrap();
        for line in text.lines().filter(|l| l.contains("kill") && l.contains("/run/forkhttpd.pid")) {
            let line = if roff { line.replace("\\-", "-") } else { line.to_string() };
            // The snippet's fallback after `systemctl kill ... ||`; the
            // guide's line without its comment.
            let line = line.trim().trim_start_matches("|| ").trim_end_matches(" \\");
            let line = line.split("  #").next().unwrap().trim();
            found.push((doc.to_string(), line.replace("/run/forkhttpd.pid", pid_file)));
        }
    }
    found
}

/// A pid file left by a server killed outright names a pid that another
/// process may have by now: every documented command that signals by the
/// pid file leaves such a process alone (and fails), yet signals a running
/// server holding the file's lock.
#[test]
fn documented_pid_file_commands_signal_only_a_server_holding_the_lock() {
    if missing_tool("flock") {
        return;
    }
    let dir = TempDir::new("pid_file_commands");
    let stale = dir.path().join("stale.pid");
    let commands = pid_file_commands(&stale);
    let docs: Vec<&str> = commands.iter().map(|(d, _)| d.as_str()).collect();
    for doc in ["docs/install.md", "man/forkhttpd.8", "config/forkhttpd.logrotate"] {
        assert!(docs.contains(&doc), "no command signalling by the pid file found in {doc}: {commands:?}");
    }
    // Any of HUP, USR1 and TERM ends a sleep.
    let mut bystander = Command::new("sleep").arg("60").spawn().unwrap();
    fs::write(&stale, format!("{}\n", bystander.id())).unwrap();
    for (doc, cmd) in &commands {
        let out = run_tool(Command::new("sh").arg("-c").arg(cmd), Duration::from_secs(10));
        let alive = bystander.try_wait().unwrap().is_none();
        assert!(alive && !out.success(), "{doc}: `{cmd}` signalled the process a stale pid file names");
    }
    let _ = bystander.kill();
    let _ = bystander.wait();

    let live = dir.path().join("live.pid");
    let mut srv = crate::common::TestServer::builder()
        .config(&format!("pid_file = {}", crate::common::toml_str(live.to_str().unwrap())))
        .start();
    for (doc, cmd) in pid_file_commands(&live) {
        let from = srv.log().len();
        let out = run_tool(Command::new("sh").arg("-c").arg(&cmd), Duration::from_secs(10));
        assert!(out.success(), "{doc}: `{cmd}` failed against a running server: {}", out.describe());
        let said = ["reloading configuration", "reopened log files", "stopping"];
        let line = srv.log().wait_line(from, Duration::from_secs(5), |l| said.iter().any(|s| l.contains(s)));
        assert!(line.is_some(), "{doc}: `{cmd}` did not reach the server; stderr:\n{}", srv.stderr());
        if cmd.contains("-TERM") {
            assert!(srv.wait_exit(Duration::from_secs(10)).is_some(), "{doc}: SIGTERM did not stop it");
            srv = crate::common::TestServer::builder()
                .config(&format!("pid_file = {}", crate::common::toml_str(live.to_str().unwrap())))
                .start();
        }
    }
}
