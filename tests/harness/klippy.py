"""Klippy: the test driver.  Builds a Printer from config text the way
klippy.py's main loop does, runs its reactor in the calling thread, and
turns what would end up in klippy.log (callback exceptions, G-code errors)
into exceptions in the test."""
import os
import sys
import time

from .configfile import ConfigError
from .gcode import CommandError
from .printer import DEFAULT_EXTRAS_DIR, Printer
from .reactor import NEVER, Reactor, ReactorExit
from .stall import StallMeter

GCodeError = CommandError


class HarnessTimeout(AssertionError, TimeoutError):
    pass


class Klippy:
    def __init__(self, config_text, extras_dir=None, u1_strict=False,
                 start_args=None):
        self.config_text = config_text
        self.extras_dir = os.path.abspath(extras_dir or DEFAULT_EXTRAS_DIR)
        self.u1_strict = u1_strict
        self.start_args = dict(start_args or {})
        self.start_args.setdefault('config_file', 'printer.cfg')
        self.start_args.setdefault('software_version', 'harness')
        self.stall = StallMeter()
        self.responses = []
        self.printer = self.reactor = None
        self.printers = []
        self.boot_time = time.monotonic() - 1.
        self._pending = []
        self.stopped = False

    # Lifecycle
    def start(self):
        if self.printer is not None:
            raise RuntimeError("Klippy already started")
        # The simulator shares this process; with the default 5 ms GIL
        # switch interval its thread could hold the reactor up for that
        # long, which on a printer (device on another machine) never
        # happens.
        sys.setswitchinterval(0.0005)
        self._new_printer('startup')
        self._raise_pending()
        return self

    def _new_printer(self, reason):
        self.start_args['start_reason'] = reason
        self.reactor = Reactor(self.stall)
        self.printer = Printer(self.reactor, self.start_args,
                               self.config_text, self.extras_dir,
                               self.boot_time, self.u1_strict)
        self.stall.packages.add(self.printer.extras_package)
        self.printers.append(self.printer)
        self.printer.lookup_object('gcode').register_output_handler(
            self.responses.append)
        connected = self.reactor.register_callback(self.printer._connect)
        self._loop(NEVER, connected.test)
        failure = self.printer.config_failure
        if failure is not None:
            self._pending.insert(0, ConfigError(str(failure)))

    def _loop(self, deadline, done=None, max_sleep=1.):
        reactor = self.reactor
        try:
            reactor.run(deadline, done, max_sleep)
        except ReactorExit:
            pass
        if reactor.failures:
            self._pending.extend(reactor.failures)
            del reactor.failures[:]
            if not self.printer.is_shutdown():
                # klippy.py: "Unhandled exception during run" -> shutdown
                self.printer.invoke_shutdown("Unhandled exception during run")
                self._pending.extend(reactor.failures)
                del reactor.failures[:]
        if self.printer.run_result is not None:
            self._finish_run()

    def _finish_run(self):
        """Printer.run()'s tail and klippy's main loop: disconnect, then a
        new Printer (same process, same imported modules) on restart."""
        printer, reactor = self.printer, self.reactor
        result = printer.run_result
        try:
            if result == 'firmware_restart':
                printer.send_event("klippy:firmware_restart")
            printer.send_event("klippy:disconnect")
        except Exception as e:
            self._pending.append(e)
        self._pending.extend(reactor.failures)
        del reactor.failures[:]
        reactor.finalize()
        if result in ('restart', 'firmware_restart'):
            if result == 'firmware_restart':
                self.boot_time = time.monotonic() - 1.
            self._new_printer(result)
        else:
            self.stopped = True

    def _raise_pending(self):
        if self._pending:
            first = self._pending[0]
            del self._pending[:]
            raise first

    def _require_running(self):
        if self.printer is None:
            raise RuntimeError("Klippy not started (call start())")
        if self.stopped:
            raise RuntimeError("Klippy stopped")

    def run(self, seconds):
        self._require_running()
        deadline = time.monotonic() + seconds
        while not self.stopped and time.monotonic() < deadline:
            self._loop(deadline)
            self._raise_pending()

    def run_until(self, predicate, timeout=5.0):
        self._require_running()
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.stopped or time.monotonic() >= deadline:
                raise HarnessTimeout("condition not met within %.1f s"
                                     % (timeout,))
            self._loop(deadline, predicate, max_sleep=0.005)
            self._raise_pending()
        return True

    def gcode(self, script):
        self._require_running()
        outcome = {}
        printer = self.printer

        def run_script(eventtime):
            try:
                printer.lookup_object('gcode').run_script(script)
            except CommandError as e:
                outcome['error'] = e
        first = len(self.responses)
        done = self.reactor.register_callback(run_script)
        self._loop(NEVER, done.test)
        self._raise_pending()
        if 'error' in outcome:
            raise outcome['error']
        return self.responses[first:]

    def restart(self):
        return self.gcode("RESTART")

    def firmware_restart(self):
        return self.gcode("FIRMWARE_RESTART")

    def stop(self):
        if self.printer is None or self.stopped:
            return
        self.printer.request_exit('exit')
        self._finish_run()
        self._raise_pending()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # Queries
    def is_shutdown(self):
        return self.printer.is_shutdown()

    @property
    def shutdown_message(self):
        return self.printer.shutdown_message

    @property
    def state_message(self):
        return self.printer.get_state_message()[0]

    def lookup(self, name, default=None):
        return self.printer.lookup_object(name, default)

    def heater(self, name):
        return self.printer.lookup_object('heaters').lookup_heater(name)

    def status(self, name):
        obj = self.printer.lookup_object(name)
        return self.printer.query_status(obj, self.reactor.monotonic())
