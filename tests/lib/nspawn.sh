# shellcheck shell=bash
# A Debian 12 container booted with systemd as PID 1 (systemd-nspawn), and
# the helpers the container tests share; sourced by tests/systemd-boot.sh,
# tests/deb-install.sh and tests/nosystemd.sh.
#
# Before sourcing, set:
#   test_name  the prefix of the script's own lines ("systemd-boot: ...")
#   top        the checkout, bound read-only at /src in the container
# and, for a Debian without systemd (not installed, let alone PID 1) and
# without syslog, nspawn_init=none: its PID 1 is then nspawn's stub init,
# which only reaps orphans, $leader a process inside it, and the container
# is killed at exit rather than powered off.
# Then call nspawn_boot, which skips the whole test (tests/lib/skip.sh: a
# failure in CI) where no container can boot: not root, no nspawn, no
# overlay, systemd does not come up. After it: $leader is the container's
# PID 1 (for nsenter), $run a scratch directory on the host,
# and ct, check, within and the passed/failed counters are ready; the
# container is powered off and its overlay removed when the script exits.
#
# The container has only its own loopback (--private-network): every
# request goes to 127.0.0.1 or ::1 inside it. The Debian root file system
# is built once with mmdebstrap and cached under /var/cache/forkhttpd-test,
# keyed by what it contains; each run boots a throw-away overlay of it, so
# two tests may run at once.

# shellcheck source=tests/lib/skip.sh
. "$top/tests/lib/skip.sh"

# The packages of the cached root file system: systemd and what the tests
# run inside (curl, logrotate, ps/pgrep, ss, useradd; adduser comes with them).
nspawn_packages=systemd,systemd-sysv,dbus,curl,logrotate,procps,iproute2,passwd
# Those of the one without systemd (nspawn_init=none): what the install
# guide's "Without systemd" steps assume and the test runs inside (logrotate, which
# then brings cron, not systemd; curl, ps/pgrep, ss). No syslog daemon.
nspawn_plain_packages=curl,logrotate,procps,iproute2,passwd

# Landlock's system calls, which the system-call filter nspawn puts on the
# whole container leaves out (systemd 252's list predates them: they fail
# with EPERM, and every forkhttpd child would run without Landlock, which
# no real host does); added, so that the children's sandbox is whole.
nspawn_landlock="landlock_create_ruleset landlock_add_rule landlock_restrict_self"

nspawn_boot() {
    [ "$(id -u)" = 0 ] || skip "needs root (systemd-nspawn, mounts)"

    # --- tools and the cached root file system ----------------------------
    local need=()
    command -v systemd-nspawn >/dev/null || need+=(systemd-container)
    command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
    command -v nsenter >/dev/null || need+=(util-linux)
    if [ "${#need[@]}" -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi

    local suite=bookworm
    local packages=$nspawn_packages
    [ "${nspawn_init:-systemd}" = none ] && packages=$nspawn_plain_packages
    local hosts=$'127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
    local key
    key=$(printf '%s\n%s\n%s\n%s' "$suite" "$packages" "$hosts" "minbase-v1" | sha256sum | cut -c1-16)
    local cache=/var/cache/forkhttpd-test
    rootfs=$cache/rootfs-$key
    mkdir -p "$cache"
    (
        # One builder at a time; a half-built tree is never under the final name.
        flock 9
        if [ ! -d "$rootfs" ]; then
            echo "$test_name: building the Debian $suite root file system (once, cached in $rootfs)"
            rm -rf "$rootfs.tmp"
            mmdebstrap --quiet --variant=minbase --include="$packages" \
                --customize-hook="printf '%s' '$hosts' > \"\$1/etc/hosts\"" \
                --customize-hook='echo forkhttpd-test > "$1/etc/hostname"' \
                "$suite" "$rootfs.tmp"
            mv "$rootfs.tmp" "$rootfs"
        fi
    ) 9>"$cache/lock"

    # --- a throw-away overlay, booted -------------------------------------
    run=$(mktemp -d /var/tmp/forkhttpd-boot.XXXXXX)
    machine=fkh-test-$$
    npid=
    leader=
    trap nspawn_cleanup EXIT
    mkdir -p "$run/upper" "$run/work" "$run/root"
    # An overlay costs nothing; where the file system refuses one, a copy
    # boots the same.
    if ! mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$run/upper,workdir=$run/work" "$run/root"; then
        echo "$test_name: no overlay of $rootfs here; booting a copy"
        cp -a "$rootfs/." "$run/root/"
    fi
    if [ "${nspawn_init:-systemd}" = none ]; then
        nspawn_start_plain
        return
    fi

    SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn --quiet -D "$run/root" --boot --machine="$machine" \
        --private-network --register=no --keep-unit --console=passive --bind-ro="$top:/src" \
        --system-call-filter="$nspawn_landlock" \
        >"$run/console.log" 2>&1 &
    npid=$!
    # The container's PID 1 is the child of nspawn that runs systemd (nspawn
    # first forks a helper of its own, which must not be taken for it).
    local pid
    for _ in $(seq 300); do
        for pid in $(pgrep -P "$npid" || true); do
            [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ] && leader=$pid
        done
        [ -n "$leader" ] && break
        kill -0 "$npid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$leader" ] || { cat "$run/console.log"; skip "systemd-nspawn did not start a container"; }

    # systemctl can talk to PID 1 once its private socket exists; then wait for the boot to end.
    for _ in $(seq 300); do
        nsenter -t "$leader" -a test -S /run/systemd/private 2>/dev/null && break
        sleep 0.1
    done
    local state
    state=$(timeout 90 nsenter -t "$leader" -a systemctl is-system-running --wait 2>&1 || true)
    case "$state" in
        running) ;;
        degraded) ct systemctl --failed --no-pager || true ;;
        *) cat "$run/console.log"; skip "systemd did not boot in the container (state: ${state:-none})" ;;
    esac
    echo "$test_name: booted $(ct systemctl --version | head -n 1) as PID 1 in $machine"
}

