#!/usr/bin/env bash
# The aarch64 QEMU stage: installs what the host needs, then builds the
# guest and runs the payload (default: the shipped end-to-end scenario).
# Arguments are passed on:  bash tests/qemu/run.sh --help
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf 'qemu: %s\n' "$*" >&2; }

# Debian packages for the host side (root or passwordless sudo).
need_apt() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null && sudo -n true 2>/dev/null || {
            say "please install: ${missing[*]} (needs root)"; exit 2; }
        sudo="sudo -n"
    fi
    say "installing Debian packages: ${missing[*]}"
    # Try the lists the host already has first; refresh only if that fails,
    # and then only the host's Debian archives (never third-party sources
    # the host may list), keeping the other lists as they are.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
        local tmp
        tmp=$(mktemp -d)
        mkdir "$tmp/parts"
        python3 tests/qemu/qemu_stage.py --debian-sources >"$tmp/sources.list"
        $sudo apt-get update -qq -o Dir::Etc::SourceList="$tmp/sources.list" \
            -o Dir::Etc::SourceParts="$tmp/parts" -o APT::Get::List-Cleanup=false
        rm -rf "$tmp"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
            --no-install-recommends "${missing[@]}" >/dev/null
    }
}

command -v python3 >/dev/null || need_apt python3
need_apt qemu-system-arm cpio debian-archive-keyring
exec python3 tests/qemu/qemu_stage.py "$@"
