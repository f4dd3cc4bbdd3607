# shellcheck shell=bash
# The install guide's command lines (docs/install.md; the README points to
# it), for the container tests that run them as written
# (tests/systemd-boot.sh, tests/nosystemd.sh, tests/deb-install.sh).
#
# readme_commands MARK [INDENT]: prints the command lines between the lines
# starting "<!-- MARK: begin" and "<!-- MARK: end" of docs/install.md (from the
# top of the source tree), in order, without their indentation. A command line is
# indented INDENT spaces, 7 by default (a code block inside a numbered
# step), 4 for a code block of its own; a line indented 4 or more spaces
# otherwise would be skipped silently, so it fails, naming the line.
readme_commands() {
    awk -v mark="$1" -v indent="${2:-7}" '
        BEGIN { prefix = sprintf("%" indent "s", "") }
        index($0, "<!-- " mark ": begin") == 1 { on = 1; next }
        index($0, "<!-- " mark ": end") == 1 { on = 0 }
        on && index($0, prefix) == 1 { print substr($0, indent + 1); next }
        on && /^    / { print FILENAME ":" NR ": a command indented other than " indent " spaces" > "/dev/stderr"; exit 1 }' docs/install.md
}
