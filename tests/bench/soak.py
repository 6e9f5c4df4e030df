"""`./build.sh bench --soak MINUTES`: a simulated long print.

Real Klipper (upstream by default, tests/realklipper) with the module
heats, holds and changes the chamber target while the simulator suffers
every fault it has, in turn: silent and refused links, failed upgrades,
reboots, power cycles, bad frames, panel presses, sensor faults and
swapped leads; Klipper restarts and is emergency-stopped now and then.
At the end: no exception escaped into Klipper, the device does what
Klipper wants, the module never held the reactor for STALL_LIMIT, and
klippy's memory, file descriptors and threads are flat.

Its verdict (soak.json in the output folder, and the exit status) keeps
what must hold on any machine apart from what depends on the machine's
speed: 0 passed; 3 a correctness failure (an exception, a traceback, an
unexpected shutdown, the device not as Klipper wants, the module holding
the reactor, memory, fds or threads growing); 1 only a timing target
missed (the wall-clock lateness of the reactor, whoever held it), as the
bench's 1."""
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback

from chamber import chamber_config
from realklipper import trees
from realklipper.conftest import HOLD_FIELDS, STALL_LIMIT, stall_problem
from realklipper.printer import Printer, tracebacks

from .procs import SimProcess, proc_footprint

MEMORY_SLACK = 1024  # KiB of RSS the allocator may still settle by
TREE = "upstream"
# (action, console commands before, seconds held, commands after)
FAULTS = [
    ("half-open link", ["fault half_open on"], 8., ["fault half_open off"]),
    ("connection refused", ["fault refuse on", "drop"], 4.,
     ["fault refuse off"]),
    ("TCP but no upgrade", ["fault no_upgrade on", "drop"], 7.,
     ["fault no_upgrade off"]),
    ("HTTP 500 on upgrade", ["fault http_status 500", "drop"], 3.,
     ["fault http_status off"]),
    ("slow handshake", ["fault slow_handshake 2", "drop"], 4.,
     ["fault slow_handshake 0"]),
    ("connection dropped", ["drop"], 2., []),
    ("malformed frame", ["send malformed"], 1., []),
    ("binary frame", ["send binary"], 1., []),
    ("oversized frame", ["send oversized"], 2., []),
    ("fragmented frame", ["send fragmented"], 1., []),
    ("wrongly typed frames", ["send wrong_types"], 1., []),
    ("reboot", ["reboot 2"], 5., []),
    ("power cycle", ["power_cycle 1"], 4., []),
    ("panel switches to drying", ["press work_mode=3 work_on=true"], 2.,
     []),
    ("panel switches off", ["press work_on=false"], 2., []),
    ("sensor open", ["fault sensor open"], 2., ["fault sensor off"]),
    ("swapped leads", ["fault swap_leads on"], 3., ["fault swap_leads off"]),
]
KLIPPER = ["RESTART", "FIRMWARE_RESTART", "M112"]
EXPECTED_SHUTDOWNS = ("Panda Breath", "Shutdown due to M112",
                      "Heater chamber not heating", "MCU")


