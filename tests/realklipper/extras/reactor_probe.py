# Test instrument, loaded into real Klipper by tests/realklipper as the
# first extra of every test config.  It measures two things:
#
# 1. How long the module under test itself holds the reactor: the stall
#    check of the tests.  Loaded before the module, the probe wraps the
#    entry points through which Klipper calls an extra on the reactor
#    thread (reactor timers, callbacks, async callbacks and fds, G-code
#    commands, event handlers, webhooks endpoints, output handlers, the
#    setup_callback of Klipper's temperature sensors, and the get_status
#    of the extra's printer objects).  Each call whose
#    function comes from the module's file (panda_breath.py) is timed:
#    its wall time, less the time the reactor thread waited on a CPU run
#    queue (Linux schedstat), less the time it waited off CPU while the
#    process's other threads waited on a run queue (a GIL held by a
#    preempted thread), less the CPU time of garbage collections in it
#    (the interpreter's, wherever an allocation triggers them), and less
#    any reactor.pause() inside it (other greenlets run then).  What is
#    left is the time the module kept the reactor to itself: a
#    time.sleep() or a blocking connect counts in full, a busy machine
#    does not.
# 2. How late a 10 ms reactor timer runs, whoever held the reactor (the
#    machine's load included): the bench's wall-clock stall figures.
#
# It also notes when each reading of the module's sensor reaches its
# heater (time.monotonic(), the clock the simulator's frame log uses),
# for the bench's telemetry latency.
#
# The module is recognised by its code (the file a callback was compiled
# from), never by its names, so the probe keeps working whatever the
# module's methods are called.
import collections
import functools
import gc
import os
import threading
import time

PERIOD = 0.010
KEPT = 20000
# The file the module under test is compiled from: klippy/extras/
# panda_breath.py (or a package panda_breath/).
MODULE_NAME = "panda_breath"
# Off-CPU time in a callback below this is not worth reading the other
# threads' run queues for.
SLACK = 0.001
NS = 1e-9


def code_of(fn):
    """The code object a callable runs, or None."""
    for _ in range(8):
        if isinstance(fn, functools.partial):
            fn = fn.func
            continue
        inner = getattr(fn, "__wrapped__", None)
        if inner is not None and getattr(fn, "_probe_timed", False):
            fn = inner
            continue
        break
    code = getattr(fn, "__code__", None)
    if code is None and callable(fn):
        # an object with a __call__ method
        code = getattr(type(fn).__call__, "__code__", None)
    return code


def is_module_code(fn):
    """Whether fn was compiled from the module under test."""
    code = code_of(fn)
    if code is None:
        return False
    path = code.co_filename
    base = os.path.basename(path)
    return (base == MODULE_NAME + ".py"
            or os.path.basename(os.path.dirname(path)) == MODULE_NAME)


def callback_name(fn):
    code = code_of(fn)
    if code is None:
        return repr(fn)
    return getattr(code, "co_qualname", code.co_name)


class Schedstat:
    """Run-queue waits (ns) of this process's threads, from
    /proc/<pid>/task/<tid>/schedstat: time on CPU, time waiting on a run
    queue, timeslices.  Only the reactor thread's file stays open (the
    soak counts klippy's open fds)."""

    def __init__(self, tid):
        self.pid = os.getpid()
        self.tid = tid
        self.fd = os.open(self._path(tid), os.O_RDONLY)

    def _path(self, tid):
        return "/proc/%d/task/%d/schedstat" % (self.pid, tid)

    def own(self):
        return int(os.pread(self.fd, 128, 0).split()[1])

    def others(self):
        """{tid: run-queue wait} of every other thread."""
        waits = {}
        try:
            names = os.listdir("/proc/%d/task" % (self.pid,))
        except OSError:
            return waits
        for name in names:
            tid = int(name)
            if tid == self.tid:
                continue
            try:
                with open(self._path(tid), "rb") as f:
                    waits[tid] = int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                pass    # a thread that just ended
        return waits


class GCTime:
    """CPU time spent in Python's garbage collection (a gc.callbacks
    entry), on the reactor thread and on the others.  A collection runs
    wherever an allocation happens to trigger it and holds the GIL: it is
    the interpreter's time, not the module's."""

    def __init__(self, reactor_thread):
        self.reactor_thread = reactor_thread
        self.own = self.other = 0.
        self.started = {}

    def __call__(self, phase, info):
        tid = threading.get_ident()
        if phase == "start":
            self.started[tid] = time.thread_time()
        elif tid in self.started:
            spent = time.thread_time() - self.started.pop(tid)
            if tid == self.reactor_thread:
                self.own += spent
            else:
                self.other += spent


