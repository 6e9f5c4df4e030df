"""Stall meter: time spent inside the module under test per callback.

Klipper runs every timer, fd callback, event handler and G-code handler on
one thread, so the time one callback of an extra takes is time every other
timer waits.  The harness routes each such invocation through
``StallMeter.call``; a callable counts as the module's when the module it
was defined in belongs to one of the extras packages the harness imported
(see ``printer.import_extra``).  Time spent inside a reactor ``pause()``
(a nested loop here, a greenlet switch in Klipper) is not counted: in
Klipper the thread is free to run other work meanwhile.

Time the reactor thread spent runnable but waiting for a CPU (read from
Linux's per-thread schedstat) is not counted either: that is the shared
machine's load, not the module.  Time blocked in a system call -- a DNS
lookup, a connect, a send on a full socket -- is counted in full.  When
another thread of the process (the link thread, the simulator in tests)
holds the GIL and waits for a CPU, the reactor thread waits for the GIL:
so the longest CPU wait of any other thread during the callback, a
thread the callback started included (Thread.start() waits for it to
run), is not counted either.  Nor is time in Python's cyclic garbage
collector, in any thread (it holds the GIL): Klipper runs the collector
while its reactor is idle (extras/garbage_collection.py), so there a
collection never lands inside a module callback.

klippy:disconnect handlers are not counted: klippy.py sends that event
after its reactor loop has ended, so they hold no reactor.

klippy:connect handlers run during Klipper's startup, where klippy.py
itself blocks far longer (MCU identification) and no heater is regulated
yet; they are kept apart as ``startup_max`` so a test can hold them to a
looser bound of its own.
"""
import gc
import os
import threading
import time


def _runqueue_wait():
    """Seconds this thread has spent waiting for a CPU, or 0 if unknown."""
    try:
        with open('/proc/thread-self/schedstat') as f:
            return int(f.read().split()[1]) * 1e-9
    except (OSError, ValueError, IndexError):
        return 0.


_gc = {'total': 0., 'started': None}  # seconds spent collecting


def _gc_timer(phase, info):
    # A CPU wait during a collection in the reactor thread is already
    # taken off by schedstat: count the collection's time without it.
    if phase == 'start':
        _gc['started'] = (time.perf_counter(), _runqueue_wait())
    elif _gc['started'] is not None:
        wall, waited = _gc['started']
        _gc['total'] += ((time.perf_counter() - wall)
                         - (_runqueue_wait() - waited))
        _gc['started'] = None


gc.callbacks.append(_gc_timer)

_schedstat_fds = {}  # thread id -> open schedstat file, read with pread


def _other_threads_waits():
    """{thread id: seconds spent waiting for a CPU} for the process's
    other threads (empty if unknown)."""
    me = str(threading.get_native_id())
    waits = {}
    try:
        tids = set(os.listdir('/proc/self/task'))
    except OSError:
        return waits
    for tid in list(_schedstat_fds):
        if tid not in tids:
            os.close(_schedstat_fds.pop(tid))
    for tid in tids:
        if tid == me:
            continue
        try:
            fd = _schedstat_fds.get(tid)
            if fd is None:
                fd = _schedstat_fds[tid] = os.open(
                    '/proc/self/task/%s/schedstat' % (tid,), os.O_RDONLY)
            waits[tid] = int(os.pread(fd, 64, 0).split()[1]) * 1e-9
        except (OSError, ValueError, IndexError):
            fd = _schedstat_fds.pop(tid, None)  # gone (or id reused)
            if fd is not None:
                os.close(fd)
    return waits


def _longest_other_wait(before):
    # A thread started meanwhile (a link thread) waited all its life.
    after = _other_threads_waits()
    return max([wait - before.get(t, 0.) for t, wait in after.items()],
               default=0.)


def _callable_module(cb):
    for attr in ('__func__', 'func'):
        inner = getattr(cb, attr, None)
        if inner is not None and inner is not cb:
            return _callable_module(inner)
    return getattr(cb, '__module__', None) or ''


def describe(cb):
    name = getattr(cb, '__qualname__', None) or type(cb).__qualname__
    return '%s.%s' % (_callable_module(cb), name)


class StallMeter:
    def __init__(self):
        self.packages = set()
        self.reset()

    def reset(self):
        self.max = 0.
        self.worst = None
        self.startup_max = 0.
        self.startup_worst = None
        self.samples = 0
        self.history = []
        self._levels = [[]]

    def owns(self, cb):
        module = _callable_module(cb)
        return module.split('.', 1)[0] in self.packages

    def call(self, kind, cb, *args):
        level = self._levels[-1]
        if level or not self.owns(cb):
            # Not the module's, or nested inside a module callback that is
            # already being timed (its time includes this call).
            return cb(*args)
        # CPU waits are read outside the timed span, so a wait that
        # falls between the two reads is never charged to the module.
        others = _other_threads_waits()
        waited = _runqueue_wait()
        collected = _gc['total']
        frame = [time.perf_counter(), 0.]
        level.append(frame)
        try:
            return cb(*args)
        finally:
            level.remove(frame)
            spent = time.perf_counter() - frame[0] - frame[1]
            spent -= _runqueue_wait() - waited
            spent -= _gc['total'] - collected
            spent -= min(max(0., spent), _longest_other_wait(others))
            name = '%s (%s)' % (describe(cb), kind)
            if kind == 'klippy:disconnect':
                pass    # klippy.py sends it after the reactor loop ended
            elif kind == 'klippy:connect':
                if spent > self.startup_max:
                    self.startup_max, self.startup_worst = spent, name
            else:
                self._record(name, max(0., spent))

    def _record(self, name, spent):
        self.samples += 1
        if len(self.history) < 100000:
            self.history.append((name, spent))
        if spent > self.max:
            self.max = spent
            self.worst = name

    # A reactor pause() suspends the running callbacks: time spent in the
    # nested loop is not theirs, and callbacks run inside it are timed on
    # their own.
    def suspend(self):
        self._levels.append([])
        return time.perf_counter(), _runqueue_wait()

    def resume(self, started):
        self._levels.pop()
        wall, waited = started
        # The pause's own CPU wait is already taken off via schedstat.
        paused = (time.perf_counter() - wall) - (_runqueue_wait() - waited)
        for level in self._levels:
            for frame in level:
                frame[1] += paused

    def __repr__(self):
        return '<StallMeter max=%.4fs worst=%s samples=%d>' % (
            self.max, self.worst, self.samples)
