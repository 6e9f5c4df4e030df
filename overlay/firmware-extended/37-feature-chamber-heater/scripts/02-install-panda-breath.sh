#!/bin/sh
# Firmware build step of the chamber heater feature: install this
# project's panda-breath packages, carried in ../packages, into the root
# filesystem the way opkg would, offline: their files (the Klipper module
# panda_breath.py in Klipper's extras, owned by lava, 1000:1000; the
# websocket-client library it needs; the panda-breath command) and opkg's
# database, so that opkg on a devel build knows they are installed.
# Maintainer scripts are not run: nothing is configured at build time.
#
# opkg's database for `dest root /` is <libdir>/opkg/status plus
# <libdir>/opkg/info/<package>.{control,list,conffiles,<scripts>}, where
# libdir is built into opkg: /usr/lib for OpenWrt's opkg, /opt/lib for
# Entware's.  /opt on the U1 is mounted from /userdata at boot, out of the
# firmware's reach, so the records go to /usr/lib/opkg here and
# /etc/init.d/S99panda-breath-opkg copies them to /opt/lib/opkg when
# Entware is active.
#
# POSIX sh: runs under bash on the build host and under BusyBox ash.

if [ -z "${CREATE_FIRMWARE:-}" ]; then
    echo "Error: run this from the firmware build (create_firmware.sh)," \
        "which sets CREATE_FIRMWARE and ROOTFS_DIR." >&2
    exit 1
fi

set -eu

ROOTFS_DIR=${ROOTFS_DIR:-${1:-}}
if [ -z "$ROOTFS_DIR" ] || [ ! -d "$ROOTFS_DIR" ]; then
    echo "Error: ROOTFS_DIR '$ROOTFS_DIR' is not a directory." >&2
    exit 1
fi
ROOTFS_DIR=$(cd "$ROOTFS_DIR" && pwd)
[ "$ROOTFS_DIR" = / ] && ROOTFS_DIR=

PACKAGES_DIR=$(cd "$(dirname "$0")/../packages" 2>/dev/null && pwd) || {
    echo "Error: no packages folder next to scripts/: build the overlay" \
        "with ./build.sh, which puts the .ipk files there." >&2
    exit 1
}
OPKG_DIR="$ROOTFS_DIR/usr/lib/opkg"
EXTRAS="$ROOTFS_DIR/home/lava/klipper/klippy/extras"
MODULE="$EXTRAS/panda_breath.py"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/panda-breath.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 1' INT TERM

die() {
    echo "Error: $*" >&2
    exit 1
}

# The single .ipk of a package in PACKAGES_DIR.
find_ipk() {
    found=
    for ipk in "$PACKAGES_DIR/$1"_*.ipk; do
        [ -f "$ipk" ] || continue
        [ -z "$found" ] || die "more than one $1 package in $PACKAGES_DIR"
        found=$ipk
    done
    [ -n "$found" ] || die "no $1 package in $PACKAGES_DIR"
    echo "$found"
}

field() {
    sed -n "s/^$1: *//p" "$2" | head -n 1
}

# Print the status file without the paragraph of package $1.
status_without() {
    [ -f "$OPKG_DIR/status" ] || return 0
    awk -v name="$1" '
        /^Package: / { skip = ($2 == name) }
        skip && /^$/ { skip = 0; next }
        !skip { print }
    ' "$OPKG_DIR/status"
}

install_ipk() {
    ipk=$1
    how=$2                      # user, or auto for a dependency
    unpack="$WORK/unpack"
    rm -rf "$unpack"
    mkdir -p "$unpack/control"
    (cd "$unpack" && tar -xzf "$ipk") \
        || die "$ipk is not an opkg package (gzip tar)"
    [ "$(cat "$unpack/debian-binary" 2>/dev/null)" = 2.0 ] \
        || die "$ipk has no debian-binary 2.0"
    tar -xzf "$unpack/control.tar.gz" -C "$unpack/control"
    control="$unpack/control/control"
    name=$(field Package "$control")
    version=$(field Version "$control")
    [ -n "$name" ] && [ -n "$version" ] || die "$ipk has no Package/Version"

    echo ">> Installing $name $version"
    tar -xzf "$unpack/data.tar.gz" -C "$ROOTFS_DIR/"

    mkdir -p "$OPKG_DIR/info"
    rm -f "$OPKG_DIR/info/$name".*
    tar -tzf "$unpack/data.tar.gz" \
        | sed -e '/\/$/d' -e 's#^\./#/#' -e 's#^\([^/]\)#/\1#' \
        > "$OPKG_DIR/info/$name.list"
    for file in "$unpack/control"/*; do
        cp "$file" "$OPKG_DIR/info/$name.$(basename "$file")"
    done

    {
        status_without "$name"
        echo "Package: $name"
        echo "Version: $version"
        depends=$(field Depends "$control")
        [ -z "$depends" ] || echo "Depends: $depends"
        if [ "$how" = auto ]; then
            echo "Status: install ok installed"
        else
            echo "Status: install user installed"
        fi
        echo "Architecture: $(field Architecture "$control")"
        if [ -s "$unpack/control/conffiles" ]; then
            echo "Conffiles:"
            while read -r conffile; do
                [ -n "$conffile" ] || continue
                sum=$(sha256sum "$ROOTFS_DIR$conffile" | cut -d' ' -f1)
                echo " $conffile $sum"
            done < "$unpack/control/conffiles"
        fi
        echo "Installed-Time: $(date +%s)"
        [ "$how" != auto ] || echo "Auto-Installed: yes"
        echo
    } > "$WORK/status"
    cat "$WORK/status" > "$OPKG_DIR/status"
}

# Klipper must be there first: its folders belong to lava, and a tar
# extracted into a missing tree would create them owned by root.
[ -d "$EXTRAS" ] || die "no Klipper in the root filesystem" \
    "($EXTRAS is missing): this feature needs the firmware's Klipper"

websocket=$(find_ipk python3-websocket)
panda_breath=$(find_ipk panda-breath)
install_ipk "$websocket" auto
install_ipk "$panda_breath" user

# Klipper loads extras only from its extras folder, and at build time no
# maintainer script runs to link the module there: wherever the package
# keeps panda_breath.py, a real copy goes into extras.
if [ -L "$MODULE" ] || [ ! -f "$MODULE" ]; then
    shipped=$(grep '/panda_breath\.py$' "$OPKG_DIR/info/panda-breath.list" \
        | while read -r path; do
            [ -f "$ROOTFS_DIR$path" ] && [ ! -L "$ROOTFS_DIR$path" ] \
                && echo "$ROOTFS_DIR$path"
        done | head -n 1)
    [ -n "$shipped" ] || die "the panda-breath package has no panda_breath.py"
    rm -f "$MODULE"
    cp "$shipped" "$MODULE"
fi
chown 1000:1000 "$MODULE"
chmod 644 "$MODULE"
echo ">> panda-breath installed; enable it in Firmware Config" \
    "(chamber heater: Panda Breath)"
