"""How each figure is measured, in real Klipper.

Every scenario starts real Klipper (klippy and its Linux host MCU, from a
tree of tests/realklipper) with the module, against the simulator over
loopback WebSockets, and drives it only through Klipper's API socket.
Times are time.monotonic() (CLOCK_MONOTONIC), the clock the simulator's
frame logs, this process and the reactor probe inside klippy share.
The reactor probe (tests/realklipper/extras/reactor_probe.py) gives how
late a 10 ms reactor timer ran, whoever held the reactor, how long each
call into the module's own code held it (the tests' stall check), and
when each chamber reading reached the heater's callback."""
import contextlib
import functools
import logging
import os
import queue
import random
import shutil
import socket
import tempfile
import threading
import time

from chamber import FAST, chamber_config
from realklipper.conftest import STALL_LIMIT
from realklipper.printer import Printer, tracebacks

from simulator import Simulator

from .procs import SimProcess, proc_cpu, proc_footprint
from .report import Figure

MS = 1000.
HEAT = "SET_HEATER_TEMPERATURE HEATER=chamber TARGET=%d"
HEATER = "heater_generic chamber"
FAKE_HOST = "panda-breath-bench.invalid"
POLL = 0.02
STALL_TARGET = STALL_LIMIT * MS
# Shorter measurements than these cannot judge their targets (a --quick
# run): klippy's CPU time over 1 s gave a ratio of 3.24x where runs of
# 60 to 90 s give 1.5 to 1.9x; RSS over a few dozen reconnects is still
# the allocator settling.
CPU_JUDGED = 60.
RSS_JUDGED = 1000


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("not true within %.0f s" % (timeout,))
        time.sleep(POLL)


@contextlib.contextmanager
def klipper(tree, config, probe=True, env=None):
    """A started Printer of tree (name, path) with config; stopped and
    its folder removed at the end."""
    name, path = tree
    workdir = tempfile.mkdtemp(prefix="bench-")
    printer = Printer(path, name, config, workdir, probe=probe, env=env)
    try:
        printer.start()
        yield printer
    finally:
        printer.stop()
        log = printer.log() + printer.stderr()
        shutil.rmtree(workdir, ignore_errors=True)
        found = tracebacks(log)
        if found:
            logging.error("klippy (%s) wrote a traceback:\n%s", name,
                          "\n".join(found))


def connected(p):
    return p.status("panda_breath", ["connected"])["connected"]


def chamber(tree, port, options=FAST, **kw):
    """klipper() with the chamber config, once the link is up."""
    @contextlib.contextmanager
    def session():
        with klipper(tree, chamber_config(port, options=options), **kw) \
                as p:
            wait_until(lambda: connected(p), 30)
            yield p
    return session()


def quiet_sim(**kw):
    sim = Simulator(**kw).start()
    sim.press(work_on=False)  # factory default is on, in auto mode
    return sim


def lates(p):
    """The reactor probe's lateness samples since its last reset, ms."""
    return [late * MS for late in p.status("reactor_probe",
                                           ["lates"])["lates"]]


def holds(p):
    """How long each call into the module's code held the reactor since
    the probe's last reset, ms (less run-queue waits, GIL waits on
    preempted threads, garbage collection)."""
    return [held * MS for held in p.status("reactor_probe",
                                           ["module_holds"])["module_holds"]]


def stall_figure(key, title, samples, note=""):
    return Figure(key, title, "ms", samples, "max", "<", STALL_TARGET,
                  note=note)


def hold_figure(key, title, samples, note):
    return Figure(key, title, "ms", samples, "max", "<", STALL_TARGET,
                  note=note + "; each call into the module's code on the"
                  " reactor, less waits for a CPU, GIL waits on preempted"
                  " threads and garbage collection (the tests' stall"
                  " check)", kind="correctness")


def exercise(p, seconds, targets=(40, 0)):
    """Change the target now and then for seconds."""
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        try:
            p.gcode(HEAT % targets[i % len(targets)])
        except Exception as e:  # a G-code error is part of the scenario
            logging.info("exercise: %s", e)
        i += 1
        time.sleep(min(0.5, max(0., end - time.monotonic())))


