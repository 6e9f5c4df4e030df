"""The main MCU object 'mcu' (klippy/mcu.py: MCU.estimated_print_time,
get_name, setup_pin).  There is no serial link: print time is derived from
reactor time with a fixed offset, as a synced MCU clock would be."""
from . import pins


class MCUPwm:
    """An MCU heater pin: records every set_pwm and, like firmware, turns
    itself off when not refreshed within max_duration."""

    def __init__(self, mcu, pin_params):
        self._mcu = mcu
        self.pin = pin_params['pin']
        self.invert = pin_params['invert']
        self.cycle_time = 0.100
        self.hardware_pwm = False
        self.max_duration = 2.
        self.value = 0.
        self.last_time = 0.
        self.history = []

    def get_mcu(self):
        return self._mcu

    def setup_cycle_time(self, cycle_time, hardware_pwm=False):
        self.cycle_time = cycle_time
        self.hardware_pwm = hardware_pwm

    def setup_max_duration(self, max_duration):
        self.max_duration = max_duration

    def setup_start_value(self, start_value, shutdown_value):
        self.value = start_value

    def set_pwm(self, print_time, value):
        mcu = self._mcu
        now = mcu.estimated_print_time(mcu.printer.get_reactor().monotonic())
        if print_time < now:
            # The firmware cannot schedule in the past: it shuts down.
            mcu.printer.invoke_shutdown("MCU '%s' shutdown: Timer too close"
                                        % (mcu.get_name(),))
            return
        self.last_time = print_time
        self.value = value
        self.history.append((print_time, value))

    def get_value(self, print_time):
        if (self.max_duration and self.value
                and print_time > self.last_time + self.max_duration):
            return 0.
        return self.value


class MCU:
    def __init__(self, config, boot_time):
        self.printer = config.get_printer()
        self._name = config.get_name()
        self._boot_time = boot_time
        # Options of a real [mcu] section are accepted (and ignored).
        config.get('serial', None)
        config.getint('baud', 250000, minval=2400)
        config.get('canbus_uuid', None)
        config.get('restart_method', None)
        self.pins = {}
        self.printer.lookup_object('pins').register_chip(self._name, self)
        self.printer.register_event_handler("klippy:shutdown",
                                            self._handle_shutdown)

    def get_name(self):
        return self._name

    def get_printer(self):
        return self.printer

    def is_fileoutput(self):
        return False

    def is_shutdown(self):
        return self.printer.is_shutdown()

    def estimated_print_time(self, eventtime):
        return eventtime - self._boot_time

    def print_time_to_clock(self, print_time):
        return int(print_time * self.get_constant_float('CLOCK_FREQ'))

    def clock_to_print_time(self, clock):
        return clock / self.get_constant_float('CLOCK_FREQ')

    def get_constant_float(self, name):
        return {'CLOCK_FREQ': 1000000.}[name]

    def seconds_to_clock(self, seconds):
        return int(seconds * self.get_constant_float('CLOCK_FREQ'))

    def setup_pin(self, pin_type, pin_params):
        if pin_type != 'pwm':
            raise pins.error("harness mcu supports only pwm pins, not '%s'"
                             % (pin_type,))
        pin = MCUPwm(self, pin_params)
        self.pins[pin_params['pin']] = pin
        return pin

    def _handle_shutdown(self):
        # The firmware turns its heater pins off on shutdown.
        for pin in self.pins.values():
            pin.value = 0.


def add_printer_objects(config, boot_time):
    config.get_printer().add_object(
        'mcu', MCU(config.getsection('mcu'), boot_time))