class Holds:
    """The time the module's callbacks keep the reactor thread, one
    record per outermost call (nested module calls belong to it)."""

    def __init__(self):
        self.thread = threading.get_ident()
        self.tid = threading.get_native_id()
        self.stat = Schedstat(self.tid)
        self.gc = GCTime(self.thread)
        gc.callbacks.append(self.gc)
        self.depth = 0
        self.window = None
        self.segment = None
        self.holds = collections.deque(maxlen=KEPT)
        self.reset()

    def reset(self):
        self.calls = 0
        self.total = 0.
        self.max_hold = 0.
        self.max_wall = 0.
        self.excused = 0.
        self.worst = self.longest = None
        self.holds.clear()

    def on_reactor(self):
        return threading.get_ident() == self.thread

    # A window is one outermost module call; a segment is the part of it
    # between reactor.pause() calls.
    def _begin_segment(self):
        others = self.stat.others()
        queued = self.stat.own()
        self.segment = (others, queued, self.gc.own, self.gc.other,
                        time.thread_time(), time.monotonic())

    def _end_segment(self):
        end = time.monotonic()
        cpu = time.thread_time()
        queued = self.stat.own()
        others, queued0, gc_own, gc_other, cpu0, start = self.segment
        self.segment = None
        wall = end - start
        cpu -= cpu0
        # (the scheduler's clock and CLOCK_MONOTONIC differ by a few %)
        queued = min(max((queued - queued0) * NS, 0.), max(wall - cpu, 0.))
        # off CPU and not runnable: sleeps, blocking calls, GIL waits
        off = max(wall - cpu - queued, 0.)
        waited = 0.
        if off > SLACK:
            now = self.stat.others()
            waited = sum(w - others.get(t, 0) for t, w in now.items()) * NS
        # Not the module's: waiting for a CPU; waiting off CPU while other
        # threads waited for one (a GIL held by a preempted thread); and
        # garbage collection, here or on a thread holding the GIL.
        gil = min(off, waited)
        gc_own = min(self.gc.own - gc_own, cpu)
        gc_other = min(self.gc.other - gc_other, off - gil)
        held = (cpu - gc_own) + (off - gil - gc_other)
        w = self.window
        for key, value in (("held", held), ("wall", wall), ("cpu", cpu),
                           ("queued", queued), ("gil", gil),
                           ("gc", gc_own + gc_other)):
            w[key] += value

    def enter(self, fn):
        if self.depth == 0:
            self.window = dict(held=0., wall=0., cpu=0., queued=0.,
                               gil=0., gc=0., fn=fn)
            self._begin_segment()
        self.depth += 1

    @staticmethod
    def describe(w):
        return ("%s: %.1f ms held of %.1f ms wall (%.1f ms on CPU; not"
                " counted: %.1f ms waiting for a CPU, %.1f ms for threads"
                " waiting for one, %.1f ms garbage collection) at %.3f" % (
                    callback_name(w["fn"]), w["held"] * 1000.,
                    w["wall"] * 1000., w["cpu"] * 1000.,
                    w["queued"] * 1000., w["gil"] * 1000., w["gc"] * 1000.,
                    time.monotonic()))

    def exit(self, counted):
        self.depth -= 1
        if self.depth:
            return
        self._end_segment()
        w, self.window = self.window, None
        if not counted:
            return
        self.calls += 1
        self.total += w["held"]
        self.excused += w["wall"] - w["held"]
        self.holds.append(w["held"])
        if w["wall"] > self.max_wall:
            self.max_wall = w["wall"]
            self.longest = self.describe(w)
        if w["held"] > self.max_hold:
            self.max_hold = w["held"]
            self.worst = self.describe(w)

    def suspend(self):
        """Before a reactor.pause() in a module call: other greenlets
        run until it returns."""
        if self.depth == 0 or not self.on_reactor():
            return None
        self._end_segment()
        saved = self.depth, self.window
        self.depth, self.window = 0, None
        return saved

    def resume(self, saved):
        if saved is None:
            return
        self.depth, self.window = saved
        self._begin_segment()


HOLDS = None    # one per klippy process, kept over RESTART


