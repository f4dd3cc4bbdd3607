//! Skipping a test, or a part of one, that cannot run on this machine (not
//! root, a tool missing, no IPv6): every skip goes through `skip`, which
//! says so where a developer sees it and fails the test in CI.

use std::io::Write;

use super::process::current_test_name;

/// The variable holding the names of the tests allowed to skip in CI,
/// separated by spaces, as `cargo test` prints them (`.ci/run` sets it and
/// prints why each is allowed).
pub const ALLOW_SKIP: &str = "FORKHTTPD_ALLOW_SKIP";

/// Whether this run is CI's (`CI=true`, which `.ci/run` sets): there a skip
/// is a failure, since CI runs as root with every tool installed.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports that the current test (or the part of it the caller then leaves
/// out) does not run here, and `why`. In CI this panics, failing the test,
/// unless `FORKHTTPD_ALLOW_SKIP` names it: a skipped test proves nothing,
/// and a pass must not hide that. Elsewhere it writes one line
/// `SKIPPED name: why` to stderr and returns; the caller returns next.
pub fn skip(why: &str) {
    let name = current_test_name();
    let allowed = std::env::var(ALLOW_SKIP).unwrap_or_default().split_whitespace().any(|n| n == name);
    assert!(
        !in_ci() || allowed,
        "{name} skipped in CI: {why} (CI runs as root with every tool .ci/run installs; \
         if it cannot, add the test to .ci/run's allowed skips, saying why)"
    );
    // Straight to the descriptor: `eprintln!` is captured with a passing
    // test's output and never shown, and one write keeps the line whole
    // among the other tests' output (.ci/run counts these lines).
    let _ = std::io::stderr().write_all(format!("SKIPPED {name}: {why}\n").as_bytes());
}
