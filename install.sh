#!/usr/bin/env bash
# panda-breath for a Klipper host other than the Snapmaker U1 (Raspberry
# Pi, MainsailOS, ...), run from a clone of this repository:
#   ./install.sh [--host IP]     install, or update after a git pull
#   ./install.sh --uninstall     undo all of it
# Steps: link the module into Klipper's extras, install websocket-client
# into Klipper's Python, write panda_breath.cfg (panda-breath setup), add
# its include to printer.cfg, put the panda-breath command on PATH, add the
# [update_manager panda-breath] section to moonraker.conf (when you agree),
# restart Klipper (never during a print).  Running it again changes only
# what is missing.
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
MODULE="$REPO/klipper/extras/panda_breath.py"
CLI="$REPO/package/panda-breath/panda-breath"
WEBSOCKET_CLIENT_VERSION=1.9.2
INCLUDE_LINE="[include panda_breath.cfg]"
INCLUDE_RE='^[[:space:]]*\[[[:space:]]*include[[:space:]]+panda_breath\.cfg[[:space:]]*\]'
SECTION="update_manager panda-breath"
COMMAND_MARK="# the panda-breath command, written by install.sh"
DEPS_MARK=".panda-breath-installed-websocket-client"

KLIPPER_DIR=${KLIPPER_DIR:-$HOME/klipper}
KLIPPY_ENV=${KLIPPY_ENV:-$HOME/klippy-env}
CONFIG_DIR=${PRINTER_CONFIG_DIR:-$HOME/printer_data/config}
MOONRAKER_CONF=${MOONRAKER_CONF:-}
BIN_DIR=${PANDA_BREATH_BIN_DIR:-$HOME/.local/bin}
RESTART_CMD=${KLIPPER_RESTART_CMD:-}
HOST="" PORT="" UPDATER=ask RESTART=yes DRY_RUN="" UNINSTALL=""
NOT_RESTARTED=""
RESTART_OPTS=()
CHANGED=""

usage() {
    cat <<EOF
Usage: ./install.sh [options]

  --host IP             the Panda Breath's address (asked when missing and
                        no config exists yet)
  --port N              its HTTP port, if not 80
  --klipper DIR         Klipper's folder (default: \$KLIPPER_DIR or ~/klipper)
  --venv DIR            Klipper's Python environment (default: \$KLIPPY_ENV
                        or ~/klippy-env)
  --config DIR          folder with printer.cfg (default:
                        \$PRINTER_CONFIG_DIR or ~/printer_data/config)
  --moonraker-conf FILE moonraker.conf (default: <config>/moonraker.conf)
  --bin-dir DIR         where the panda-breath command goes (default:
                        ~/.local/bin)
  --updater yes|no      add the [update_manager panda-breath] section to
                        moonraker.conf without asking (no: only print it)
  --restart-cmd CMD     how to restart Klipper (default: sudo systemctl
                        restart klipper, when systemctl exists)
  --no-restart          do not restart Klipper
  --force               restart Klipper even while it prints
  --moonraker URL       Moonraker, asked whether Klipper prints
  --klipper-socket PATH Klipper's API socket, asked when Moonraker does not
                        answer
  --dry-run             say what would be done, change nothing
  --uninstall           undo everything this script does
  -h, --help            this help

websocket-client is installed with pip, which needs the network; offline,
point pip at a folder holding websocket_client-$WEBSOCKET_CLIENT_VERSION-py3-none-any.whl:
  PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/folder ./install.sh
EOF
}

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

# Run a command, or only show it with --dry-run.
act() {
    if [ -n "$DRY_RUN" ]; then
        say "  would run: $*"
    else
        "$@"
    fi
}

interactive() { [ -t 0 ] && [ -t 1 ]; }

