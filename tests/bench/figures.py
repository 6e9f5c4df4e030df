"""How each figure is measured.

Every scenario drives the real module through the Klipper harness against
the simulator over loopback WebSockets.  Times are time.monotonic(), the
clock the harness, the simulator's frame logs and the module share."""
import bisect
import contextlib
import functools
import importlib.util
import json
import logging
import os
import random
import socket
import threading
import time

from chamber import FAST, chamber_config, start_chamber
from harness import Klippy, StallMeter

from simulator import Simulator

from .procs import ROOT, SimProcess, footprint, thread_cpu
from .report import Figure

MS = 1000.
HEAT = "SET_HEATER_TEMPERATURE HEATER=chamber TARGET=%d"
FAKE_HOST = "panda-breath-bench.invalid"


def breath_of(k):
    return k.printer.lookup_object("panda_breath")


def load_module():
    """The module file as Klipper imports it, for driving DeviceLink."""
    path = os.path.join(ROOT, "klipper", "extras", "panda_breath.py")
    spec = importlib.util.spec_from_file_location("panda_breath_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quiet_sim(**kw):
    sim = Simulator(**kw).start()
    sim.press(work_on=False)  # factory default is on, in auto mode
    return sim


class Deliveries:
    """Times each reading as the link thread hands it over and as
    Klipper's heater callback receives it."""

    def __init__(self, k):
        self.log = []        # (time, temp) at the heater callback
        self.received = []   # (time, reading) from the link thread
        breath = breath_of(k)
        sensor = breath.sensor
        inner = sensor.callback

        def callback(read_time, temp):
            self.log.append((time.monotonic(), temp))
            inner(read_time, temp)
        sensor.callback = callback
        link = breath.link
        notify = link.notify

        def link_notify(kind, *args):
            if kind == "update":
                value = reading_in(json.dumps({"settings": args[0]}))
                if value is not None:
                    self.received.append((time.monotonic(), value))
            notify(kind, *args)
        link.notify = link_notify


def reading_in(text):
    """The reading a frame the device sent carries, as the module reads
    it (warehouse_temper, else chamber_temp), or None."""
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


def pair_readings(sent, deliveries):
    """Latencies from each reading sent to its arrival at the heater.

    The link thread sees every reading, in the order sent (TCP), so the
    n-th reading it hands over is the n-th sent.  Readings that queue up
    while the reactor is busy are merged and only the newest reaches the
    heater: a delivery belongs to the last reading handed over before
    it.  Returns (latencies, readings merged away, unmatched)."""
    readings = [(t, v) for t, v in ((f.time, reading_in(f.text))
                                    for f in sent) if v is not None]
    received = deliveries.received
    if not readings or not received:
        return [], 0, 0
    # the first reading the link handed over is the last sent before it
    first = received[0][0]
    offset = max([i for i, (t, _) in enumerate(readings) if t <= first],
                 default=0)
    times = [t for t, _ in received]
    latencies, used, unmatched = [], set(), 0
    for got_at, temp in deliveries.log:
        j = bisect.bisect_right(times, got_at) - 1
        if j < 0 or j in used or offset + j >= len(readings):
            continue
        used.add(j)
        sent_at, value = readings[offset + j]
        if value != temp or received[j][1] != temp:
            unmatched += 1
        else:
            latencies.append(got_at - sent_at)
    merged = len(received) - len(used)
    return latencies, merged, unmatched


def stall_figure(key, title, history, note=""):
    samples = [spent * MS for _, spent in history]
    worst = max(history, key=lambda h: h[1], default=(None, 0.))
    if worst[0]:
        note = (note + "; " if note else "") + "worst: %s" % (worst[0],)
    return Figure(key, title, "ms", samples, "max", "<", 5., note=note)


def exercise(k, seconds, targets=(40, 0)):
    """Change the target now and then while the reactor runs."""
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        k.gcode(HEAT % targets[i % len(targets)])
        i += 1
        k.run(min(0.5, max(0., end - time.monotonic())))


# Normal operation: command and telemetry latency, reactor stall

def normal_operation(commands, readings):
    sim = quiet_sim(push_interval=0.05)
    try:
        k = start_chamber(sim)
        deliveries = Deliveries(k)
        k.stall.reset()
        latencies = command_latencies(k, sim, commands)
        k.run_until(lambda: len(deliveries.log) >= readings,
                    timeout=readings * 0.2 + 10)
        sent = list(sim.server.sent)
        k.stop()
        telemetry, merged, unmatched = pair_readings(sent, deliveries)
        history = list(k.stall.history)
    finally:
        sim.stop()
    note = ("push every 50 ms; %d readings superseded before delivery,"
            " %d could not be paired" % (merged, unmatched))
    return [
        Figure("command_latency", "command latency", "ms",
               [t * MS for t in latencies], "p99", "<=", 20.,
               note="SET_HEATER_TEMPERATURE to the last frame of it at the"
               " device; targets alternate heat/off"),
        Figure("telemetry_latency", "telemetry latency", "ms",
               [t * MS for t in telemetry], "p99", "<=", 20., note=note),
        stall_figure("stall_normal", "reactor stall: normal", history,
                     "commands and readings"),
    ]


def command_latencies(k, sim, count):
    gcode = k.printer.lookup_object("gcode")
    frames = sim.server.frames
    latencies, issued = [], []

    def issue(eventtime, target):
        issued.append(time.monotonic())
        gcode.run_script(HEAT % target)

    def arrived():
        # the command's last frame: work_on, after work_mode and set_temp
        return [f.time for f in frames if '"work_on"' in f.text]
    for i in range(count):
        target = 0 if i % 2 else 30 + i % 25
        sim.clear_frames()
        k.reactor.register_callback(
            functools.partial(issue, target=target))
        k.run_until(arrived, timeout=5)
        latencies.append(arrived()[0] - issued[-1])
        # spread the issue times over the module's target watch period
        k.run(0.005 + random.random() * 0.02)
    return latencies


# Faults: reactor stall while the link suffers

@contextlib.contextmanager
def failing_resolver(name, delay):
    """A slow resolver that fails for one made-up name; no DNS traffic."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kw):
        if host == name:
            time.sleep(delay)
            raise socket.gaierror(socket.EAI_NONAME,
                                  "Name or service not known")
        return real(host, *args, **kw)
    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = real


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


def fault_stalls(seconds):
    figures = []
    with blackhole() as port:
        k = Klippy(chamber_config_for(port)).start()
        exercise(k, seconds)
        k.stop()
    figures.append(stall_figure(
        "stall_unreachable", "reactor stall: device unreachable",
        k.stall.history, "connects time out (SYNs dropped)"))

    with failing_resolver(FAKE_HOST, 1.0):
        k = Klippy(chamber_config_for(80, host=FAKE_HOST)).start()
        exercise(k, seconds)
        k.stop()
    figures.append(stall_figure(
        "stall_dns", "reactor stall: DNS failure", k.stall.history,
        "resolver takes 1 s, then fails"))

    sim = quiet_sim(push_interval=0.5)
    try:
        for key, title, fault, note in (
                ("stall_no_upgrade", "reactor stall: TCP but no upgrade",
                 "no_upgrade", "connect_timeout 1 s"),
                ("stall_half_open", "reactor stall: half-open link",
                 "half_open", "link_timeout 2 s")):
            k = start_chamber(sim)
            k.stall.reset()
            sim.set_fault(fault, True)
            if fault == "no_upgrade":
                sim.drop_all()
            exercise(k, seconds)
            sim.set_fault(fault, False)
            k.run_until(functools.partial(connected, k), timeout=10)
            k.stop()
            figures.append(stall_figure(key, title, k.stall.history, note))
    finally:
        sim.stop()
    # a flood the module cannot keep up with backs up for many times its
    # length: a few seconds show it
    figures.extend(flood(min(seconds, 3.)))
    return figures


def connected(k):
    return breath_of(k).connected


def chamber_config_for(port, host="127.0.0.1"):
    return chamber_config(port, host=host, options=FAST)


# Console commands for the simulator in its own process: wrongly typed,
# malformed, binary and fragmented frames, and panel presses, each of
# which makes the device push its full settings.
FLOOD_COMMANDS = ("send wrong_types\nsend malformed\npress work_on=false\n"
                  "send binary\nsend fragmented\npress work_on=false\n")
FLOOD_FRAMES = 16  # frames the device sends for one FLOOD_COMMANDS


def runqueue_wait():
    """Seconds this thread has waited for a CPU (Linux schedstat)."""
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[1]) * 1e-9


class Lag:
    """A reactor timer of the host (not the module's) due every 10 ms:
    how late it runs is how long the reactor was held, whoever held it.
    As with the stall meter, time spent waiting for a CPU (the machine's
    load) is not counted; time waiting for the interpreter is."""

    PERIOD = 0.010

    def __init__(self, k):
        self.samples = []
        self.reactor = k.reactor
        self.due = self.waited = None
        self.timer = k.reactor.register_timer(self._tick, k.reactor.NOW)

    def _tick(self, eventtime):
        waited = runqueue_wait()
        if self.due is not None:
            late = eventtime - self.due - (waited - self.waited)
            self.samples.append(max(0., late))
        self.due, self.waited = eventtime + self.PERIOD, waited
        return self.due

    def stop(self):
        self.reactor.unregister_timer(self.timer)


def flood(seconds):
    """The device sends frames, valid and not, as fast as it can, on top
    of readings at 100 Hz.  It runs in its own process: in this one it
    would take the interpreter from the reactor, which a real device on
    the network never does."""
    with SimProcess("--push-interval", "0.01") as sim:
        sim.command("press work_on=false")
        k = start_chamber(sim)
        deliveries = Deliveries(k)
        k.stall.reset()
        lag = Lag(k)
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
        exercise(k, seconds)
        lag.stop()
        pump.join(30)
        sim.state(timeout=120)  # the console has done every command
        # until the reactor has caught up with everything the link sent
        k.run_until(lambda: k.reactor._async_queue.empty(), timeout=120)
        k.stop()
    note = "%.0f frames/s offered for %g s, %d readings delivered" % (
        batches[0] * FLOOD_FRAMES / seconds, seconds, len(deliveries.log))
    return [stall_figure("stall_flood", "reactor stall: message flood",
                         k.stall.history, note),
            Figure("lag_flood", "reactor held: message flood", "ms",
                   [t * MS for t in lag.samples], "max", "<", 5.,
                   note="lateness of a 10 ms host timer during the flood,"
                   " less CPU-queue waits (the async-callback backlog is"
                   " drained outside the module's callbacks, so the stall"
                   " meter misses it)")]


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
    timeout) runs Klipper (or polls a real one) until pred() holds."""
    started = time.monotonic()
    sim.set_fault(fault, True)
    try:
        wait_until(lambda: not is_connected(), 30)
        took = time.monotonic() - started
    finally:
        sim.set_fault(fault, False)
    wait_until(is_connected, 30)
    return took


def reconnects(reboot_delays, silent_samples):
    sim = quiet_sim(push_interval=0.5)
    watch = BootWatch()
    log = logging.getLogger("simulator")
    old_level = log.level
    log.setLevel(logging.INFO)
    log.addHandler(watch)
    back_after, silent = [], {fault: [] for fault in SILENCES}
    try:
        k = start_chamber(sim, options={})
        breath = breath_of(k)

        def reasserted(booted):
            """Times the device got work_on since it was back, once the
            module is connected again."""
            if len(watch.times) <= booted or not breath.connected:
                return []
            up = watch.times[booted]
            return [f.time for f in sim.server.frames
                    if f.time >= up and '"work_on"' in f.text]
        k.gcode(HEAT % 40)
        k.run_until(lambda: sim.state()["work_on"], timeout=5)
        for delay in reboot_delays:
            k.run(0.5 + random.random())
            booted = len(watch.times)
            sim.reboot(delay)

            k.run_until(functools.partial(reasserted, booted),
                        timeout=delay + 60)
            up = watch.times[booted]
            back_after.append(reasserted(booted)[0] - up)
        for _ in range(silent_samples):
            for fault, samples in silent.items():
                k.run(0.5 + random.random())
                samples.append(silence_detection(
                    sim, fault, lambda: breath.connected,
                    lambda pred, timeout: k.run_until(pred,
                                                      timeout=timeout)))
        k.stop()
    finally:
        log.removeHandler(watch)
        log.setLevel(old_level)
        sim.stop()
    return [
        Figure("reconnect", "reconnect after reboot", "s", back_after,
               "max", "<", 2.,
               note="device back -> connected and target re-asserted;"
               " reboots of %s s" % (", ".join("%g" % d
                                               for d in reboot_delays),)),
        Figure("silent_link", "silent-link detection", "s",
               silent["half_open"], "max", "<", 10.,
               note="%s (half-open device), default options"
               % (SILENCES["half_open"],)),
        Figure("silent_link_mute", "silent-link detection, pings answered",
               "s", silent["mute"], "max", "<", 10.,
               note="%s (mute device), default options"
               % (SILENCES["mute"],)),
    ]


# Cost: CPU time of this process, the simulator running in another

class ModuleCpu(StallMeter):
    """In place of the stall meter: the reactor thread's CPU time inside
    the module's callbacks (the stall meter's /proc reads would cost more
    than the callbacks they time)."""

    def reset(self):
        super().reset()
        self.cpu = 0.

    def call(self, kind, cb, *args):
        level = self._levels[-1]
        if level or not self.owns(cb):
            return cb(*args)
        level.append(kind)
        started = time.thread_time()
        try:
            return cb(*args)
        finally:
            self.cpu += time.thread_time() - started
            level.pop()

    def suspend(self):
        self._levels.append([])
        return 0.

    def resume(self, started):
        self._levels.pop()


def cpu_clocks(k, deliveries):
    """Wall time, process CPU, the module's CPU, readings delivered."""
    return (time.monotonic(), time.process_time(),
            k.stall.cpu + thread_cpu(breath_of(k).link.thread),
            len(deliveries.log))


def cpu_cost(idle_seconds, busy_seconds, window=5.):
    figures = []
    for key, push, seconds in (("cpu_idle", "0.5", idle_seconds),
                               ("cpu_messages", "0.01", busy_seconds)):
        with SimProcess("--push-interval", push, "--no-console") as sim:
            k = Klippy(chamber_config(sim.port))
            k.stall = ModuleCpu()
            k.start()
            k.run_until(functools.partial(connected, k), timeout=10)
            deliveries = Deliveries(k)
            k.run(1.)
            clocks = functools.partial(cpu_clocks, k, deliveries)
            start = last = clocks()
            windows, per_thousand = [], []
            while last[0] - start[0] < seconds:
                k.run(min(window, seconds))
                now = clocks()
                wall, cpu, got = (now[0] - last[0], now[1] - last[1],
                                  now[3] - last[3])
                windows.append(100. * cpu / wall)
                if got:
                    per_thousand.append(cpu / got * 1000.)
                last = now
            k.stop()
        wall, cpu, module, messages = (
            b - a for a, b in zip(start, last, strict=True))
        split = ("this process used %.3f s CPU in %.0f s, of which %.3f s"
                 " inside the module (its reactor callbacks and link"
                 " thread); the rest is the harness reactor waking for"
                 " the module's timers" % (cpu, wall, module))
        if key == "cpu_idle":
            figures.append(Figure(
                key, "CPU, idle link at 2 Hz", "% core", windows, "total",
                "<", 1., total=100. * cpu / wall,
                note="%s; %.1f CPU s per hour (module alone %.2f %% core)"
                % (split, cpu / wall * 3600, 100. * module / wall)))
        else:
            figures.append(Figure(
                "cpu_per_1000", "CPU per 1,000 device messages", "s",
                per_thousand, total=cpu / max(1, messages) * 1000.,
                note="%s; %d readings at 100 Hz (module alone %.3f s per"
                " 1,000)" % (split, messages,
                             module / max(1, messages) * 1000.)))
    return figures


# Memory, fds and threads over many reconnect cycles

def reconnect_cycles(cycles, warmup):
    pb = load_module()
    up, down = threading.Event(), threading.Event()

    def notify(kind, *args):
        if kind == "up":
            up.set()
        elif kind == "down":
            down.set()
    options = pb.LinkOptions(reconnect_delay=0., reconnect_max_delay=0.,
                             connect_timeout=5.)
    rss_samples = []
    with SimProcess("--push-interval", "0.5") as sim:
        before = footprint()
        link = pb.DeviceLink(sim.url, notify, options)
        link.start()

        def cycle():
            if not up.wait(10):
                raise RuntimeError("the link did not come up")
            up.clear()
            sim.command("drop")
            if not down.wait(10):
                raise RuntimeError("the link did not go down")
            down.clear()
        for _ in range(warmup):
            cycle()
        up.wait(10)
        warm = footprint()
        started = time.monotonic()
        step = max(1, cycles // 10)
        for i in range(cycles):
            cycle()
            if (i + 1) % step == 0:
                rss_samples.append(footprint()[0] - warm[0])
        up.wait(10)
        after = footprint()
        elapsed = time.monotonic() - started
        link.close()
        link.thread.join(10)
        closed = footprint()
    note = ("%d cycles in %.0f s after %d warm-up cycles (DeviceLink"
            " with zero reconnect delay, device drops each connection)"
            % (cycles, elapsed, warmup))
    return [
        Figure("rss_growth", "RSS growth over reconnects", "KiB",
               rss_samples, "total", "<=", 0, total=after[0] - warm[0],
               note=note + "; samples every %d cycles" % (step,)),
        Figure("fd_change", "open fds change after reconnects", "fds",
               [after[1] - warm[1]], "total", "==", 0,
               total=after[1] - warm[1],
               note="%d before the link, %d after it closed"
               % (before[1], closed[1])),
        Figure("thread_change", "threads change after reconnects",
               "threads", [after[2] - warm[2]], "total", "==", 0,
               total=after[2] - warm[2],
               note="%d before the link, %d after it closed"
               % (before[2], closed[2])),
    ]
