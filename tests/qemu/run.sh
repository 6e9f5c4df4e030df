#!/usr/bin/env bash
# The aarch64 QEMU stage: installs what the host needs, then builds the
# guest and runs the payload (default: the shipped end-to-end scenario).
# Arguments are passed on:  bash tests/qemu/run.sh --help
set -euo pipefail
cd "$(dirname "$0")/../.."

# need_apt: the project's one way of installing Debian packages.
. ./build.sh
say() { printf 'qemu: %s\n' "$*" >&2; }

command -v python3 >/dev/null || need_apt python3
need_apt qemu-system-arm cpio debian-archive-keyring
exec python3 tests/qemu/qemu_stage.py "$@"