# DIR as an absolute path (the command and moonraker.conf keep it).
absolute() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$PWD/$1" ;;
    esac
}

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --host) HOST=${2:?--host needs an address}; shift ;;
            --port) PORT=${2:?--port needs a number}; shift ;;
            --klipper) KLIPPER_DIR=${2:?}; shift ;;
            --venv) KLIPPY_ENV=${2:?}; shift ;;
            --config) CONFIG_DIR=${2:?}; shift ;;
            --moonraker-conf) MOONRAKER_CONF=${2:?}; shift ;;
            --bin-dir) BIN_DIR=${2:?}; shift ;;
            --updater)
                UPDATER=${2:-}
                case "$UPDATER" in yes|no) ;;
                    *) die "--updater takes yes or no" ;; esac
                shift ;;
            --restart-cmd) RESTART_CMD=${2:?}; shift ;;
            --no-restart) RESTART=no ;;
            --force) RESTART_OPTS+=(--force) ;;
            --moonraker|--klipper-socket)
                RESTART_OPTS+=("$1" "${2:?$1 needs a value}"); shift ;;
            --dry-run) DRY_RUN=1 ;;
            --uninstall) UNINSTALL=1 ;;
            -h|--help) usage; exit 0 ;;
            *) die "unknown option '$1' (try: ./install.sh --help)" ;;
        esac
        shift
    done
    KLIPPER_DIR=$(absolute "$KLIPPER_DIR")
    KLIPPY_ENV=$(absolute "$KLIPPY_ENV")
    CONFIG_DIR=$(absolute "$CONFIG_DIR")
    BIN_DIR=$(absolute "$BIN_DIR")
    MOONRAKER_CONF=${MOONRAKER_CONF:-$CONFIG_DIR/moonraker.conf}
    EXTRAS="$KLIPPER_DIR/klippy/extras"
    PY="$KLIPPY_ENV/bin/python"
    CONFIG="$CONFIG_DIR/panda_breath.cfg"
    if [ -z "$RESTART_CMD" ] && command -v systemctl >/dev/null; then
        RESTART_CMD="sudo systemctl restart klipper"
    fi
}

# The panda-breath command as this host runs it: Klipper's Python (it has
# websocket-client) when it is there.
cli() {
    local python=python3
    [ -x "$PY" ] && python=$PY
    "$python" "$CLI" "$@"
}

preflight() {
    [ -f "$MODULE" ] || die "$MODULE is missing: run install.sh from a" \
        "clone of the panda-breath repository"
    [ -d "$EXTRAS" ] || die "no Klipper at $KLIPPER_DIR ($EXTRAS is" \
        "missing): pass --klipper DIR"
    [ -d "$CONFIG_DIR" ] || die "no config folder $CONFIG_DIR: pass" \
        "--config DIR (the folder with printer.cfg)"
    [ -f "$CONFIG_DIR/printer.cfg" ] || die "no printer.cfg in" \
        "$CONFIG_DIR: pass --config DIR"
    if [ -z "$UNINSTALL" ]; then
        [ -x "$PY" ] || die "no Python at $PY: pass --venv DIR (Klipper's" \
            "virtual environment)"
        "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 8))' \
            || die "$PY is older than Python 3.8"
    fi
    say "Klipper: $KLIPPER_DIR, its Python: $KLIPPY_ENV, config: $CONFIG_DIR"
}

# -- install ---------------------------------------------------------------

link() {
    local target="$EXTRAS/panda_breath.py"
    if [ -L "$target" ] && [ "$(readlink "$target")" = "$MODULE" ]; then
        say "module: already linked ($target)"
    else
        [ -e "$target" ] && say "module: replacing $target with a link"
        say "module: linking $target -> $MODULE"
        act ln -sfn "$MODULE" "$target"
        CHANGED=1
    fi
    # Klipper's update manager would call Klipper's tree dirty otherwise
    local exclude="$KLIPPER_DIR/.git/info/exclude"
    if [ -d "$KLIPPER_DIR/.git" ] \
            && ! grep -qxF "klippy/extras/panda_breath.py" "$exclude" \
            2>/dev/null; then
        act sh -c 'mkdir -p "$(dirname "$1")" && echo "$2" >>"$1"' _ \
            "$exclude" "klippy/extras/panda_breath.py"
    fi
}

websocket_client_installed() {
    "$PY" - "$WEBSOCKET_CLIENT_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib import metadata
sys.exit(metadata.version("websocket-client") != sys.argv[1])
EOF
}

deps() {
    if websocket_client_installed; then
        say "websocket-client $WEBSOCKET_CLIENT_VERSION: already in $KLIPPY_ENV"
        return
    fi
    say "websocket-client $WEBSOCKET_CLIENT_VERSION: installing into $KLIPPY_ENV"
    act "$PY" -m pip install --quiet --disable-pip-version-check \
        "websocket-client==$WEBSOCKET_CLIENT_VERSION" \
        || die "pip could not install websocket-client" \
            "$WEBSOCKET_CLIENT_VERSION into $KLIPPY_ENV (offline? see" \
            "./install.sh --help)"
    act touch "$KLIPPY_ENV/$DEPS_MARK"
    CHANGED=1
}

config() {
    if [ -z "$HOST" ] && [ -f "$CONFIG" ]; then
        say "config: keeping $CONFIG (pass --host to write it again)"
        return
    fi
    if [ -z "$HOST" ] && interactive && [ -z "$DRY_RUN" ]; then
        read -r -p "The Panda Breath's IP address: " HOST
    fi
    if [ -z "$HOST" ]; then
        say "config: not written (no --host); write it later with:" \
            "panda-breath setup --host <Panda Breath IP address>"
        return
    fi
    local args=(setup --host "$HOST" --config-dir "$CONFIG_DIR" --no-restart)
    [ -n "$PORT" ] && args+=(--port "$PORT")
    say "config: checking the Panda Breath at $HOST and writing $CONFIG"
    act cli "${args[@]}" || die "panda-breath setup failed (above); fix" \
        "that and run install.sh again"
    CHANGED=1
}