def reading_in(text):
    """The reading a frame the device sent carries (warehouse_temper,
    else chamber_temp), or None."""
    import json
    if not isinstance(text, str) or "temp" not in text:
        return None
    try:
        settings = json.loads(text).get("settings")
    except (ValueError, AttributeError):
        return None
    if not isinstance(settings, dict):
        return None
    for key in ("warehouse_temper", "chamber_temp"):
        value = settings.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def set_reading(sim, celsius):
    """Move the device's sensor (and the rest of its thermal model) to
    celsius at once: a step the next push carries."""
    def apply():
        thermal = sim.device.thermal
        thermal.ambient = thermal.ptc = thermal.chamber = \
            thermal.sensor = float(celsius)
    sim._call(apply)


# Normal operation: command and telemetry latency, reactor stall

def normal_operation(tree, commands, steps):
    sim = quiet_sim(push_interval=0.5)
    try:
        with chamber(tree, sim.port) as p:
            p.gcode("REACTOR_PROBE_RESET")
            latencies = command_latencies(p, sim, commands)
            owner = owner_latencies(p, sim, steps)
            delivered = p.status("reactor_probe", ["readings"])["readings"]
            stall = lates(p)
            held = holds(p)
            sent = list(sim.server.sent)
    finally:
        sim.stop()
    module = callback_latencies(sent, delivered)
    return [
        Figure("command_latency", "command latency", "ms",
               [t * MS for t in latencies], "p99", "<=", 100.,
               note="SET_HEATER_TEMPERATURE on the API socket to the last"
               " frame of it at the device; targets alternate heat/off"),
        Figure("telemetry_latency", "telemetry latency: sensor callback",
               "ms", [t * MS for t in module], note="device push (0.5 s)"
               " -> the heater's sensor callback in klippy; %d readings"
               % (len(delivered),)),
        Figure("telemetry_owner", "telemetry latency: owner", "ms",
               [t * MS for t in owner], note="device push of a 10 C step"
               " -> Klipper's heater temperature moving in an"
               " objects/subscribe client (Klipper sends status every"
               " 250 ms and smooths readings over 1 s)"),
        stall_figure("stall_normal", "reactor stall: normal", stall,
                     "commands and readings"),
        hold_figure("hold_normal", "reactor held by the module: normal",
                    held, "commands and readings"),
    ]


def command_latencies(p, sim, count):
    latencies = []

    def arrived():
        # the command's last frame: work_on, after work_mode and set_temp
        return [f.time for f in sim.frames if '"work_on"' in f.text]
    for i in range(count):
        target = 0 if i % 2 else 30 + i % 25
        sim.clear_frames()
        issued = time.monotonic()
        p.gcode(HEAT % target)
        latencies.append(wait_until(arrived, 5)[0] - issued)
        time.sleep(0.005 + random.random() * 0.03)
    return latencies


class Subscription:
    """Klipper's heater temperature as an objects/subscribe client sees
    it, each update stamped when it arrives here."""

    def __init__(self, p):
        self.seen = [(time.monotonic(), p.api.subscribe(
            {HEATER: ["temperature"]})[HEATER]["temperature"])]
        self.notes = p.api.notes
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            try:
                note = self.notes.get(timeout=0.2)
            except queue.Empty:
                continue
            temp = note.get("status", {}).get(HEATER, {}).get("temperature")
            if temp is not None:
                self.seen.append((time.monotonic(), temp))

    def stop(self):
        self.running = False
        self.thread.join(5)


def owner_latencies(p, sim, steps):
    sub = Subscription(p)
    try:
        latencies = [owner_step(sim, sub, 35. if i % 2 == 0 else 25.)
                     for i in range(steps)]
    finally:
        sub.stop()
    return latencies


def owner_step(sim, sub, value):
    """Step the reading to value; seconds from the push carrying it to
    the subscriber seeing Klipper's temperature move towards it."""
    before = sub.seen[-1][1]
    mark = len(sim.server.sent)
    set_reading(sim, value)

    def pushed():
        return [f.time for f in list(sim.server.sent)[mark:]
                if reading_in(f.text) == value]
    push = wait_until(pushed, 5)[0]

    def moved():
        return [t for t, temp in list(sub.seen) if t >= push
                and abs(temp - before) >= 1.
                and abs(temp - value) < abs(before - value)]
    latency = wait_until(moved, 10)[0] - push
    # settled on the new value before the next step
    wait_until(lambda: abs(sub.seen[-1][1] - value) < 1., 15)
    time.sleep(random.random() * 0.5)
    return latency


