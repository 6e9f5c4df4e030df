# A test-only extra for the harness self-tests: a sensor type and a
# virtual heater pin, shaped like a host-side chamber heater module.
import time


class VirtualPin:
    def __init__(self, chamber, pin_params):
        self.chamber = chamber
        self.pin_params = pin_params
        self.cycle_time = None
        self.max_duration = None
        self.writes = []

    def get_mcu(self):
        return self.chamber.printer.lookup_object('mcu')

    def setup_cycle_time(self, cycle_time, hardware_pwm=False):
        self.cycle_time = cycle_time

    def setup_max_duration(self, max_duration):
        self.max_duration = max_duration

    def set_pwm(self, print_time, value):
        self.writes.append((print_time, value))


class Sensor:
    def __init__(self, chamber):
        self.chamber = chamber
        self.callback = None
        self.min_temp = self.max_temp = None

    def setup_minmax(self, min_temp, max_temp):
        self.min_temp, self.max_temp = min_temp, max_temp

    def setup_callback(self, cb):
        self.callback = cb

    def get_report_time_delta(self):
        return self.chamber.report_time


class FakeChamber:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.reactor = self.printer.get_reactor()
        self.report_time = config.getfloat('report_time', 0.2, above=0.)
        self.temp = config.getfloat('temperature', 25., minval=-50.)
        self.reporting = True
        # Deliberate misuse of Klipper's API, to prove the harness notices.
        self.misbehave = config.getchoice(
            'misbehave', ['none', 'pause_in_ready', 'pause_in_status',
                          'pause_in_shutdown', 'fail_in_timer'], 'none')
        self.use_reactor_time = False
        self.sensors = []
        self.pin = None
        self.events = []
        pheaters = self.printer.load_object(config, 'heaters')
        pheaters.add_sensor_factory('fake_chamber', self.make_sensor)
        self.printer.lookup_object('pins').register_chip('fake_chamber',
                                                         self)
        self.timer = self.reactor.register_timer(self._sample)
        for event in ('klippy:connect', 'klippy:ready', 'klippy:shutdown',
                      'klippy:disconnect', 'klippy:firmware_restart'):
            self.printer.register_event_handler(
                event, lambda event=event: self.events.append(event))
        self.printer.register_event_handler('klippy:connect',
                                            self._handle_connect)
        self.printer.register_event_handler('klippy:ready',
                                            self._handle_ready)
        self.printer.register_event_handler('klippy:shutdown',
                                            self._handle_shutdown)
        gcode = self.printer.lookup_object('gcode')
        gcode.register_command('FAKE_CHAMBER_BUSY', self.cmd_BUSY)
        gcode.register_command('FAKE_CHAMBER_FAIL', self.cmd_FAIL)

    def make_sensor(self, config):
        sensor = Sensor(self)
        self.sensors.append(sensor)
        return sensor

    def setup_pin(self, pin_type, pin_params):
        self.pin = VirtualPin(self, pin_params)
        return self.pin

    def _handle_connect(self):
        self.reactor.update_timer(self.timer, self.reactor.NOW)

    def _handle_ready(self):
        if self.misbehave == 'pause_in_ready':
            self.reactor.pause(self.reactor.monotonic() + 0.01)

    def _handle_shutdown(self):
        if self.misbehave == 'pause_in_shutdown':
            self.reactor.pause(self.reactor.monotonic() + 0.01)

    def _sample(self, eventtime):
        if self.misbehave == 'fail_in_timer':
            raise RuntimeError("deliberate failure in a timer")
        if self.reporting:
            read_time = eventtime
            if not self.use_reactor_time:
                mcu = self.printer.lookup_object('mcu')
                read_time = mcu.estimated_print_time(eventtime)
            for sensor in self.sensors:
                sensor.callback(read_time, self.temp)
        return eventtime + self.report_time

    def listen(self, fd):
        self.received = []
        self.fd_handle = self.reactor.register_fd(fd, self._readable)

    def _readable(self, eventtime):
        import os
        self.received.append(os.read(self.fd_handle.fd, 100))

    def ping_from_thread(self):
        self.reactor.register_async_callback(self._pinged)

    def _pinged(self, eventtime):
        self.events.append('pinged')

    def get_status(self, eventtime):
        if self.misbehave == 'pause_in_status':
            self.reactor.pause(eventtime + 0.01)
        return {'temperature': self.temp, 'reporting': self.reporting}

    def cmd_BUSY(self, gcmd):
        # Deliberately blocks the reactor thread.
        time.sleep(gcmd.get_float('SECONDS', 0.05))

    def cmd_FAIL(self, gcmd):
        raise ValueError("deliberate failure in a G-code handler")


def load_config(config):
    return FakeChamber(config)