add_include_line() {
    local cfg="$CONFIG_DIR/printer.cfg" tmp
    tmp=$(mktemp "$cfg.XXXXXX")
    awk -v line="$INCLUDE_LINE" '
        !done && /^#\*# <-+ SAVE_CONFIG -+>/ { print line; done = 1 }
        { print }
        END { if (!done) print line }
    ' "$cfg" >"$tmp"
    chmod --reference="$cfg" "$tmp"
    mv -f "$tmp" "$cfg"
}

include() {
    [ -f "$CONFIG" ] || [ -n "$DRY_RUN" ] || return 0
    if grep -Eq "$INCLUDE_RE" "$CONFIG_DIR/printer.cfg"; then
        say "include: printer.cfg includes panda_breath.cfg"
        return
    fi
    [ -f "$CONFIG" ] || [ -n "$HOST" ] || return 0
    say "include: adding $INCLUDE_LINE to $CONFIG_DIR/printer.cfg"
    act add_include_line
    CHANGED=1
}

command_on_path() {
    local target="$BIN_DIR/panda-breath"
    local text="#!/bin/sh
$COMMAND_MARK ($REPO/install.sh)
export PANDA_BREATH_CONFIG_DIR=\"\${PANDA_BREATH_CONFIG_DIR:-$CONFIG_DIR}\"
exec \"$PY\" \"$CLI\" \"\$@\""
    if [ -f "$target" ] && [ "$(cat "$target")" = "$text" ]; then
        say "command: $target is there"
    else
        if [ -e "$target" ] && ! grep -qF "$COMMAND_MARK" "$target"; then
            say "command: $target exists and is not ours: left alone"
            return
        fi
        say "command: writing $target"
        act mkdir -p "$BIN_DIR"
        act sh -c 'printf "%s\n" "$2" >"$1" && chmod 755 "$1"' _ \
            "$target" "$text"
    fi
    case ":$PATH:" in
        *":$BIN_DIR:"*) ;;
        *) say "command: $BIN_DIR is not on your PATH; log in again, or" \
            "run $target" ;;
    esac
}

updater_section() {
    local origin branch
    origin=$(git -C "$REPO" remote get-url origin 2>/dev/null) || return 1
    branch=$(git -C "$REPO" symbolic-ref --quiet --short HEAD 2>/dev/null) \
        || branch=main
    printf '[%s]\ntype: git_repo\npath: %s\norigin: %s\nprimary_branch: %s\nmanaged_services: klipper\n' \
        "$SECTION" "$REPO" "$origin" "$branch"
}

append_section() {
    local file=$1 text=$2
    [ -s "$file" ] && [ "$(tail -c1 "$file")" != "" ] && echo >>"$file"
    printf '\n%s' "$text" >>"$file"
}

updater() {
    if [ ! -f "$MOONRAKER_CONF" ]; then
        say "update manager: no $MOONRAKER_CONF, skipped"
        return
    fi
    if grep -Eq "^\[$SECTION\]" "$MOONRAKER_CONF"; then
        say "update manager: moonraker.conf has [$SECTION]"
        return
    fi
    local text
    if ! text=$(updater_section); then
        say "update manager: this clone has no 'origin' remote, so" \
            "Moonraker could not update it; skipped"
        return
    fi
    local answer=$UPDATER
    if [ "$answer" = ask ] && interactive; then
        read -r -p "Add [$SECTION] to $MOONRAKER_CONF, so Moonraker" \
            "updates panda-breath? [y/N] " answer
        case "$answer" in [yY]*) answer=yes ;; *) answer=no ;; esac
    fi
    if [ "$answer" != yes ]; then
        say "update manager: not added; to let Moonraker update" \
            "panda-breath, add this to $MOONRAKER_CONF (or run" \
            "./install.sh --updater yes):"
        say "" "$text"
        return
    fi
    say "update manager: adding [$SECTION] to $MOONRAKER_CONF"
    act append_section "$MOONRAKER_CONF" "$text"$'\n'
    say "update manager: restart Moonraker to load it (sudo systemctl" \
        "restart moonraker)"
}

