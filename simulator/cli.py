"""`python -m simulator`: run the device in the foreground, with a console.

The console reads one command per line on stdin (type `help`). Without
stdin the simulator just runs until SIGINT/SIGTERM.
"""

import argparse
import http
import json
import logging
import shlex
import signal
import sys
import threading

from .api import Simulator
from .profiles import DEFAULT_FIRMWARE, PROFILES

PROG = "simulator"
FAULT_FLAGS = ("half_open", "mute", "refuse", "no_upgrade", "http_status=CODE",
               "slow_handshake=SECONDS", "sensor=open|short", "swap_leads",
               "chamber_file=freeze|garbage")
HELP = """commands:
  state                         the device's internal state
  fault half_open|mute|refuse|no_upgrade|swap_leads on|off
  fault http_status 404|500|off
  fault slow_handshake SECONDS  (0 = off)
  fault sensor open|short|off   thermistor fault (auto-off push)
  fault chamber_file freeze|garbage|off
                                the chamber file stops / holds a non-number
  send malformed|binary|fragmented|wrong_types
  send oversized [BYTES]        (default 1 MiB)
  drop                          drop every connection
  reboot [SECONDS]              reboot, back after SECONDS
  power_cycle [SECONDS]         power off for SECONDS, then on
  press KEY=VALUE ...           panel change, e.g. press work_on=true
  ambient CELSIUS               room temperature
  chamber CELSIUS               put the chamber air at CELSIUS now
  chamber_heat WATTS            extra heat into the chamber (0 = none)
  flash                         flash writes so far, by key
  frames [N]                    the last N frames received (default 10)
  help                          this text
  quit                          stop the simulator"""


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser():
    p = Parser(prog=PROG, description="Run a simulated BIQU Panda Breath.")
    p.add_argument("--firmware", default=DEFAULT_FIRMWARE,
                   help="firmware profile: " + ", ".join(sorted(PROFILES))
                   + " (default %(default)s)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=8080,
                   help="TCP port, 0 for any free one (default %(default)s)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="device time per wall second (default %(default)s)")
    p.add_argument("--ambient", type=float, default=25.0,
                   help="room temperature in C (default %(default)s)")
    p.add_argument("--max-clients", type=int, default=7,
                   help="socket limit of the HTTP server (default 7)")
    p.add_argument("--reboot-delay", type=float, default=3.0,
                   help="seconds a reboot keeps the device away (default 3)")
    p.add_argument("--push-interval", type=float, default=0.5,
                   help="seconds between temperature pushes (default 0.5)")
    p.add_argument("--snapshot-with-handshake", action="store_true",
                   help="send the snapshot in the same TCP write as the 101")
    p.add_argument("--nvs", metavar="PATH",
                   help="JSON file that keeps the settings across runs")
    p.add_argument("--mqtt-aliases", action="store_true",
                   help="1.0.4 only: accept the MQTT key aliases")
    p.add_argument("--chamber-file", metavar="PATH",
                   help="write the chamber air temperature there, in "
                   "millidegrees (for Klipper's temperature_host)")
    p.add_argument("--fault", action="append", default=[],
                   metavar="NAME[=VALUE]",
                   help="start with a fault: " + ", ".join(FAULT_FLAGS))
    p.add_argument("--no-console", action="store_true",
                   help="do not read commands from stdin")
    p.add_argument("--quiet", action="store_true",
                   help="log warnings only")
    return p


def parse_fault(text):
    """'NAME[=VALUE]' -> (name, value) for apply_fault."""
    name, _, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if name in ("half_open", "mute", "refuse", "no_upgrade", "swap_leads"):
        return name, parse_switch(value or "on")
    if name == "http_status":
        return name, parse_status(value)
    if name == "slow_handshake":
        return name, parse_seconds(value)
    if name == "sensor":
        if value not in ("open", "short", "off"):
            raise UsageError("sensor fault is open, short or off")
        return name, None if value == "off" else value
    if name == "chamber_file":
        if value not in ("freeze", "garbage", "off"):
            raise UsageError("chamber_file fault is freeze, garbage or off")
        return name, None if value == "off" else value
    raise UsageError(f"unknown fault {name!r} (faults: "
                     + ", ".join(FAULT_FLAGS) + ")")


def parse_switch(value):
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise UsageError(f"expected on or off, not {value!r}")


def parse_status(value):
    if value in ("off", "none", "0"):
        return None
    try:
        status = http.HTTPStatus(int(value))
    except ValueError:
        status = 0
    if status < 400:
        raise UsageError(f"http_status must be an HTTP error status such as "
                         f"404 or 500 (or off), not {value!r}")
    return int(status)


def parse_seconds(value, name="seconds"):
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= 3600:
        raise UsageError(f"{name} must be a number 0..3600, not {value!r}")
    return seconds


def apply_fault(sim, name, value):
    if name == "sensor":
        sim.sensor_fault(value)
    elif name == "chamber_file":
        sim.chamber_file_fault(value)
    elif name == "swap_leads":
        sim.swap_leads(value)
    else:
        sim.set_fault(name, value)


def parse_press(args):
    changes = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise UsageError(f"press wants KEY=VALUE, not {arg!r}")
        try:
            changes[key] = json.loads(value)
        except ValueError:
            changes[key] = value
    if not changes:
        raise UsageError("press wants at least one KEY=VALUE")
    return changes


def run_command(sim, line, out):
    """Run one console line; False once the user asked to quit."""
    words = shlex.split(line)
    if not words:
        return True
    cmd, args = words[0], words[1:]
    if cmd in ("quit", "exit"):
        return False
    if cmd == "help":
        print(HELP, file=out)
    elif cmd == "state":
        for key, value in sim.state().items():
            if isinstance(value, float):
                value = round(value, 2)
            print(f"{key}: {value}", file=out)
    elif cmd == "fault":
        if len(args) != 2:
            raise UsageError("usage: fault NAME VALUE (see help)")
        name, value = parse_fault(f"{args[0]}={args[1]}")
        apply_fault(sim, name, value)
        print(f"fault {name}: {args[1]}", file=out)
    elif cmd == "send":
        send(sim, args)
        print("sent", file=out)
    elif cmd == "drop":
        sim.drop_all()
    elif cmd in ("reboot", "power_cycle"):
        if len(args) > 1:
            raise UsageError(f"usage: {cmd} [SECONDS]")
        delay = parse_seconds(args[0]) if args else None
        getattr(sim, cmd)(delay)
    elif cmd == "press":
        sim.press(**parse_press(args))
    elif cmd == "ambient":
        if len(args) != 1:
            raise UsageError("usage: ambient CELSIUS")
        try:
            celsius = float(args[0])
        except ValueError:
            raise UsageError(f"not a temperature: {args[0]!r}") from None
        sim.set_ambient(celsius)
    elif cmd in ("chamber", "chamber_heat"):
        unit = "CELSIUS" if cmd == "chamber" else "WATTS"
        if len(args) != 1:
            raise UsageError(f"usage: {cmd} {unit}")
        try:
            value = float(args[0])
        except ValueError:
            raise UsageError(f"not a number: {args[0]!r}") from None
        if cmd == "chamber":
            sim.set_chamber(value)
        else:
            sim.set_chamber_heat(value)
    elif cmd == "flash":
        print(flash_line(sim.state()), file=out)
    elif cmd == "frames":
        count = int(args[0]) if args and args[0].isdigit() else 10
        for frame in sim.frames[-count:]:
            print(f"{frame.time:.3f} client {frame.client}: "
                  f"{frame.text[:200]!r}", file=out)
    else:
        raise UsageError(f"unknown command {cmd!r} (type help)")
    return True


def flash_line(state):
    """'flash writes: 4 (set_temp 2, work_mode 1, work_on 1)'."""
    by_key = sorted(state["flash_writes_by_key"].items(),
                    key=lambda kv: (-kv[1], kv[0]))
    detail = ", ".join(f"{key} {count}" for key, count in by_key)
    return f"flash writes: {state['flash_writes']}" + (
        f" ({detail})" if detail else "")


def send(sim, args):
    what = args[0] if args else ""
    if what == "oversized" and len(args) <= 2:
        size = 1 << 20
        if len(args) == 2:
            if not args[1].isdigit() or not 0 < int(args[1]) <= 1 << 24:
                raise UsageError("size must be 1..16777216 bytes")
            size = int(args[1])
        sim.send_oversized(size)
        return
    actions = {"malformed": sim.send_malformed, "binary": sim.send_binary,
               "fragmented": sim.send_fragmented,
               "wrong_types": sim.send_wrong_types}
    if what not in actions or len(args) != 1:
        raise UsageError("usage: send malformed|binary|oversized [BYTES]|"
                         "fragmented|wrong_types")
    actions[what]()


def console(sim, stop, stdin, out):
    """Read commands until quit or end of input."""
    for line in stdin:
        try:
            if not run_command(sim, line, out):
                stop.set()
                return
        except (UsageError, ValueError) as e:
            print(f"error: {e}", file=out)
        out.flush()


def main(argv=None, stdin=None, out=None):
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stdout if out is None else out
    try:
        args = build_parser().parse_args(argv)
        faults = [parse_fault(f) for f in args.fault]
        if not args.chamber_file and any(
                name == "chamber_file" for name, _ in faults):
            raise UsageError("the chamber_file fault needs --chamber-file")
        sim = Simulator(
            firmware=args.firmware, host=args.host, port=args.port,
            speed=args.speed, ambient=args.ambient,
            max_clients=args.max_clients, reboot_delay=args.reboot_delay,
            push_interval=args.push_interval,
            snapshot_with_handshake=args.snapshot_with_handshake,
            nvs_path=args.nvs, mqtt_aliases=args.mqtt_aliases,
            chamber_file=args.chamber_file)
    except (UsageError, ValueError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
        stream=sys.stderr)
    logging.getLogger("simulator.websockets").setLevel(logging.CRITICAL)
    try:
        sim.start()
    except OSError as e:
        print(f"{PROG}: error: cannot listen on {args.host}:{args.port}: "
              f"{e.strerror or e}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for name, value in faults:
            try:
                apply_fault(sim, name, value)
            except ValueError as e:
                print(f"{PROG}: error: {e}", file=sys.stderr)
                return 2
        print(f"Panda Breath {sim.device.profile.fw_version} simulator on "
              f"{sim.url} (type help)", file=out, flush=True)
        if args.chamber_file:
            logging.getLogger("simulator").info(
                "chamber air in %s (millidegrees)", args.chamber_file)
        if not args.no_console:
            threading.Thread(target=console, args=(sim, stop, stdin, out),
                             daemon=True).start()
        while not stop.wait(0.2):
            pass
        print(flash_line(sim.state()), file=out, flush=True)
    finally:
        sim.stop()
    return 0
