"""The world the safety rule lives in, its events and its oracle.

A World is one simulator (the device, its real state) and one real Klipper
(klippy and its Linux host MCU, upstream or the U1 fork, driven through
its API socket) running the module against it over loopback.  step(name,
*args) applies one event, then lets the system settle and checks the rule
against what the device really is and really received:

1. while the link is up, the device heats only if Klipper's chamber target
   is above 0 or the user started the session (drying, auto) on the device;
2. after any disturbance the device converges within the module's
   reconnect back-off plus one second once the link is back (and a target
   Klipper set reaches the device within that bound);
3. a Klipper shutdown turns the device off whatever its mode, and only a
   new target after Klipper is ready again undoes it;
4. the module never sends a value outside the device's ranges, work_on
   only as a JSON bool, never printer_type / reset / factory_reset;
5. no module callback holds the reactor for the stall limit or longer
   (the reactor probe's lateness, tests/realklipper).

Every event is recorded in ``script`` as a tuple; replay.replay() runs a
script again, and a violation's message ends with the script to replay.
"""
import functools
import queue
import shutil
import tempfile
import time

from chamber import FAST, chamber_config
from realklipper import trees
from realklipper.api import APIError
from realklipper.conftest import HOLD_FIELDS, stall_problem
from realklipper.printer import Printer, StartupError

from simulator import Simulator

# The module's quickest settings: the shortest reconnect back-off and
# link timeout it accepts, and a low back-off cap so a run stays short.
OPTIONS = dict(FAST, reconnect_delay=0.1, reconnect_max_delay=0.4,
               link_timeout=2.0)
# Rule 2: the longest back-off plus one second once the link is back.
BOUND = OPTIONS["reconnect_max_delay"] + 1.0
MAX_TEMP = 70
DEVICE_MAX = 60
HEATER = "heater_generic chamber"
# SET_HEATER_TEMPERATURE goes through the toolhead, so Klipper's idle
# timeout runs after each; the idle_timeout event shortens it for a moment.
IDLE_CONFIG = "\n[idle_timeout]\ntimeout: 3600\ngcode: TURN_OFF_HEATERS\n"
IDLE_NOW = "SET_IDLE_TIMEOUT TIMEOUT=0.1\nG4 P1"
IDLE_LATER = "SET_IDLE_TIMEOUT TIMEOUT=3600"
SIMULATOR = dict(push_interval=0.05, reboot_delay=0.05, speed=50.0)
POLL = 0.02

ACCEPTED = {"work_mode": (1, 3), "set_temp": (0, DEVICE_MAX),
            "temp": (0, DEVICE_MAX), "filament_drying_mode": (1, 3),
            "filament_temp": (40, DEVICE_MAX), "filament_timer": (1, 99),
            "isrunning": (0, 1), "hotbedtemp": (40, 120),
            "filtertemp": (0, 120)}
ALWAYS_ON = 2
PRESSES = {
    "drying": dict(work_on=True, work_mode=3, isrunning=1),
    "auto": dict(work_on=True, work_mode=1),
    "always_on": dict(work_on=True, work_mode=ALWAYS_ON),
    "on": dict(work_on=True),
    "off": dict(work_on=False),
}
INITIAL = {
    "off": dict(work_on=False),
    "auto": dict(work_on=True, work_mode=1),
    "drying": dict(work_on=True, work_mode=3, isrunning=1),
    # an always-on device that came back from a power cut heating
    "always_on": dict(work_on=True, work_mode=ALWAYS_ON, set_temp=50),
}
LINK_FAULTS = ("half_open", "mute", "refuse", "no_upgrade")
# Faults in which the device's pushes are lost.
SILENT_FAULTS = ("half_open", "mute")
# A connection attempt caught by these waits out connect_timeout first.
HANDSHAKE_FAULTS = ("half_open", "no_upgrade")
# The simulator's half-open device drops the pushes it would have sent.
# Over real TCP a blink is retransmitted and nothing is lost; pushes are
# lost only in a real outage.  So an outage that hid a push (a panel press,
# a sensor fault) lasts at least this long: longer than the silence (three
# missed 0.5 s pushes) after which a client must re-read the device.
HIDDEN_PUSH_OUTAGE = 1.6
DRY = {"pla": "PRESET=PLA", "custom": "TEMP=45 HOURS=1"}
AUTO = {"on": "TARGET=45 HEAT_AT=60 FAN_AT=40", "off": "ENABLE=0"}
BAD_FRAMES = {"malformed": "send_malformed", "oversized": "send_oversized",
              "binary": "send_binary", "wrong_types": "send_wrong_types"}