# The container without systemd (nspawn_init=none), on the overlay ready.
nspawn_start_plain() {
    # No --boot: nspawn's stub init is PID 1 (--as-pid2) and reaps what a
    # daemon's double fork orphans; `sleep` is the process ct enters.
    systemd-nspawn --quiet -D "$run/root" --as-pid2 --machine="$machine" \
        --private-network --register=no --keep-unit --console=passive --bind-ro="$top:/src" \
        --system-call-filter="$nspawn_landlock" \
        /bin/sleep infinity >"$run/console.log" 2>&1 &
    npid=$!
    local pid up
    for _ in $(seq 300); do
        for pid in $(pgrep -x sleep || true); do
            # Ours if nspawn is among its ancestors (other containers may run).
            up=$pid
            while [ "${up:-0}" -gt 1 ] && [ "$up" != "$npid" ]; do
                up=$(awk '/^PPid:/ { print $2 }' "/proc/$up/status" 2>/dev/null || true)
            done
            [ "${up:-0}" = "$npid" ] && leader=$pid
        done
        [ -n "$leader" ] && break
        kill -0 "$npid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$leader" ] || { cat "$run/console.log"; skip "systemd-nspawn did not start a container"; }
    echo "$test_name: started $machine without systemd (PID 1: $(ct cat /proc/1/comm))"
}

# Powers the container off (or kills it) and removes the overlay.
nspawn_cleanup() {
    set +e
    if [ -n "$npid" ] && kill -0 "$npid" 2>/dev/null; then
        # Without --boot, nspawn answers SIGTERM by killing the container.
        [ "${nspawn_init:-systemd}" = none ] && kill -TERM "$npid"
        [ -n "${leader:-}" ] && nsenter -t "$leader" -a systemctl poweroff >/dev/null 2>&1
        for _ in $(seq 60); do kill -0 "$npid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$npid" 2>/dev/null && kill -KILL "$npid"
        wait "$npid" 2>/dev/null
    fi
    mountpoint -q "$run/root" && umount "$run/root"
    rm -rf "$run"
}

# Runs a command inside the container, with a clean environment.
ct() {
    nsenter -t "$leader" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 "$@"
}

passed=0
failed=0
# check DESCRIPTION COMMAND...: runs COMMAND, counts it, shows its output on failure.
check() {
    local what=$1
    shift
    if "$@" >"$run/out" 2>&1; then
        echo "ok - $what"
        passed=$((passed + 1))
    else
        echo "not ok - $what"
        sed 's/^/    /' "$run/out"
        failed=$((failed + 1))
    fi
}
# Polls COMMAND for up to SECONDS (tenths of a second apart).
within() {
    local seconds=$1
    shift
    local end=$((SECONDS + seconds))
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.1
    done
}

# Status and content type of a URL fetched inside the container, with a bounded wait.
fetch() { ct curl -sS --max-time 5 -o /dev/null -w '%{http_code} %{content_type}\n' "$@"; }
# expect_fetch WANT URL...: the fetch gives exactly WANT.
expect_fetch() {
    local want=$1
    shift
    local got
    got=$(fetch "$@") || return 1
    echo "got: $got, want: $want"
    [ "$got" = "$want" ]
}
