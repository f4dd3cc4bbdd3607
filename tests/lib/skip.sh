# shellcheck shell=bash
# skip WHY: ends a shell test that cannot run here, the way the Rust suite's
# skip() does (tests/common/skip.rs). Set test_name before sourcing. Prints
# "SKIPPED test_name: WHY" (.ci/run counts these lines) and the "test_name:
# 0 passed, 0 failed" line, and exits 0; in CI (CI=true) a skip is a
# failure unless FORKHTTPD_ALLOW_SKIP (set by .ci/run) names the test.
skip() {
    if [ "${CI:-}" = true ] && [[ " ${FORKHTTPD_ALLOW_SKIP:-} " != *" $test_name "* ]]; then
        echo "$test_name: skipped in CI: $* (CI runs as root with every tool .ci/run installs;" \
            "if it cannot, add the test to .ci/run's allowed skips, saying why)"
        echo "$test_name: 0 passed, 1 failed"
        exit 1
    fi
    echo "SKIPPED $test_name: $*"
    echo "$test_name: 0 passed, 0 failed"
    exit 0
}
