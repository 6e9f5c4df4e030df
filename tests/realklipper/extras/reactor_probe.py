# Test instrument, loaded into real Klipper by tests/realklipper: how late
# the reactor runs a timer due every 10 ms.  A callback that blocks the
# reactor thread (a DNS lookup, a connect, a blocking send) shows up here
# as lateness of about its own length.
PERIOD = 0.010


class ReactorProbe:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.reactor = self.printer.get_reactor()
        self.waketime = None
        self._reset()
        self.timer = self.reactor.register_timer(self._tick)
        self.printer.register_event_handler('klippy:ready', self._ready)
        self.printer.lookup_object('gcode').register_command(
            'REACTOR_PROBE_RESET', self.cmd_REACTOR_PROBE_RESET)

    def _reset(self):
        self.max_late = 0.
        self.worst_at = None
        self.samples = 0
        self.over = {0.005: 0, 0.020: 0, 0.100: 0}

    def _ready(self):
        self.waketime = self.reactor.monotonic() + PERIOD
        self.reactor.update_timer(self.timer, self.waketime)

    def _tick(self, eventtime):
        now = self.reactor.monotonic()
        late = now - self.waketime
        self.samples += 1
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
                'over_100ms': self.over[0.100]}


def load_config(config):
    return ReactorProbe(config)
