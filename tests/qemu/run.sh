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
# PANDA_SKIP=qemu: the stage says it is skipped and boots nothing, so
# nothing needs installing.
case ",${PANDA_SKIP:-}," in
    *,qemu,*) [ $# -eq 0 ] && exec python3 tests/qemu/qemu_stage.py ;;
esac
# QEMU, the guest image's tools, and the cross compiler for the U1's
# Klipper (its host MCU and C helper are built here for aarch64).
need_apt qemu-system-arm cpio debian-archive-keyring make \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross
exec python3 tests/qemu/qemu_stage.py "$@"