class WorldTimeout(Exception):
    pass


@functools.lru_cache(maxsize=None)
def built_tree(name):
    """The built copy of a Klipper tree (trees.prepare), once a process."""
    return trees.prepare(name)


def wait_until(predicate, timeout):
    """Poll predicate() until true; raise WorldTimeout after timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise WorldTimeout("not true within %.1f s" % (timeout,))
        time.sleep(POLL)


class SafetyViolation(AssertionError):
    pass


def format_script(script):
    lines = ["replay(["] + ["    %r," % (event,) for event in script]
    return "\n".join(lines + ["])"])


def device_set_temp(target):
    """What the device should hold for a Klipper target: whole degrees,
    0..60 (computed here independently of the module)."""
    return max(0, min(DEVICE_MAX, int(round(target))))


class Latch:
    """Rule 3: a Klipper shutdown, open until a new target after Klipper
    is ready again (or the user starts a new session then)."""

    def __init__(self, start, why):
        self.start = start
        self.why = why
        self.off_at = None  # arrival of the first work_on false after it
        self.end = None

    def undone_by(self, frame):
        """A work_on true arriving after the shutdown's off arrived.
        (Frames sent before the shutdown may still arrive before the off,
        e.g. from a silent link; those are no undo.)"""
        on = frame.data["settings"].get("work_on")
        if self.end is not None and frame.time >= self.end:
            return False
        if on is False and frame.time > self.start and self.off_at is None:
            self.off_at = frame.time
        return on is True and self.off_at is not None


class World:
    # Called with every violation's text as it happens (the long run logs
    # them: a failure that does not recur while shrinking is still seen).
    report = None

    def __init__(self, firmware="1.0.3", tree="upstream"):
        self.firmware = firmware
        self.tree = tree
        self.script = []
        self.sim = self.k = None
        self.workdir = None
        # RESTART after a shutdown leaves Klipper in its error state (the
        # MCU is still shut down) until FIRMWARE_RESTART: no module runs.
        self.klipper_error = False
        self.faults = set()
        self.calm_since = 0.
        self.bound = BOUND
        self.user_session = False
        self.klipper_session = False    # started by PANDA_BREATH_DRY/AUTO
        self.intent = None
        self.latches = []
        self.frames_seen = 0
        self.shutdown_seen = False
        self.steps = 0
        self.broken = False
        self.half_open_since = None
        self.hidden_push = False
        self.responses = []  # Klipper's console, kept after close()
        self.log = ""        # klippy.log, kept after close()

    # Set-up and tear-down
    def start(self, initial="off"):
        self.script.append(("initial", initial))
        self.sim = Simulator(firmware=self.firmware, **SIMULATOR).start()
        self.sim.press(**INITIAL[initial])
        self.user_session = initial in ("auto", "drying")
        self.workdir = tempfile.mkdtemp(prefix="safety-")
        started = time.monotonic()
        try:
            self.k = Printer(built_tree(self.tree), self.tree, chamber_config(
                self.sim.port, options=OPTIONS, max_temp=MAX_TEMP,
                extra=IDLE_CONFIG), self.workdir)
            self.k.start()
            self._watch_console()
            wait_until(lambda: self.k.status("panda_breath")["connected"],
                       timeout=10.)
            self.calm_since = started
            self.settle(started)
        except BaseException:
            self.broken = True
            raise
        return self

    def finish(self):
        """Let the system settle one last time and check the rule."""
        self.step("wait", 0.2)

    def close(self):
        k, sim, self.k, self.sim = self.k, self.sim, None, None
        try:
            if k is not None:
                self._read_console(k)
                k.stop()
                self.log = k.log()
        finally:
            if sim is not None:
                sim.stop()
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Events
    def step(self, name, *args):
        self.script.append((name,) + args)
        self.steps += 1
        started = time.monotonic()
        try:
            getattr(self, "ev_" + name)(*args)
            self.settle(started)
        except BaseException:
            self.broken = True
            raise

    def ev_initial(self, initial):
        raise ValueError("'initial' is only the first event of a script")

    # Klipper, through its API socket
    def _watch_console(self):
        self.k.api.subscribe_output()

    def _read_console(self, k=None):
        k = k or self.k
        if k is None or k.api is None:
            return
        while True:
            try:
                self.responses.append(k.api.output.get_nowait())
            except queue.Empty:
                return

    def _info(self):
        return self.k.api.info()

    def is_shutdown(self):
        return self._info()["state"] == "shutdown"

    def target(self):
        return self.k.status(HEATER, ["target"])["target"]

    def _gcode(self, script):
        try:
            self.k.gcode(script)
            return True
        except APIError:
            return False  # e.g. "Printer is shutdown": nothing changed

    def ev_set_target(self, target):
        if not self._gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=%s"
                           % (target,)):
            return
        if not target > 0:
            self.intent = None
        else:
            # Every set is Klipper's intent, the same target again too,
            # also after the user took the device over.
            self.intent = device_set_temp(target)
            self._end_latch()

    def ev_dry(self, kind):
        asked = time.monotonic()
        if self._gcode("PANDA_BREATH_DRY " + DRY[kind]):
            self._klipper_session_started(asked)

    def _klipper_session_started(self, asked):
        # The oracle forgets a session while the device is off: wait
        # until the device shows it (frames lost with a link may never).
        try:
            wait_until(lambda: self.sim.state()["work_on"],
                       timeout=self.bound)
        except WorldTimeout:
            pass
        self.user_session = self.klipper_session = True
        self.intent = None
        self._end_latch(asked)  # a new session, asked of a ready Klipper

    def ev_auto(self, kind):
        # The simulator is not bound to a printer: AUTO=on is refused, and
        # ENABLE=0 ends an auto session however it started.
        asked = time.monotonic()
        if self._gcode("PANDA_BREATH_AUTO " + AUTO[kind]):
            self.intent = None
            if kind == "on":
                self._klipper_session_started(asked)

    def ev_turn_off_heaters(self):
        if self._gcode("TURN_OFF_HEATERS"):
            self.intent = None

    def ev_idle_timeout(self):
        if self._info()["state"] != "ready":
            return  # idle_timeout's timer does nothing while shut down
        # A dwell makes the toolhead busy; idle again, the timeout (0.1 s)
        # runs Klipper's idle G-code (TURN_OFF_HEATERS).
        self._gcode(IDLE_NOW)

        def idle():
            return (self.is_shutdown() or self.k.status(
                "idle_timeout", ["state"])["state"] == "Idle")
        wait_until(lambda: not idle(), timeout=5.)
        wait_until(idle, timeout=10.)
        self._gcode(IDLE_LATER)
        self.intent = None

    def ev_emergency_stop(self):
        try:
            self.k.api.emergency_stop()
        except APIError:
            pass  # already shut down

    def ev_restart(self):
        self._restart("RESTART")

    def ev_firmware_restart(self):
        self._restart("FIRMWARE_RESTART")

    def _restart(self, command):
        self._check_stall()
        self._read_console()
        try:
            self.k.restart(command)
            self.klipper_error = False
        except StartupError:
            self.klipper_error = True
        self._watch_console()
        self.intent = None
        if self.klipper_session:
            # A session Klipper started ends with it
            self.user_session = self.klipper_session = False
        self.shutdown_seen = False
        self.calm_since = max(self.calm_since, time.monotonic())

    def ev_reboot(self, off_for):
        self._power(self.sim.reboot, off_for)

    def ev_power_cycle(self, off_for):
        self._power(self.sim.power_cycle, off_for)

    def _power(self, action, off_for):
        if not self.sim.state()["online"]:
            return
        action(off_for)
        self.calm_since = max(self.calm_since, time.monotonic() + off_for)

    def ev_press(self, kind):
        try:
            self.sim.press(**PRESSES[kind])
        except ValueError:
            return  # the panel is dark while the device is off
        self.hidden_push |= bool(self.faults & set(SILENT_FAULTS))
        s = self.sim.state()
        on = s["work_on"]
        self.user_session = on and s["work_mode"] != ALWAYS_ON
        if kind != "on" or self.user_session:
            self.intent = None  # the user took the device over
        self.klipper_session = False
        if on and not self.is_shutdown():
            self._end_latch()  # a new session, started by the user

    def ev_fault(self, name, on):
        if name in SILENT_FAULTS and not on and self.hidden_push:
            now = time.monotonic()
            left = self.half_open_since + HIDDEN_PUSH_OUTAGE - now
            if left > 0.:
                time.sleep(left)
        self.sim.set_fault(name, on)
        if name in SILENT_FAULTS and on != (name in self.faults):
            self.half_open_since = time.monotonic()
            self.hidden_push = False
        if on:
            self.faults.add(name)
        elif name in self.faults:
            self.faults.discard(name)
            extra = (OPTIONS["connect_timeout"]
                     if name in HANDSHAKE_FAULTS else 0.)
            if name == "mute":
                # a connection made while muted got no snapshot
                extra = OPTIONS["link_timeout"]
            self.calm_since = max(self.calm_since,
                                  time.monotonic() + extra)

    def ev_bad_frame(self, kind):
        if "half_open" in self.faults:
            return  # a silent device sends nothing
        getattr(self.sim, BAD_FRAMES[kind])()
        self.calm_since = max(self.calm_since, time.monotonic())

    def ev_sensor(self, kind):
        self.sim.sensor_fault(kind)
        self.hidden_push |= bool(self.faults & set(SILENT_FAULTS))

    def ev_wait(self, seconds):
        time.sleep(seconds)

    # The oracle
    def _end_latch(self, now=None):
        now = time.monotonic() if now is None else now
        for latch in self.latches:
            if latch.end is None:
                latch.end = now

    def _open_latch(self):
        for latch in self.latches:
            if latch.end is None:
                return latch
        return None

    def _observe_klipper(self):
        info = self._info()
        if info["state"] == "shutdown" and not self.shutdown_seen:
            self.shutdown_seen = True
            self.intent = None
            self._end_latch()
            self.latches.append(Latch(time.monotonic(),
                                      info.get("state_message", "")))
            return True
        return False

    def _link_expected(self):
        return (not self.faults and self.sim.state()["online"]
                and self.k is not None and not self.klipper_error)

    def settle(self, started):
        self._observe_klipper()
        self._check_frames()
        self._check_stall()
        if not self._link_expected():
            return
        deadline = max(self.calm_since, started) + self.bound
        problem = [None]

        def converged():
            if self._observe_klipper():
                nonlocal deadline
                deadline = max(deadline, time.monotonic() + self.bound)
            problem[0] = self._rule_problem(self.sim.state())
            return problem[0] is None
        while not converged():
            left = deadline - time.monotonic()
            if left <= 0.:
                self._fail(problem[0] + " (not converged %.1f s after the"
                           " link was back)" % (self.bound,))
            try:
                wait_until(converged, timeout=left)
            except WorldTimeout:
                pass
        self._read_console()
        self._check_frames()
        self._check_stall()

    def _rule_problem(self, s):
        if not s["online"]:
            return None
        on, mode = s["work_on"], s["work_mode"]
        if not on or mode == ALWAYS_ON:
            self.user_session = self.klipper_session = False
        latch = self._open_latch()
        if latch is not None:
            if on:
                return ("rule 3: Klipper shut down (%s) but the device is on"
                        " in mode %d" % (latch.why, mode))
            return None
        target = self.target()
        if on and mode == ALWAYS_ON and not target > 0.:
            return ("rule 1: the device is on in always-on mode with"
                    " Klipper's target %s" % (target,))
        if s["heat_request"] and mode != ALWAYS_ON and not self.user_session:
            return ("rule 1: the device heats in mode %d, a session the"
                    " user did not start" % (mode,))
        if self.intent is not None and not (
                on and mode == ALWAYS_ON and s["set_temp"] == self.intent):
            return ("rule 2: Klipper's target (set_temp %d) is not at the"
                    " device (work_on %s, mode %d, set_temp %d)"
                    % (self.intent, on, mode, s["set_temp"]))
        return None

    def _check_frames(self):
        frames = self.sim.frames
        for frame in frames[self.frames_seen:]:
            problem = self._frame_problem(frame)
            if problem is not None:
                self._fail("rule 4: %s: %r" % (problem, frame.text[:200]))
            for latch in self.latches:
                if latch.undone_by(frame):
                    self._fail("rule 3: work_on true sent after the"
                               " shutdown (%s) turned the device off"
                               % (latch.why,))
        self.frames_seen = len(frames)

    @staticmethod
    def _frame_problem(frame):
        data = frame.data
        if not isinstance(data, dict):
            return "a frame that is not a JSON object"
        if set(data) != {"settings"} or not isinstance(
                data["settings"], dict):
            return "a frame with roots other than settings"
        for key, value in data["settings"].items():
            if key == "work_on":
                if type(value) is not bool:
                    return "work_on that is not a JSON bool"
            elif key in ACCEPTED:
                low, high = ACCEPTED[key]
                if (type(value) not in (int, float) or value != int(value)
                        or not low <= value <= high):
                    return "%s outside %d..%d" % (key, low, high)
            else:
                return "a write of %s" % (key,)
        return None

    def _check_stall(self):
        problem = stall_problem(self.k.status("reactor_probe", HOLD_FIELDS))
        if problem is not None:
            self._fail("rule 5: %s" % (problem,))

    def _fail(self, message):
        text = "%s\n\nevents:\n%s" % (message, format_script(self.script))
        if World.report is not None:
            World.report(text)
        raise SafetyViolation(text)