restart() {
    if [ -z "$CHANGED" ]; then
        say "restart: nothing changed, Klipper keeps running"
        return
    fi
    if [ "$RESTART" = no ]; then
        say "restart: not restarting Klipper (--no-restart): restart it" \
            "to load the change"
        return
    fi
    local args=(restart --config-dir "$CONFIG_DIR" "${RESTART_OPTS[@]}")
    [ -n "$RESTART_CMD" ] && args+=(--restart-cmd "$RESTART_CMD")
    act cli "${args[@]}"
}

# -- uninstall -------------------------------------------------------------

# The config and its include go first, and Klipper restarts at once
# without them (panda-breath disable: never during a print; it also
# switches off a device left heating for the Klipper it stopped).
remove_config() {
    if [ ! -e "$CONFIG" ] && \
            ! grep -Eq "$INCLUDE_RE" "$CONFIG_DIR/printer.cfg"; then
        say "config: none"
        return
    fi
    say "config: removing $CONFIG and its include"
    local args=(disable --config-dir "$CONFIG_DIR")
    if [ "$RESTART" = no ]; then
        args+=(--no-restart)
    else
        args+=("${RESTART_OPTS[@]}")
        [ -n "$RESTART_CMD" ] && args+=(--restart-cmd "$RESTART_CMD")
    fi
    if ! act cli "${args[@]}"; then
        if [ -e "$CONFIG" ] \
                || grep -Eq "$INCLUDE_RE" "$CONFIG_DIR/printer.cfg"; then
            die "panda-breath disable failed (above): nothing else removed"
        fi
        NOT_RESTARTED=1
    fi
    CHANGED=1
}

remove_section() {
    local file=$1 tmp
    tmp=$(mktemp "$file.XXXXXX")
    # blank lines before the section go with it, unless a section follows
    awk -v name="$SECTION" '
        /^[ \t]*\[/ {
            ours = ($0 == "[" name "]")
            if (ours && !skip) { held = blanks; blanks = ""; skip = 1; next }
            if (!ours && skip) { skip = 0; blanks = held }
        }
        skip { next }
        /^[ \t]*$/ { blanks = blanks $0 "\n"; next }
        { printf "%s", blanks; blanks = ""; print }
        END { if (!skip) printf "%s", blanks }
    ' "$file" >"$tmp"
    chmod --reference="$file" "$tmp"
    mv -f "$tmp" "$file"
}

remove_updater() {
    if [ -f "$MOONRAKER_CONF" ] \
            && grep -Eq "^\[$SECTION\]" "$MOONRAKER_CONF"; then
        say "update manager: removing [$SECTION] from $MOONRAKER_CONF"
        act remove_section "$MOONRAKER_CONF"
    else
        say "update manager: no [$SECTION]"
    fi
}

remove_command() {
    local target="$BIN_DIR/panda-breath"
    if [ -f "$target" ] && grep -qF "$COMMAND_MARK" "$target"; then
        say "command: removing $target"
        act rm -f "$target"
    fi
}

unlink_module() {
    local target="$EXTRAS/panda_breath.py"
    if [ -L "$target" ] || [ -f "$target" ]; then
        say "module: removing $target"
        act rm -f "$target"
        act sh -c 'rm -f "$1"/__pycache__/panda_breath.*.pyc' _ "$EXTRAS"
    else
        say "module: not in $EXTRAS"
    fi
    local exclude="$KLIPPER_DIR/.git/info/exclude"
    if grep -qxF "klippy/extras/panda_breath.py" "$exclude" 2>/dev/null; then
        act sed -i '\#^klippy/extras/panda_breath\.py$#d' "$exclude"
    fi
}

remove_deps() {
    if [ ! -f "$KLIPPY_ENV/$DEPS_MARK" ]; then
        say "websocket-client: not installed by install.sh, left alone"
        return
    fi
    say "websocket-client: removing it from $KLIPPY_ENV"
    act "$PY" -m pip uninstall --quiet --yes websocket-client
    act rm -f "$KLIPPY_ENV/$DEPS_MARK"
}

main() {
    parse_args "$@"
    [ -n "$DRY_RUN" ] && say "Dry run: nothing is changed."
    preflight
    if [ -n "$UNINSTALL" ]; then
        # the include and config go before the module: Klipper refuses a
        # [panda_breath] section without its module
        remove_config
        remove_updater
        remove_command
        unlink_module
        remove_deps
        [ -n "$CHANGED" ] || say "restart: nothing changed, Klipper keeps" \
            "running"
        say "panda-breath removed. This clone ($REPO) stays; delete it" \
            "if you like."
        if [ -n "$NOT_RESTARTED" ]; then
            die "Klipper was not restarted (above): it unloads panda-breath" \
                "at its next restart"
        fi
        return
    fi
    link
    deps
    config
    include
    command_on_path
    updater
    restart
    say "Done. Check it: panda-breath status, and PANDA_BREATH_STATUS in" \
        "Klipper's console."
}

main "$@"
