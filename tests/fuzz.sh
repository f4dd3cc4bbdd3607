#!/usr/bin/env bash
# The cargo fuzz targets in fuzz/ (request-head parsing, target-to-path
# resolution, the reply decision, the PROXY header and forwarding-field
# walk), each run for FUZZ_SECONDS (15 s by default: about 60 s in all,
# after the build) from the seeds in fuzz/seeds/ (real requests, every
# traversal string of tests/suite/traversal.rs, PROXY headers and
# forwarding fields) into a scratch corpus. Installs the nightly
# toolchain and cargo-fuzz if missing, or skips, saying why (a failure in
# CI: tests/lib/skip.sh). A crash leaves its input in fuzz/artifacts/TARGET/
# and prints it in hex (a CI log keeps it); keep it as a unit test with the
# fix.
# Prints one line per target, then "fuzz: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${FUZZ_SECONDS:-15}
targets=(request_head resolve decide proxy)

test_name=fuzz
# shellcheck source=tests/lib/skip.sh
. ../tests/lib/skip.sh

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the nightly toolchain (rustup toolchain install nightly --profile minimal)"
    rustup toolchain install nightly --profile minimal >/dev/null 2>&1 ||
        skip "the nightly toolchain cannot be installed (cargo fuzz needs it)"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz)"
    cargo install --quiet --locked cargo-fuzz >/dev/null 2>&1 || skip "cargo-fuzz cannot be installed"
fi
cargo +nightly fuzz build -O >/dev/null 2>&1 || {
    # Shows why; its own failure (pipefail) must not end the script before the count.
    cargo +nightly fuzz build -O 2>&1 | tail -20 || true
    echo "fuzz: the targets do not build"
    echo "fuzz: 0 passed, ${#targets[@]} failed"
    exit 1
}

corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
passed=0
failed=0
for t in "${targets[@]}"; do
    mkdir -p "$corpus/$t"
    out="$corpus/$t.log"
    if cargo +nightly fuzz run -O "$t" "$corpus/$t" "seeds/$t" -- -max_total_time="$seconds" >"$out" 2>&1; then
        echo "fuzz $t: clean ($(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$out" | tail -1))"
        passed=$((passed + 1))
    else
        echo "fuzz $t: FAILED; the input is in fuzz/artifacts/$t/:"
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$out" | head -10
        # The artifact is not kept by CI: print the input itself.
        input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out" | tail -1)
        if [ -n "$input" ] && [ -f "$input" ]; then
            echo "fuzz $t: the input ($(wc -c <"$input") bytes), in hex:"
            od -A x -t x1z -v "$input" | head -64
        fi
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
