#!/usr/bin/env bash
# panda-breath: the one entry point.
#   ./build.sh            build dist/ (both .ipk, the feed, the overlay tarball)
#   ./build.sh test       run every test (pytest, then the aarch64 QEMU stage)
#   ./build.sh parts      fetch or build the real parts the tests run
#   ./build.sh sim ...    run the Panda Breath simulator in the foreground
#   ./build.sh qemu       boot the packages in an aarch64 guest and test them
#   ./build.sh bench ...  measure what the module costs Klipper
# Set-up (virtual environment, pinned dependencies, Debian packages) is done
# here on first use, so a fresh Debian 12 machine needs nothing else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

say() { printf '%s\n' "$*" >&2; }
die() { say "build.sh: $*"; exit 1; }

# No process outlives a test run: every process it starts carries the
# run's token (tests/leaks.py); whatever still runs when the run ends,
# however it ends, is killed, named, and fails the run.
leftover_guard() {
    local token="build-$$-$RANDOM$RANDOM"
    export PANDA_TEST_RUN="${PANDA_TEST_RUN:+$PANDA_TEST_RUN }$token"
    # shellcheck disable=SC2064  # the token is fixed now
    trap "rc=\$?; python3 '$ROOT/tests/leaks.py' '$token' './build.sh $1' \
        || { [ \$rc -ne 0 ] || rc=1; }; exit \$rc" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Install Debian packages that are missing (root or passwordless sudo).
need_apt() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null && sudo -n true 2>/dev/null \
            || die "please install: ${missing[*]} (needs root)"
        sudo="sudo -n"
    fi
    say "installing Debian packages: ${missing[*]}"
    # Try the lists the host already has; refresh only if that fails, and
    # then only the host's Debian archives, never third-party sources.
    # Wait for another apt (other work on the machine) rather than fail.
    local wait=(-o DPkg::Lock::Timeout=600)
    DEBIAN_FRONTEND=noninteractive $sudo apt-get "${wait[@]}" install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null 2>&1 && return 0
    local tmp
    tmp=$(mktemp -d)
    mkdir "$tmp/parts"
    python3 tests/qemu/qemu_stage.py --debian-sources >"$tmp/sources.list"
    $sudo apt-get "${wait[@]}" update -qq -o Dir::Etc::SourceList="$tmp/sources.list" \
        -o Dir::Etc::SourceParts="$tmp/parts" -o APT::Get::List-Cleanup=false
    rm -rf "$tmp"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get "${wait[@]}" install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}

# The virtual environment, rebuilt whenever the pinned requirements change.
need_venv() {
    local stamp="$VENV/.requirements.sha256" want
    want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
    [ -x "$PY" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "Python 3.11 or newer is required"
    python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
        || need_apt python3-venv
    say "setting up $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --disable-pip-version-check \
        -r requirements-dev.txt
    echo "$want" >"$stamp"
}

# The real parts the test layers need (tests/realparts.py): Klipper
# (upstream and the U1 fork), opkg (x86_64 and aarch64) and Moonraker, from
# the PANDA_* variables, ../shared, or fetched and built into .cache at the
# pinned commits.  One line for each that cannot be had, and exit 1;
# PANDA_SKIP=<layer>,... skips layers (and so their parts) on purpose.
cmd_parts() {
    need_venv
    local debs
    debs=$("$PY" -m tests.realparts debs) || exit 2
    # shellcheck disable=SC2086  # a list of package names
    [ -z "$debs" ] || need_apt $debs
    "$PY" -m tests.realparts prepare "$@" || exit 1
}

cmd_build() {
    need_venv
    "$PY" -m package.build "$@"
}

cmd_test() {
    leftover_guard test
    need_venv
    # Maintainer and overlay scripts are also run under BusyBox ash, the
    # shell of the U1 and of the QEMU guest.
    need_apt busybox gcc make libc6-dev
    cmd_parts
    cmd_build >/dev/null
    rm -f dist/qemu/parts.json
    local rc=0 start=$SECONDS pytest_s
    # Most tests wait on real Klipper, the simulator and timeouts rather
    # than on the CPU: three workers share the two cores well.
    "$PY" -m pytest -n "${PANDA_TEST_WORKERS:-3}" --dist loadfile \
        --junitxml=dist/pytest.xml "$@" || rc=$?
    [ "$rc" -eq 5 ] && die "pytest collected no tests"
    [ "$rc" -eq 0 ] || exit "$rc"
    pytest_s=$((SECONDS - start))
    bash tests/qemu/run.sh
    # The figures of this run (dist/test-run.md; PANDA_DOC=1 also puts
    # them into docs/development.md).
    "$PY" -m tests.testrun --junit dist/pytest.xml \
        --pytest-seconds "$pytest_s" \
        --qemu-seconds "$((SECONDS - start - pytest_s))" ${PANDA_DOC:+--doc}
}

cmd_sim() {
    need_venv
    exec "$PY" -m simulator "$@"
}

cmd_qemu() {
    leftover_guard qemu
    need_venv
    cmd_build >/dev/null
    bash tests/qemu/run.sh "$@"
}

cmd_bench() {
    need_venv
    # What fetching the Klipper trees needs, when they are not there yet
    # (the bench fetches them as the tests do, tests/realparts.py).
    local debs
    debs=$("$PY" -m tests.realparts debs --part klipper-upstream \
        --part klipper-u1) || exit 2
    # shellcheck disable=SC2086  # a list of package names
    [ -z "$debs" ] || need_apt $debs
    exec "$PY" -m tests.bench "$@"
}

main() {
    case "${1:-build}" in
        build) shift || true; cmd_build "$@" ;;
        test) shift; cmd_test "$@" ;;
        parts) shift; cmd_parts "$@" ;;
        sim) shift; cmd_sim "$@" ;;
        qemu) shift; cmd_qemu "$@" ;;
        bench) shift; cmd_bench "$@" ;;
        -h|--help|help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' ;;
        *) die "unknown command '$1' (try: ./build.sh help)" ;;
    esac
}

# Sourced (by tests/qemu/run.sh) for its helpers only.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