def callback_latencies(sent, delivered):
    """Each reading at the heater's callback, paired with the last push
    carrying the same value before it."""
    pushes = [(f.time, reading_in(f.text)) for f in sent]
    pushes = [(t, v) for t, v in pushes if v is not None]
    latencies = []
    for got_at, temp in delivered:
        before = [t for t, v in pushes if t <= got_at and v == temp]
        if before:
            latencies.append(got_at - before[-1])
    return latencies


# Faults: reactor stall while the link suffers

SLOW_DNS = """\
import socket, time
_real = socket.getaddrinfo
def _getaddrinfo(host, *args, **kw):
    if host == %r:
        time.sleep(%r)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _real(host, *args, **kw)
socket.getaddrinfo = _getaddrinfo
"""


@contextlib.contextmanager
def failing_resolver(name, delay):
    """Environment for klippy whose resolver takes delay seconds and
    fails for one made-up name (a sitecustomize; no DNS traffic)."""
    folder = tempfile.mkdtemp(prefix="bench-dns-")
    with open(os.path.join(folder, "sitecustomize.py"), "w") as f:
        f.write(SLOW_DNS % (name, delay))
    try:
        yield {"PYTHONPATH": folder}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def blackhole():
    """A loopback port whose listen backlog is full: SYNs are dropped and
    connects hang until they time out, like an unreachable host."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.05)
        yield port
    finally:
        for s in fillers:
            s.close()
        server.close()


def fault_stalls(tree, seconds):
    figures = []
    held = []
    with blackhole() as port, \
            klipper(tree, chamber_config(port, options=FAST)) as p:
        exercise(p, seconds)
        figures.append(stall_figure(
            "stall_unreachable", "reactor stall: device unreachable",
            lates(p), "connects time out (SYNs dropped)"))
        held += holds(p)

    with failing_resolver(FAKE_HOST, 1.0) as env, klipper(
            tree, chamber_config(80, host=FAKE_HOST, options=FAST),
            env=env) as p:
        exercise(p, seconds)
        figures.append(stall_figure(
            "stall_dns", "reactor stall: DNS failure", lates(p),
            "resolver takes 1 s, then fails"))
        held += holds(p)

    sim = quiet_sim(push_interval=0.5)
    try:
        for key, title, fault, note in (
                ("stall_no_upgrade", "reactor stall: TCP but no upgrade",
                 "no_upgrade", "connect_timeout 1 s"),
                ("stall_half_open", "reactor stall: half-open link",
                 "half_open", "link_timeout 2 s")):
            with chamber(tree, sim.port) as p:
                p.gcode("REACTOR_PROBE_RESET")
                sim.set_fault(fault, True)
                if fault == "no_upgrade":
                    sim.drop_all()
                exercise(p, seconds)
                sim.set_fault(fault, False)
                wait_until(lambda: connected(p), 30)
                figures.append(stall_figure(key, title, lates(p), note))
                held += holds(p)
    finally:
        sim.stop()
    figure, flooded = flood(tree, min(seconds, 3.))
    figures.append(figure)
    figures.append(hold_figure(
        "hold_faults", "reactor held by the module: faults",
        held + flooded, "the five fault scenarios above"))
    return figures


# Console commands for the simulator in its own process: wrongly typed,
# malformed, binary and fragmented frames, and panel presses, each of
# which makes the device push its full settings.
FLOOD_COMMANDS = ("send wrong_types\nsend malformed\npress work_on=false\n"
                  "send binary\nsend fragmented\npress work_on=false\n")
FLOOD_FRAMES = 16  # frames the device sends for one FLOOD_COMMANDS


def flood(tree, seconds):
    """The device sends frames, valid and not, as fast as it can, on top
    of readings at 100 Hz, from its own process."""
    with SimProcess("--push-interval", "0.01") as sim, \
            chamber(tree, sim.port) as p:
        sim.command("press work_on=false")
        p.gcode("REACTOR_PROBE_RESET")
        batches = [0]
        end = time.monotonic() + seconds
        chunk = FLOOD_COMMANDS * 200

        def pour():
            # large writes: the pipe's back-pressure paces the flood
            while time.monotonic() < end:
                sim.command(chunk.rstrip("\n"))
                batches[0] += 200
        pump = threading.Thread(target=pour, daemon=True)
        pump.start()
        exercise(p, seconds)
        pump.join(30)
        sim.state(timeout=120)  # the console has done every command
        wait_until(lambda: connected(p), 60)
        samples = lates(p)
        held = holds(p)
        readings = p.status("reactor_probe", ["readings"])["readings"]
    note = "%.0f frames/s offered for %g s, %d readings delivered" % (
        batches[0] * FLOOD_FRAMES / seconds, seconds, len(readings))
    return stall_figure("stall_flood", "reactor stall: message flood",
                        samples, note), held


# Reconnect and silent-link detection, with the default options

class BootWatch(logging.Handler):
    """Notes when the simulator logs that the device is back up."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.times = []

    def emit(self, record):
        if record.getMessage().startswith("device up"):
            self.times.append(time.monotonic())


