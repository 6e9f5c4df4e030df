"""A wall-clock reactor with Klipper's reactor semantics (klippy/reactor.py).

Timers, file descriptors, callbacks from other threads, completions and
pause() behave as in Klipper, with one structural difference: Klipper
suspends a paused callback in its greenlet and keeps dispatching from a new
one, while this reactor (stdlib only, no greenlet) runs a nested dispatch
loop inside pause() until the wake time.  See MIRRORS.md.
"""
import os
import queue
import select
import threading
import time

from .stall import StallMeter, describe

NOW = 0.
NEVER = 9999999999999999.
_FAILED = object()


class ReactorError(Exception):
    pass


class ReactorExit(BaseException):
    """Raised inside callbacks paused when the reactor ends (restart or
    exit), as Klipper's reactor finalize() throws into paused greenlets."""


class ReactorTimer:
    def __init__(self, callback, waketime):
        self.callback = callback
        self.waketime = waketime
        self.timer_is_running = False


class ReactorFileHandler:
    def __init__(self, fd, read_callback, write_callback):
        self.fd = fd
        self.read_callback = read_callback
        self.write_callback = write_callback


class ReactorCompletion:
    class _pending:
        pass

    def __init__(self, reactor):
        self.reactor = reactor
        self.result = self._pending

    def test(self):
        return self.result is not self._pending

    def complete(self, result):
        self.result = result

    def wait(self, waketime=NEVER, waketime_result=None):
        if not self.test():
            self.reactor._pause(waketime, self.test)
            if not self.test():
                return waketime_result
        return self.result


class ReactorMutex:
    """Klipper's reactor mutex; waiting is a pause() until it is free."""

    def __init__(self, reactor, is_locked=False):
        self.reactor = reactor
        self.is_locked = is_locked
        self.owner_depth = None

    def test(self):
        return self.is_locked

    def lock(self):
        if self.is_locked:
            if (self.owner_depth is not None
                    and self.owner_depth < self.reactor._depth):
                # The holder is suspended below us in a nested loop: with
                # greenlets it would resume and unlock, here it never can.
                raise ReactorError(
                    "harness: waiting for a mutex held by a paused caller"
                    " (nested-loop pause cannot resume it; see MIRRORS.md)")
            self.reactor._pause(NEVER, lambda: not self.is_locked)
        self.is_locked = True
        self.owner_depth = self.reactor._depth

    def unlock(self):
        self.is_locked = False
        self.owner_depth = None

    def __enter__(self):
        self.lock()

    def __exit__(self, *exc):
        self.unlock()


class _PreventPause:
    def __init__(self, reactor, why):
        self.reactor = reactor
        self.why = why

    def __enter__(self):
        self.reactor._no_pause.append(self.why)

    def __exit__(self, *exc):
        self.reactor._no_pause.pop()


