# Test instrument, loaded into real Klipper by tests/realklipper: how late
# the reactor runs a timer due every 10 ms.  A callback that blocks the
# reactor thread (a DNS lookup, a connect, a blocking send) shows up here
# as lateness of about its own length.  It also notes when each chamber
# reading reaches the heater (time.monotonic(), the clock the simulator's
# frame log uses), for the bench's telemetry latency.
import collections
import time

PERIOD = 0.010
KEPT = 20000


class ReactorProbe:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.reactor = self.printer.get_reactor()
        self.waketime = None
        self.lates = collections.deque(maxlen=KEPT)
        self.readings = collections.deque(maxlen=KEPT)
        self._reset()
        self.timer = self.reactor.register_timer(self._tick)
        self.printer.register_event_handler('klippy:connect', self._connect)
        self.printer.register_event_handler('klippy:ready', self._ready)
        self.printer.lookup_object('gcode').register_command(
            'REACTOR_PROBE_RESET', self.cmd_REACTOR_PROBE_RESET)

    def _reset(self):
        self.max_late = 0.
        self.worst_at = None
        self.samples = 0
        self.over = {0.005: 0, 0.020: 0, 0.100: 0}
        self.lates.clear()
        self.readings.clear()

    def _connect(self):
        # Wrap the heater's callback of the module's sensor, if loaded.
        breath = self.printer.lookup_object('panda_breath', None)
        sensor = getattr(breath, 'sensor', None)
        if sensor is None or sensor.callback is None:
            return
        inner = sensor.callback

        def callback(read_time, temp):
            self.readings.append((time.monotonic(), temp))
            inner(read_time, temp)
        sensor.callback = callback

    def _ready(self):
        self.waketime = self.reactor.monotonic() + PERIOD
        self.reactor.update_timer(self.timer, self.waketime)

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
        self._reset()

    def get_status(self, eventtime):
        return {'max_late': self.max_late, 'worst_at': self.worst_at,
                'samples': self.samples,
                'over_5ms': self.over[0.005], 'over_20ms': self.over[0.020],
                'over_100ms': self.over[0.100],
                'lates': list(self.lates), 'readings': list(self.readings)}


def load_config(config):
    return ReactorProbe(config)