SILENCES = {"half_open": "nothing comes back",
            "mute": "pushes stop, pings answered"}


def silence_detection(sim, fault, is_connected, wait_until):
    """Seconds from the device going silent until the module drops the
    link, for a simulator fault of SILENCES; returns once the link is
    back.  is_connected() reads the module's status; wait_until(pred,
    timeout) polls until pred() holds."""
    started = time.monotonic()
    sim.set_fault(fault, True)
    try:
        wait_until(lambda: not is_connected(), 30)
        took = time.monotonic() - started
    finally:
        sim.set_fault(fault, False)
    wait_until(is_connected, 30)
    return took


STABLE_LINK = 10.   # the module's STABLE_LINK_TIME


def reconnects(tree, reboot_delays, silent_samples):
    sim = quiet_sim(push_interval=0.5)
    watch = BootWatch()
    log = logging.getLogger("simulator")
    old_level = log.level
    log.setLevel(logging.INFO)
    log.addHandler(watch)
    back_after = []
    offered = [f for f in SILENCES if f in sim.state()["faults"]]
    silent = {fault: [] for fault in offered}
    try:
        with chamber(tree, sim.port, options={}) as p:
            def reasserted(booted):
                """Times the device got work_on since it was back, once
                the module is connected again."""
                if len(watch.times) <= booted or not connected(p):
                    return []
                up = watch.times[booted]
                return [f.time for f in sim.frames
                        if f.time >= up and '"work_on"' in f.text]
            p.gcode(HEAT % 40)
            sim.wait_for(lambda s: s["work_on"], timeout=5)
            for delay in reboot_delays:
                # A reboot of a working link: one lost sooner after it
                # came up is flapping, which the module backs off from.
                time.sleep(STABLE_LINK + 0.5 + random.random())
                booted = len(watch.times)
                sim.reboot(delay)
                got = wait_until(functools.partial(reasserted, booted),
                                 delay + 60)
                back_after.append(got[0] - watch.times[booted])
            for _ in range(silent_samples):
                for fault, samples in silent.items():
                    time.sleep(0.5 + random.random())
                    samples.append(silence_detection(
                        sim, fault, lambda: connected(p), wait_until))
    finally:
        log.removeHandler(watch)
        log.setLevel(old_level)
        sim.stop()
    figures = [
        Figure("reconnect", "reconnect after reboot", "s", back_after,
               "max", "<", 2.,
               note="device back -> connected and target re-asserted;"
               " reboots of %s s" % (", ".join("%g" % d
                                               for d in reboot_delays),))]
    for fault, key, title in (
            ("half_open", "silent_link", "silent-link detection"),
            ("mute", "silent_link_mute",
             "silent-link detection, pings answered")):
        if fault in silent:
            figures.append(Figure(
                key, title, "s", silent[fault], "max", "<", 10.,
                note="%s (%s device), default options"
                % (SILENCES[fault], fault.replace("_", "-"))))
        else:
            logging.warning("%s not measured: the simulator has no %s"
                            " fault", title, fault)
    return figures