class ReactorProbe:
    def __init__(self, config):
        global HOLDS
        self.printer = config.get_printer()
        self.reactor = self.printer.get_reactor()
        if HOLDS is None:
            HOLDS = Holds()
        self.holds = HOLDS
        # Loaded after the module, the probe would miss what the module
        # registered: say so rather than measure nothing.
        self.instrumented = not any(
            is_module_code(getattr(type(obj), "__init__", None))
            for _, obj in self.printer.lookup_objects())
        self.waketime = None
        self.lates = collections.deque(maxlen=KEPT)
        self.readings = collections.deque(maxlen=KEPT)
        self._reset_lateness()
        self.timer = self.reactor.register_timer(self._tick)
        self._instrument()
        self.printer.register_event_handler('klippy:connect', self._connect)
        self.printer.register_event_handler('klippy:ready', self._ready)
        self.printer.lookup_object('gcode').register_command(
            'REACTOR_PROBE_RESET', self.cmd_REACTOR_PROBE_RESET)

    # Attributing reactor time to the module
    def _timed(self, fn):
        """fn, timed as the module's when it is the module's code."""
        if fn is None or getattr(fn, "_probe_timed", False) \
                or not is_module_code(fn):
            return fn
        holds, reactor = self.holds, self.reactor

        @functools.wraps(fn)
        def timed(*args, **kw):
            if not holds.on_reactor():
                return fn(*args, **kw)
            holds.enter(fn)
            try:
                return fn(*args, **kw)
            finally:
                # after the reactor ended (klippy:disconnect) nothing
                # waits for it
                holds.exit(getattr(reactor, "_process", True))
        timed._probe_timed = True
        return timed

    def _wrap(self, obj, method, *positions):
        """Replace obj.method by one that times its callback arguments
        (positional index, or keyword name)."""
        real = getattr(obj, method, None)
        if real is None or getattr(real, "_probe_timed", False):
            return
        timed = self._timed

        @functools.wraps(real)
        def register(*args, **kw):
            args = list(args)
            for where in positions:
                if isinstance(where, int):
                    if where < len(args):
                        args[where] = timed(args[where])
                elif where in kw:
                    kw[where] = timed(kw[where])
            return real(*args, **kw)
        register._probe_timed = True
        try:
            setattr(obj, method, register)
        except AttributeError:  # __slots__: what it registers goes untimed
            pass

    def _instrument(self):
        reactor = self.reactor
        self._wrap(reactor, "register_timer", 0, "callback")
        self._wrap(reactor, "register_callback", 0, "callback")
        self._wrap(reactor, "register_async_callback", 0, "callback")
        self._wrap(reactor, "register_fd", 1, 2, "read_callback",
                   "write_callback")
        self._wrap(self.printer, "register_event_handler", 1, "callback")
        gcode = self.printer.lookup_object('gcode')
        self._wrap(gcode, "register_command", 1, "func")
        self._wrap(gcode, "register_mux_command", 3, "func")
        self._wrap(gcode, "register_output_handler", 0, "cb")
        webhooks = self.printer.lookup_object('webhooks', None)
        if webhooks is not None:
            self._wrap(webhooks, "register_endpoint", 1, "callback")
            self._wrap(webhooks, "register_mux_endpoint", 3, "callback")
        real_pause, holds = reactor.pause, self.holds

        @functools.wraps(real_pause)
        def pause(*args, **kw):
            saved = holds.suspend()
            try:
                return real_pause(*args, **kw)
            finally:
                holds.resume(saved)
        pause._probe_timed = True
        reactor.pause = pause

    def _time_status(self):
        # get_status is called by Klipper (API queries, macros) on the
        # module's printer objects
        for _, obj in self.printer.lookup_objects():
            status = getattr(obj, "get_status", None)
            if status is not None and not getattr(
                    status, "_probe_timed", False) and is_module_code(status):
                try:
                    obj.get_status = self._timed(status)
                except AttributeError:  # __slots__: calls go untimed
                    pass

    def _connect(self):
        self._time_status()
        for _, obj in self.printer.lookup_objects():
            sensor = getattr(obj, "sensor", None)
            setup = getattr(sensor, "setup_callback", None)
            if setup is None:
                continue
            if not is_module_code(setup):
                # Klipper's sensors: the module may hook their readings
                # (setup_callback), which then run its code
                self._wrap(sensor, "setup_callback", 0, "callback")
                continue
            # Note each reading the module's sensor gives its heater: hand
            # the sensor (Klipper's setup_callback) a wrapper of the
            # heater's callback.
            callback = getattr(obj, "temperature_callback", None)
            if callback is not None:
                setup(self._noting(callback))

    def _noting(self, callback):
        readings = self.readings

        def noted(read_time, temp):
            readings.append((time.monotonic(), temp))
            callback(read_time, temp)
        return noted

    # Wall-clock lateness of a 10 ms timer
    def _ready(self):
        self._time_status()
        self.waketime = self.reactor.monotonic() + PERIOD
        self.reactor.update_timer(self.timer, self.waketime)

    def _reset_lateness(self):
        self.max_late = 0.
        self.worst_at = None
        self.samples = 0
        self.over = {0.005: 0, 0.020: 0, 0.100: 0}
        self.lates.clear()
        self.readings.clear()

    def _tick(self, eventtime):
        now = self.reactor.monotonic()
        late = now - self.waketime
        self.samples += 1
        self.lates.append(late)
        for limit in self.over:
            if late > limit:
                self.over[limit] += 1
        if late > self.max_late:
            self.max_late, self.worst_at = late, now
        self.waketime = now + PERIOD
        return self.waketime

    def cmd_REACTOR_PROBE_RESET(self, gcmd):
        self._reset_lateness()
        self.holds.reset()

    def get_status(self, eventtime):
        h = self.holds
        return {'max_late': self.max_late, 'worst_at': self.worst_at,
                'samples': self.samples,
                'over_5ms': self.over[0.005], 'over_20ms': self.over[0.020],
                'over_100ms': self.over[0.100],
                'lates': list(self.lates), 'readings': list(self.readings),
                'instrumented': self.instrumented,
                'module_hold_max': h.max_hold, 'module_hold_worst': h.worst,
                'module_calls': h.calls, 'module_hold_total': h.total,
                'module_wall_max': h.max_wall, 'module_wall_worst': h.longest,
                'module_excused_total': h.excused,
                'module_holds': list(h.holds)}


def load_config(config):
    return ReactorProbe(config)