class Soak:
    def __init__(self, sim, seed=1):
        self.sim = sim
        self.rng = random.Random(seed)
        self.workdir = tempfile.mkdtemp(prefix="soak-")
        self.k = Printer(trees.prepare(TREE), TREE,
                         chamber_config(sim.port, max_temp=70), self.workdir)
        self.target = 0
        self.counts = {}
        self.shutdowns = []
        self.stall_max, self.stall_worst = 0., None     # wall clock
        self.held = None    # the probe's status at the longest module hold

    def start(self):
        self.k.start()
        self.wait_connected()

    def breath(self):
        return self.k.status("panda_breath")

    def wait_connected(self, timeout=60):
        self.k.wait_for(lambda: self.breath()["connected"], timeout=timeout)

    def hold(self, seconds):
        time.sleep(seconds)
        self.settle()

    def settle(self):
        """Note the reactor probe's longest module hold and worst
        lateness and start it again, so its own records stay bounded over
        a long run."""
        if self.is_shutdown():
            return
        probe = self.k.status("reactor_probe", HOLD_FIELDS + ["worst_at"])
        if probe["max_late"] > self.stall_max:
            self.stall_max = probe["max_late"]
            self.stall_worst = "reactor time %s" % (probe["worst_at"],)
        if self.held is None or not probe["instrumented"] or \
                probe["module_hold_max"] > self.held["module_hold_max"]:
            self.held = probe
        self.k.gcode("REACTOR_PROBE_RESET")

    def is_shutdown(self):
        return self.k.api.info()["state"] == "shutdown"

    def set_target(self, target):
        self.target = target
        self.k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=%d"
                     % (target,))

    def recover(self):
        """After a shutdown: the device must go off; then restart."""
        message = self.k.api.info().get("state_message", "")
        self.shutdowns.append(message)
        if not message.startswith(EXPECTED_SHUTDOWNS) and \
                EXPECTED_SHUTDOWNS[0] not in message:
            raise AssertionError("unexpected shutdown: %s" % (message,))
        self.wait_device(lambda s: s["work_on"] == "False")
        self.k.restart("FIRMWARE_RESTART")
        self.target = 0
        self.wait_connected()

    def stop(self):
        self.k.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def wait_device(self, predicate, timeout=30.):
        deadline = time.monotonic() + timeout
        while True:
            state = self.sim.state()
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError("device state not reached: %s"
                                     % ({k: state.get(k) for k in (
                                         "work_on", "work_mode",
                                         "set_temp", "online")},))
            time.sleep(0.2)

    def step(self, i):
        rng = self.rng
        if i % 3 == 0:
            self.count("target change")
            self.set_target(rng.choice([0, 35, 40, 45, 50]))
            self.hold(rng.uniform(2., 6.))
        elif i % 3 == 1:
            name, before, seconds, after = FAULTS[(i // 3) % len(FAULTS)]
            self.count(name)
            for line in before:
                self.sim.command(line)
            self.hold(seconds)
            for line in after:
                self.sim.command(line)
            self.hold(1.)
        else:
            self.count("hold")
            self.hold(rng.uniform(2., 6.))
            if i % 12 == 11:
                action = KLIPPER[(i // 12) % len(KLIPPER)]
                self.count(action)
                if action == "M112":
                    self.k.api.emergency_stop()
                else:
                    self.k.restart(action)
                if action != "M112":
                    self.target = 0
                    self.wait_connected()
        if self.is_shutdown():
            self.recover()
        elif self.target and self.breath()["session"] != "klipper":
            # a panel press took the device away: the user sets it again
            self.wait_connected()
            self.set_target(self.target)

    def count(self, name):
        self.counts[name] = self.counts.get(name, 0) + 1

    def all_seen(self):
        """Every fault and Klipper action has happened at least once."""
        return set(self.counts) >= ({f[0] for f in FAULTS} | set(KLIPPER))

    def finish(self):
        """Faults cleared and link back: the device must end as Klipper
        wants, for a target and for off."""
        self.hold(2.)
        self.wait_connected()
        self.set_target(42)
        self.wait_device(lambda s: s["work_on"] == "True"
                         and s["work_mode"] == "2" and s["set_temp"] == "42")
        self.set_target(0)
        self.wait_device(lambda s: s["work_on"] == "False")
        self.hold(1.)


class Verdict:
    """What failed: correctness (on any machine) or timing (the
    machine's speed)."""

    def __init__(self):
        self.correctness = []
        self.timing = []

    def status(self):
        if self.correctness:
            return 3
        return 1 if self.timing else 0


def main(minutes, out):
    print("soak: %g minutes of simulated printing" % (minutes,),
          file=sys.stderr, flush=True)
    verdict = Verdict()
    failures = verdict.correctness
    sim = SimProcess("--speed", "10", "--reboot-delay", "2")
    try:
        soak = Soak(sim)
    except BaseException:
        sim.stop()
        raise
    started = time.monotonic()
    deadline = started + minutes * 60.
    warm = end = None
    i = 0
    try:
        sim.command("press work_on=false")
        soak.start()
        while time.monotonic() < deadline:
            soak.step(i)
            i += 1
            if warm is None and soak.all_seen():
                # warm-up: everything has run once
                warm = proc_footprint(soak.k.klippy.pid)
        soak.finish()
        end = proc_footprint(soak.k.klippy.pid)
    except Exception:
        failures.append(traceback.format_exc())
    log = soak.k.log()
    try:
        soak.stop()
    except Exception:
        failures.append(traceback.format_exc())
    sim.stop()
    found = tracebacks(log)
    if found:
        failures.append("klippy.log has a traceback:\n" + "\n".join(found))
    growth = None if warm is None or end is None else end[0] - warm[0]
    if warm is not None and end is not None:
        if growth > MEMORY_SLACK:
            failures.append("RSS grew %d KiB after warm-up" % (growth,))
        if end[1] != warm[1]:
            failures.append("open fds %d after warm-up, %d at the end"
                            % (warm[1], end[1]))
        if end[2] != warm[2]:
            failures.append("threads %d after warm-up, %d at the end"
                            % (warm[2], end[2]))
    if soak.held is None:
        failures.append("the reactor probe was never read")
    else:
        problem = stall_problem(soak.held)
        if problem is not None:
            failures.append(problem)
    if soak.stall_max >= STALL_LIMIT:
        verdict.timing.append(
            "the reactor ran %.1f ms late (at %s; the machine's load and"
            " Klipper's own work included)" % (
                soak.stall_max * 1000., soak.stall_worst))
    elapsed = time.monotonic() - started
    print("soak: %d steps in %.0f s" % (i, elapsed))
    for name, n in sorted(soak.counts.items()):
        print("  %-28s %d" % (name, n))
    print("  shutdowns (expected kinds): %d" % (len(soak.shutdowns),))
    if warm is None:
        print("  memory, fds and threads not judged: the soak ended before"
              " every fault had happened once (about 4 minutes)")
    elif end is not None:
        print("  RSS %d -> %d KiB (growth %+d after warm-up), fds %d -> %d,"
              " threads %d -> %d" % (warm[0], end[0], growth, warm[1],
                                     end[1], warm[2], end[2]))
    if soak.held is not None:
        print("  longest reactor hold by the module (%s): %.2f ms (%s)"
              % (TREE, soak.held["module_hold_max"] * 1000.,
                 soak.held["module_hold_worst"]))
    print("  longest reactor lateness (probe, %s): %.2f ms (%s)"
          % (TREE, soak.stall_max * 1000., soak.stall_worst))
    write_verdict(out, verdict, minutes, i, elapsed, soak, warm, end)
    if verdict.correctness:
        print("soak FAILED:")
        for failure in verdict.correctness + verdict.timing:
            print(failure)
    elif verdict.timing:
        print("soak: correct, but a timing target was missed:")
        for missed in verdict.timing:
            print(missed)
    elif warm is None:
        print("soak passed: no exception escaped, device as Klipper wants"
              " (memory needs a longer soak)")
    else:
        print("soak passed: no exception escaped, device as Klipper wants,"
              " memory/fds/threads flat")
    return verdict.status()


def write_verdict(out, verdict, minutes, steps, elapsed, soak, warm, end):
    hold = soak.held or {}
    data = {"minutes": minutes, "steps": steps,
            "seconds": round(elapsed, 1), "tree": TREE,
            "counts": soak.counts, "shutdowns": soak.shutdowns,
            "correctness": verdict.correctness, "timing": verdict.timing,
            "status": verdict.status(),
            "module_hold_max": hold.get("module_hold_max"),
            "module_hold_worst": hold.get("module_hold_worst"),
            "max_late": soak.stall_max,
            "footprint": None if warm is None or end is None else {
                "warm": dict(zip(("rss_kib", "fds", "threads"), warm,
                                 strict=True)),
                "end": dict(zip(("rss_kib", "fds", "threads"), end,
                                strict=True))}}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "soak.json"), "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
