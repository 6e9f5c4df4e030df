"""A real Klipper printer for tests: klippy plus its Linux host MCU.

Started from a built tree (trees.prepare) with the project's Python, driven
only through Klipper's API socket."""
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

from realklipper.api import APIError, KlippyAPI

BASE = """\
[mcu]
serial: {run}/mcu_tty

[printer]
kinematics: none
max_velocity: 1
max_accel: 1
{printer_extra}
"""
PROBE = "[reactor_probe]\n\n"
# The U1 fork's toolhead requires these (its own config uses 32 and 4).
U1_PRINTER = "max_logical_extruder_num: 4\nmax_physical_extruder_num: 4\n"


# Klipper logs this one itself and retries: a host MCU that restarts
# while klippy asks for its identify data. Nothing of the module's runs
# in it, so it is the only traceback a test may see.
KLIPPER_OWN = "Wait for identify_response"


def tracebacks(text):
    """The tracebacks in a klippy log or stderr, each as one string,
    less Klipper's own recoverable identify retry (KLIPPER_OWN)."""
    found = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last):"):
            continue
        end = i + 1
        while end < len(lines) and lines[end].startswith(" "):
            end += 1
        block = lines[max(i - 1, 0):end + 1]
        frames = [row for row in block
                  if row.lstrip().startswith("File ")]
        own = (i > 0 and lines[i - 1].endswith(KLIPPER_OWN)
               and frames and all("serialhdl.py" in f for f in frames))
        if not own:
            found.append("\n".join(block))
    return found


class StartupError(Exception):
    """Klipper did not become ready; the message is Klipper's own."""