# Cost: CPU time of the klippy process, without the reactor probe

def cpu_cost(tree, seconds):
    with klipper(tree, "", probe=False) as p:
        alone = klippy_cpu(p, seconds)
    with SimProcess("--push-interval", "0.5", "--no-console") as sim, \
            chamber(tree, sim.port, options={}, probe=False) as p:
        module = klippy_cpu(p, seconds)
    ratio = module[0] / alone[0] if alone[0] else float("inf")
    per_hour = "%.1f CPU s per hour"
    return [
        Figure("cpu_alone", "CPU, klippy alone", "% core", alone[1],
               total=alone[0], note="no [panda_breath] (and no probe); "
               + per_hour % (alone[0] * 36.,)),
        Figure("cpu_idle", "CPU, klippy with an idle link", "% core",
               module[1], total=module[0],
               note="the module connected to a device pushing every 0.5 s;"
               " " + per_hour % (module[0] * 36.,)),
        Figure("cpu_ratio", "CPU, with module / alone", "x", [ratio],
               "total", "<=", 2., total=ratio,
               note="%.0f s of each, klippy's threads' CPU time from"
               " /proc/<pid>/task/*/schedstat" % (seconds,),
               unjudged=None if seconds >= CPU_JUDGED else
               "%.0f s of each (judged from %.0f s)" % (seconds,
                                                        CPU_JUDGED)),
    ]


def klippy_cpu(p, seconds, window=5.):
    """(% of a core over seconds, per-window samples) of klippy."""
    time.sleep(min(2., seconds))  # past start-up
    pid = p.klippy.pid
    start = last = (time.monotonic(), proc_cpu(pid))
    windows = []
    while last[0] - start[0] < seconds:
        time.sleep(min(window, seconds))
        now = (time.monotonic(), proc_cpu(pid))
        windows.append(100. * (now[1] - last[1]) / (now[0] - last[0]))
        last = now
    return 100. * (last[1] - start[1]) / (last[0] - start[0]), windows


# Memory, fds and threads of klippy over many reconnects

def reconnect_cycles(tree, cycles, warmup):
    sim = quiet_sim(push_interval=0.5)
    server = sim.server
    try:
        options = dict(FAST, reconnect_delay=0.1, reconnect_max_delay=0.1)
        with chamber(tree, sim.port, options=options, probe=False) as p:
            pid = p.klippy.pid

            def cycle():
                number = server._numbers
                sim.drop_all()
                wait_until(lambda: server._numbers > number
                           and server.client_count() == 1, 30)
            for _ in range(warmup):
                cycle()
            warm = proc_footprint(pid)
            started = time.monotonic()
            step = max(1, cycles // 10)
            rss = []
            for i in range(cycles):
                cycle()
                if (i + 1) % step == 0:
                    rss.append(proc_footprint(pid)[0] - warm[0])
            elapsed = time.monotonic() - started
            wait_until(lambda: connected(p), 30)
            after = proc_footprint(pid)
    finally:
        sim.stop()
    note = ("%d reconnects of klippy's module in %.0f s (%.0f ms each)"
            " after %d warm-up ones; the device drops each connection"
            % (cycles, elapsed, elapsed / cycles * MS, warmup))
    return [
        Figure("rss_growth", "klippy RSS growth over reconnects", "KiB",
               rss, "total", "<=", 256, total=after[0] - warm[0],
               note=note + "; samples every %d" % (step,),
               kind="correctness",
               unjudged=None if cycles >= RSS_JUDGED else
               "%d reconnects (judged from %d)" % (cycles, RSS_JUDGED)),
        Figure("fd_change", "klippy open fds change after reconnects",
               "fds", [after[1] - warm[1]], "total", "==", 0,
               total=after[1] - warm[1], kind="correctness",
               note="%d after warm-up" % (warm[1],)),
        Figure("thread_change", "klippy threads change after reconnects",
               "threads", [after[2] - warm[2]], "total", "==", 0,
               total=after[2] - warm[2], kind="correctness",
               note="%d after warm-up" % (warm[2],)),
    ]