class Reactor:
    NOW = NOW
    NEVER = NEVER

    def __init__(self, meter=None):
        self.meter = meter if meter is not None else StallMeter()
        self.thread_id = threading.get_ident()
        self._timers = []
        self._fds = {}
        self._poll = select.poll()
        self._no_pause = []
        self._depth = 0
        self._process = False
        self.failures = []
        self._async_queue = queue.Queue()
        self._pipe_fds = os.pipe()
        for fd in self._pipe_fds:
            os.set_blocking(fd, False)
        self._pipe_handler = self.register_fd(self._pipe_fds[0],
                                              self._drain_async)
        self.finalized = False

    # Time
    def monotonic(self):
        return time.monotonic()

    # Failures: an exception escaping a callback is kept and re-raised by
    # the harness API that ran the loop (Klipper logs it and shuts down).
    def _fail(self, exc):
        self.failures.append(exc)

    def _check_thread(self, what):
        if threading.get_ident() != self.thread_id:
            err = ReactorError("%s called from a thread other than the"
                               " reactor's (only register_async_callback,"
                               " async_complete and invoke_async_shutdown"
                               " are thread safe)" % (what,))
            self._fail(err)
            raise err

    def _invoke(self, kind, cb, *args):
        try:
            return self.meter.call(kind, cb, *args)
        except Exception as e:
            self._fail(e)
            return _FAILED

    # Timers
    def register_timer(self, callback, waketime=NEVER):
        self._check_thread('register_timer')
        timer = ReactorTimer(callback, waketime)
        self._timers = self._timers + [timer]
        return timer

    def update_timer(self, timer_handler, waketime):
        self._check_thread('update_timer')
        if timer_handler.timer_is_running:
            return
        timer_handler.waketime = waketime

    def unregister_timer(self, timer_handler):
        self._check_thread('unregister_timer')
        timer_handler.waketime = NEVER
        timers = list(self._timers)
        timers.remove(timer_handler)
        self._timers = timers

    def _next_waketime(self):
        return min([t.waketime for t in self._timers], default=NEVER)

    def _run_timers(self, eventtime):
        for t in self._timers:
            if t.timer_is_running or eventtime < t.waketime:
                continue
            t.waketime = NEVER
            t.timer_is_running = True
            try:
                waketime = self._invoke('timer', t.callback, eventtime)
            finally:
                t.timer_is_running = False
            if waketime is _FAILED:
                waketime = NEVER
            elif not isinstance(waketime, (int, float)):
                # Klipper's loop would crash comparing against it.
                self._fail(ReactorError(
                    "timer callback %s returned %r instead of its next"
                    " waketime (or reactor.NEVER)" % (describe(t.callback),
                                                      waketime)))
                waketime = NEVER
            t.waketime = waketime

    # Callbacks and completions
    def completion(self):
        return ReactorCompletion(self)

    def register_callback(self, callback, waketime=NOW, kind='callback'):
        completion = ReactorCompletion(self)

        def invoke(eventtime):
            self.unregister_timer(timer)
            result = self._invoke(kind, callback, eventtime)
            completion.complete(None if result is _FAILED else result)
            return NEVER
        timer = self.register_timer(invoke, waketime)
        return completion

    def register_async_callback(self, callback, waketime=NOW):
        self._async_queue.put_nowait((self.register_callback,
                                      (callback, waketime, 'async')))
        self._wake()

    def async_complete(self, completion, result):
        self._async_queue.put_nowait((completion.complete, (result,)))
        self._wake()

    def _wake(self):
        try:
            os.write(self._pipe_fds[1], b'.')
        except (OSError, TypeError):
            pass

    def _drain_async(self, eventtime):
        try:
            os.read(self._pipe_fds[0], 4096)
        except OSError:
            pass
        while True:
            try:
                func, args = self._async_queue.get_nowait()
            except queue.Empty:
                break
            func(*args)

    # Pausing
    def assert_no_pause(self, why="reactor pause disabled"):
        return _PreventPause(self, why)

    def verify_can_pause(self):
        if self._no_pause:
            raise ReactorError("Internal error - reactor pause disabled (%s)"
                               % (self._no_pause[-1],))

    def pause(self, waketime):
        return self._pause(waketime, None)

    def _pause(self, waketime, done):
        self._check_thread('pause')
        self.verify_can_pause()
        if not self._process:
            # Not dispatching: Klipper falls back to a system sleep.
            while done is None or not done():
                delay = waketime - self.monotonic()
                if delay <= 0.:
                    break
                time.sleep(min(delay, 0.01) if done else delay)
            return self.monotonic()
        started = self.meter.suspend()
        try:
            self._loop(waketime, done)
        finally:
            self.meter.resume(started)
        return self.monotonic()

    def mutex(self, is_locked=False):
        return ReactorMutex(self, is_locked)

    # File descriptors
    def register_fd(self, fd, read_callback, write_callback=None):
        self._check_thread('register_fd')
        handler = ReactorFileHandler(fd, read_callback, write_callback)
        self._fds[fd] = handler
        self._poll.register(fd, select.POLLIN | select.POLLHUP)
        return handler

    def unregister_fd(self, file_handler):
        self._check_thread('unregister_fd')
        self._poll.unregister(file_handler.fd)
        del self._fds[file_handler.fd]

    def set_fd_wake(self, file_handler, is_readable=True, is_writeable=False):
        self._check_thread('set_fd_wake')
        flags = select.POLLHUP
        if is_readable:
            flags |= select.POLLIN
        if is_writeable:
            flags |= select.POLLOUT
        self._poll.modify(file_handler.fd, flags)

    def _dispatch_fds(self, eventtime, events):
        for fd, event in events:
            handler = self._fds.get(fd)
            if handler is None:
                continue
            if event & select.POLLNVAL:
                self._fail(ReactorError(
                    "fd %d was closed while still registered with the"
                    " reactor (unregister_fd before close)" % (fd,)))
                self._poll.unregister(fd)
                del self._fds[fd]
                continue
            if event & (select.POLLIN | select.POLLHUP):
                self._invoke('fd read', handler.read_callback, eventtime)
            if event & select.POLLOUT and self._fds.get(fd) is handler:
                self._invoke('fd write', handler.write_callback, eventtime)

    # Dispatch loop
    def _loop(self, deadline=NEVER, done=None, max_sleep=1.):
        """Dispatch until deadline, until done() is true, until end() or
        until a callback failed.  Nested calls come from pause()."""
        self._depth += 1
        try:
            while True:
                if not self._process:
                    if self._depth > 1:
                        raise ReactorExit()
                    break
                if self.failures:
                    break
                if done is not None and done():
                    break
                now = self.monotonic()
                if now >= deadline:
                    break
                wake = min(self._next_waketime(), deadline)
                timeout = min(max_sleep, max(0., wake - now))
                events = self._poll.poll(int(timeout * 1000. + 0.999))
                eventtime = self.monotonic()
                if events:
                    self._dispatch_fds(eventtime, events)
                self._run_timers(eventtime)
        finally:
            self._depth -= 1

    def run(self, deadline=NEVER, done=None, max_sleep=1.):
        """Run the loop in the calling thread (the harness's entry point);
        nested use is a pause()."""
        self._check_thread('run')
        if self._process:
            raise ReactorError("reactor already running")
        self._process = True
        try:
            self._loop(deadline, done, max_sleep)
        finally:
            self._process = False

    def end(self):
        self._process = False

    def is_running(self):
        return self._process

    def finalize(self):
        if self.finalized:
            return
        self.finalized = True
        self._process = False
        os.close(self._pipe_fds[0])
        os.close(self._pipe_fds[1])
        self._pipe_fds = (None, None)