class Printer:
    def __init__(self, tree, name, config, workdir, wrap=(), probe=True,
                 env=None):
        """wrap: a command prefix for klippy; probe: load the reactor
        probe (it wakes klippy every 10 ms); env: extra environment."""
        self.tree = pathlib.Path(tree)
        self.wrap = list(wrap)
        self.name = name
        self.run = pathlib.Path(workdir)
        self.run.mkdir(parents=True, exist_ok=True)
        self.cfg = self.run / "printer.cfg"
        extra = U1_PRINTER if name == "u1" else ""
        self.cfg.write_text(BASE.format(run=self.run, printer_extra=extra)
                            + (PROBE if probe else "") + config)
        self.env = dict(env or {})
        self.sock = self.run / "api.sock"
        self.mcu = self.klippy = self.api = None
        self.stderr_path = self.run / "klippy.stderr"
        self.lines = []

    # Processes
    def start(self, timeout=60.0, ready=True):
        """Start the MCU and klippy; wait for 'ready' (raise StartupError
        with Klipper's message if it ends in another state).  If the
        start fails, both are stopped before it raises: a Klipper that
        refused to start leaves no process behind (its logs stay)."""
        try:
            return self._start(timeout, ready)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout, ready):
        self._start_mcu()
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        with open(self.stderr_path, "ab") as err:
            self.klippy = subprocess.Popen(
                self.wrap + [
                    sys.executable, str(self.tree / "klippy" / "klippy.py"),
                    str(self.cfg), "-a", str(self.sock),
                    "-l", str(self.run / "klippy.log"),
                    # not the default /tmp/printer, which parallel
                    # klippys (or a real one) would fight over
                    "-I", str(self.run / "printer")],
                cwd=self.run, stdout=err, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        return self.wait_ready(timeout) if ready else None

    def _start_mcu(self):
        tty = self.run / "mcu_tty"
        if tty.is_symlink():
            tty.unlink()
        self.mcu = subprocess.Popen(
            [str(self.tree / "out" / "klipper.elf"), "-I", str(tty)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 10
        while not tty.exists():
            if time.monotonic() > deadline or self.mcu.poll() is not None:
                raise StartupError("Linux host MCU did not start")
            time.sleep(0.01)
        # The host MCU's clock counts from the next whole second of
        # CLOCK_MONOTONIC after it started, from just below 2**32.  A
        # klippy that reads the uptime within milliseconds after that
        # wrap derives a negative clock and stops ("can't convert
        # negative number to unsigned").  A real printer's MCU has long
        # passed it: start klippy once this one has too.
        time.sleep(math.floor(time.monotonic()) + 1.1 - time.monotonic())

    def connect_api(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            if self.klippy.poll() is not None:
                raise StartupError("klippy exited (%s): %s" % (
                    self.klippy.returncode, self.stderr()[-2000:]))
            try:
                self.api = KlippyAPI(str(self.sock))
                return self.api
            except OSError:
                if time.monotonic() > deadline:
                    raise StartupError(
                        "no API socket at %s" % (self.sock,)) from None
                time.sleep(0.05)

    def wait_ready(self, timeout=60.0):
        """Wait until Klipper is ready; return its info."""
        deadline = time.monotonic() + timeout
        while True:
            if self.api is None or self.api.closed.is_set():
                self.api = None
                self.connect_api(max(1.0, deadline - time.monotonic()))
            try:
                info = self.api.info()
            except APIError:
                info = {"state": "startup"}
            if info["state"] == "ready":
                self.api.subscribe_output()
                return info
            if info["state"] in ("error", "shutdown"):
                raise StartupError(info.get("state_message", ""))
            if time.monotonic() > deadline:
                raise StartupError("not ready after %.0f s: %s" % (
                    timeout, info.get("state_message", "")))
            time.sleep(0.1)

    def restart(self, command="RESTART", timeout=60.0):
        """RESTART or FIRMWARE_RESTART, then wait for ready again."""
        old = self.api
        try:
            old.gcode(command, timeout=5)
        except APIError:
            pass        # the reply may be lost with the socket
        old.closed.wait(15)
        self.console()
        old.close()
        self.api = None
        return self.wait_ready(timeout)

    def stop(self):
        """SIGTERM klippy, then the MCU; return klippy's exit code."""
        if self.api is not None:
            self.api.close()
            self.api = None
        code = None
        for proc in (self.klippy, self.mcu):
            if proc is None or proc.poll() is not None:
                continue
            # it and anything it started, in its own session (its group
            # id stays its own until it is reaped)
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self.klippy is not None:
            code = self.klippy.returncode
        return code

    # What Klipper says
    def log(self):
        path = self.run / "klippy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stderr(self):
        p = self.stderr_path
        return p.read_text(errors="replace") if p.exists() else ""

    # Driving it
    def gcode(self, script, timeout=30.0):
        return self.api.gcode(script, timeout)

    def output(self, script, timeout=30.0):
        """Run script; return the console lines it printed."""
        self.console()
        seen = len(self.lines)
        self.api.gcode(script, timeout)
        return self.console()[seen:]

    def console(self):
        """Every console line (respond_info, errors) since ready."""
        if self.api is not None:
            while not self.api.output.empty():
                self.lines.append(self.api.output.get())
        return self.lines

    def wait_console(self, text, timeout=10.0):
        """Wait for a console line containing text; return it."""
        return self.wait_for(lambda: next(
            (line for line in self.console() if text in line), None),
            timeout)

    def state(self):
        """(state, message) from info; the U1 fork's JSON-coded
        shutdown messages are decoded to their text."""
        info = self.api.info()
        message = info.get("state_message", "")
        if message.startswith('{"coded"'):
            try:
                coded, _ = json.JSONDecoder().raw_decode(message)
                message = coded["msg"]
            except (ValueError, KeyError):
                pass
        return info["state"], message

    def status(self, name, fields=None):
        return self.api.query({name: fields})[name]

    def wait_for(self, predicate, timeout=10.0, interval=0.05):
        """Poll predicate() until true; return its value or raise
        AssertionError naming the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("not true within %.1f s" % (timeout,))
            time.sleep(interval)
