"""Heaters (klippy/extras/heaters.py: Heater, ControlBangBang, ControlPID,
PrinterHeaters) and [heater_generic] (klippy/extras/heater_generic.py)."""
import threading

KELVIN_TO_CELSIUS = -273.15
MAX_HEAT_TIME = 3.0
AMBIENT_TEMP = 25.
PID_PARAM_BASE = 255.
MAX_MAINTHREAD_TIME = 5.0
QUELL_STALE_TIME = 7.0
MIN_PWM_CHANGE_RATIO = 0.05


class Heater:
    def __init__(self, config, sensor):
        self.printer = config.get_printer()
        self.name = config.get_name()
        self.short_name = self.name.split()[-1]
        self.sensor = sensor
        self.min_temp = config.getfloat('min_temp',
                                        minval=KELVIN_TO_CELSIUS)
        self.max_temp = config.getfloat('max_temp', above=self.min_temp)
        sensor.setup_minmax(self.min_temp, self.max_temp)
        sensor.setup_callback(self.temperature_callback)
        self.pwm_delay = sensor.get_report_time_delta()
        self.min_extrude_temp = config.getfloat(
            'min_extrude_temp', 170., minval=self.min_temp,
            maxval=self.max_temp)
        self.can_extrude = self.min_extrude_temp <= 0.
        self.max_power = config.getfloat('max_power', 1., above=0.,
                                         maxval=1.)
        self.min_pwm_change = self.max_power * MIN_PWM_CHANGE_RATIO
        self.smooth_time = config.getfloat('smooth_time', 1., above=0.)
        self.verify_mainthread_time = -999.
        self.lock = threading.Lock()
        self.last_temp = self.smoothed_temp = self.target_temp = 0.
        self.last_temp_time = 0.
        self.next_pwm_time = 0.
        self.last_pwm_value = 0.
        controls = {'watermark': ControlBangBang, 'pid': ControlPID}
        self.control = config.getchoice('control', controls)(self, config)
        self.mcu_pwm = self.printer.lookup_object('pins').setup_pin(
            'pwm', config.get('heater_pin'))
        cycle_time = config.getfloat('pwm_cycle_time', 0.100, above=0.,
                                     maxval=self.pwm_delay)
        self.mcu_pwm.setup_cycle_time(cycle_time)
        self.mcu_pwm.setup_max_duration(MAX_HEAT_TIME)
        self.printer.load_object(config, "verify_heater %s"
                                 % (self.short_name,))
        gcode = self.printer.lookup_object('gcode')
        gcode.register_mux_command(
            "SET_HEATER_TEMPERATURE", "HEATER", self.short_name,
            self.cmd_SET_HEATER_TEMPERATURE,
            desc=self.cmd_SET_HEATER_TEMPERATURE_help)
        self.printer.register_event_handler("klippy:shutdown",
                                            self._handle_shutdown)

    def set_pwm(self, read_time, value):
        if self.target_temp <= 0. or read_time > self.verify_mainthread_time:
            value = 0.
        unchanged = abs(value - self.last_pwm_value) < self.min_pwm_change
        if unchanged and (read_time < self.next_pwm_time
                          or not self.last_pwm_value):
            return
        pwm_time = read_time + self.pwm_delay
        # Refresh before the pin's max_duration runs out.
        self.next_pwm_time = (pwm_time + MAX_HEAT_TIME
                              - (3. * self.pwm_delay + 0.001))
        self.last_pwm_value = value
        self.mcu_pwm.set_pwm(pwm_time, value)

    def temperature_callback(self, read_time, temp):
        with self.lock:
            elapsed = read_time - self.last_temp_time
            self.last_temp = temp
            self.last_temp_time = read_time
            self.control.temperature_update(read_time, temp,
                                            self.target_temp)
            weight = min(elapsed / self.smooth_time, 1.)
            self.smoothed_temp += (temp - self.smoothed_temp) * weight
            self.can_extrude = self.smoothed_temp >= self.min_extrude_temp

    def _handle_shutdown(self):
        self.verify_mainthread_time = -999.

    def get_name(self):
        return self.name

    def get_pwm_delay(self):
        return self.pwm_delay

    def get_max_power(self):
        return self.max_power

    def get_smooth_time(self):
        return self.smooth_time

    def set_temp(self, degrees):
        if degrees and not self.min_temp <= degrees <= self.max_temp:
            raise self.printer.command_error(
                "Requested temperature (%.1f) out of range (%.1f:%.1f)"
                % (degrees, self.min_temp, self.max_temp))
        with self.lock:
            self.target_temp = degrees

    def get_temp(self, eventtime):
        mcu = self.mcu_pwm.get_mcu()
        stale_before = mcu.estimated_print_time(eventtime) - QUELL_STALE_TIME
        with self.lock:
            if self.last_temp_time < stale_before:
                return 0., self.target_temp
            return self.smoothed_temp, self.target_temp

    def check_busy(self, eventtime):
        with self.lock:
            return self.control.check_busy(eventtime, self.smoothed_temp,
                                           self.target_temp)

    def set_control(self, control):
        with self.lock:
            old = self.control
            self.control = control
            self.target_temp = 0.
        return old

    def alter_target(self, target_temp):
        if target_temp:
            target_temp = max(self.min_temp, min(self.max_temp, target_temp))
        self.target_temp = target_temp

    def stats(self, eventtime):
        mcu = self.mcu_pwm.get_mcu()
        if not self.printer.is_shutdown():
            self.verify_mainthread_time = (mcu.estimated_print_time(eventtime)
                                           + MAX_MAINTHREAD_TIME)
        with self.lock:
            target, temp, pwm = (self.target_temp, self.last_temp,
                                 self.last_pwm_value)
        return bool(target or temp > 50.), (
            '%s: target=%.0f temp=%.1f pwm=%.3f'
            % (self.short_name, target, temp, pwm))

    def get_status(self, eventtime):
        with self.lock:
            return {'temperature': round(self.smoothed_temp, 2),
                    'target': self.target_temp,
                    'power': self.last_pwm_value}

    cmd_SET_HEATER_TEMPERATURE_help = "Sets a heater temperature"

    def cmd_SET_HEATER_TEMPERATURE(self, gcmd):
        target = gcmd.get_float('TARGET', 0.)
        self.printer.lookup_object('heaters').set_temperature(self, target)


class ControlBangBang:
    """control: watermark"""

    def __init__(self, heater, config):
        self.heater = heater
        self.heater_max_power = heater.get_max_power()
        self.max_delta = config.getfloat('max_delta', 2.0, above=0.)
        self.heating = False

    def temperature_update(self, read_time, temp, target_temp):
        if self.heating and temp >= target_temp + self.max_delta:
            self.heating = False
        elif not self.heating and temp <= target_temp - self.max_delta:
            self.heating = True
        self.heater.set_pwm(read_time,
                            self.heater_max_power if self.heating else 0.)

    def check_busy(self, eventtime, smoothed_temp, target_temp):
        return smoothed_temp < target_temp - self.max_delta


PID_SETTLE_DELTA = 1.
PID_SETTLE_SLOPE = .1


class ControlPID:
    """control: pid"""

    def __init__(self, heater, config):
        self.heater = heater
        self.heater_max_power = heater.get_max_power()
        self.Kp = config.getfloat('pid_Kp') / PID_PARAM_BASE
        self.Ki = config.getfloat('pid_Ki') / PID_PARAM_BASE
        self.Kd = config.getfloat('pid_Kd') / PID_PARAM_BASE
        self.min_deriv_time = heater.get_smooth_time()
        self.temp_integ_max = (self.heater_max_power / self.Ki
                               if self.Ki else 0.)
        self.prev_temp = AMBIENT_TEMP
        self.prev_temp_time = 0.
        self.prev_temp_deriv = 0.
        self.prev_temp_integ = 0.

    def temperature_update(self, read_time, temp, target_temp):
        elapsed = read_time - self.prev_temp_time
        change = temp - self.prev_temp
        if elapsed >= self.min_deriv_time:
            deriv = change / elapsed
        else:
            deriv = (self.prev_temp_deriv * (self.min_deriv_time - elapsed)
                     + change) / self.min_deriv_time
        err = target_temp - temp
        integ = max(0., min(self.temp_integ_max,
                            self.prev_temp_integ + err * elapsed))
        output = self.Kp * err + self.Ki * integ - self.Kd * deriv
        bounded = max(0., min(self.heater_max_power, output))
        self.heater.set_pwm(read_time, bounded)
        self.prev_temp = temp
        self.prev_temp_time = read_time
        self.prev_temp_deriv = deriv
        if output == bounded:
            self.prev_temp_integ = integ

    def check_busy(self, eventtime, smoothed_temp, target_temp):
        return (abs(target_temp - smoothed_temp) > PID_SETTLE_DELTA
                or abs(self.prev_temp_deriv) > PID_SETTLE_SLOPE)


class PrinterHeaters:
    def __init__(self, config, u1_strict=False):
        self.printer = config.get_printer()
        self.u1_strict = u1_strict
        self.sensor_factories = {}
        self.heaters = {}
        self.gcode_id_to_sensor = {}
        self.available_heaters = []
        self.available_sensors = []
        self.available_monitors = []
        self.has_started = False
        # U1 fork: targets remembered by short name for power-loss recovery.
        self.recovery_targets = {}
        self.printer.register_event_handler("klippy:ready",
                                            self._handle_ready)
        self.printer.register_event_handler("gcode:request_restart",
                                            self.turn_off_all_heaters)
        gcode = self.printer.lookup_object('gcode')
        gcode.register_command("TURN_OFF_HEATERS", self.cmd_TURN_OFF_HEATERS,
                               desc=self.cmd_TURN_OFF_HEATERS_help)
        gcode.register_command("M105", self.cmd_M105, when_not_ready=True)

    def add_sensor_factory(self, sensor_type, sensor_factory):
        self.sensor_factories[sensor_type] = sensor_factory

    def setup_heater(self, config, gcode_id=None):
        heater_name = config.get_name().split()[-1]
        if heater_name in self.heaters:
            raise config.error("Heater %s already registered"
                               % (heater_name,))
        sensor = self.setup_sensor(config)
        self.heaters[heater_name] = heater = Heater(config, sensor)
        self.register_sensor(config, heater, gcode_id)
        self.available_heaters.append(config.get_name())
        return heater

    def get_all_heaters(self):
        return self.available_heaters

    def lookup_heater(self, heater_name):
        if heater_name not in self.heaters:
            raise self.printer.config_error("Unknown heater '%s'"
                                            % (heater_name,))
        return self.heaters[heater_name]

    def setup_sensor(self, config):
        sensor_type = config.get('sensor_type')
        if sensor_type not in self.sensor_factories:
            raise self.printer.config_error(
                "Unknown temperature sensor '%s'" % (sensor_type,))
        return self.sensor_factories[sensor_type](config)

    def register_sensor(self, config, psensor, gcode_id=None):
        sensor_name = config.get_name()
        self.available_sensors.append(sensor_name)
        gcode = self.printer.lookup_object('gcode')
        gcode.register_mux_command('TEMPERATURE_WAIT', "SENSOR", sensor_name,
                                   self.cmd_TEMPERATURE_WAIT,
                                   desc=self.cmd_TEMPERATURE_WAIT_help)
        if gcode_id is None:
            gcode_id = config.get('gcode_id', None)
            if gcode_id is None:
                return
        if gcode_id in self.gcode_id_to_sensor:
            raise self.printer.config_error(
                "G-Code sensor id %s already registered" % (gcode_id,))
        self.gcode_id_to_sensor[gcode_id] = psensor

    def register_monitor(self, config):
        self.available_monitors.append(config.get_name())

    def get_status(self, eventtime):
        return {'available_heaters': self.available_heaters,
                'available_sensors': self.available_sensors,
                'available_monitors': self.available_monitors}

    def turn_off_all_heaters(self, print_time=0.):
        for heater in self.heaters.values():
            heater.set_temp(0.)

    cmd_TURN_OFF_HEATERS_help = "Turn off all heaters"

    def cmd_TURN_OFF_HEATERS(self, gcmd):
        self.turn_off_all_heaters()

    def _handle_ready(self):
        self.has_started = True

    def _get_temp(self, eventtime):
        out = []
        if self.has_started:
            for gcode_id, sensor in sorted(self.gcode_id_to_sensor.items()):
                cur, target = sensor.get_temp(eventtime)
                out.append("%s:%.1f /%.1f" % (gcode_id, cur, target))
        return " ".join(out) if out else "T:0"

    def cmd_M105(self, gcmd):
        msg = self._get_temp(self.printer.get_reactor().monotonic())
        if not gcmd.ack(msg):
            gcmd.respond_raw(msg)

    def _wait_for_temperature(self, heater):
        toolhead = self.printer.lookup_object("toolhead")
        gcode = self.printer.lookup_object("gcode")
        reactor = self.printer.get_reactor()
        eventtime = reactor.monotonic()
        while not self.printer.is_shutdown() and heater.check_busy(eventtime):
            toolhead.get_last_move_time()
            gcode.respond_raw(self._get_temp(eventtime))
            eventtime = reactor.pause(eventtime + 1.)

    def set_temperature(self, heater, temp, wait=False):
        toolhead = self.printer.lookup_object('toolhead')
        toolhead.register_lookahead_callback(lambda print_time: None)
        if self.u1_strict:
            # The U1 fork checks the heater's full name and records the
            # target by short name for power-loss recovery.
            heater.get_name()
            self.recovery_targets[heater.short_name] = temp
        heater.set_temp(temp)
        if wait and temp:
            self._wait_for_temperature(heater)

    cmd_TEMPERATURE_WAIT_help = "Wait for a temperature on a sensor"

    def cmd_TEMPERATURE_WAIT(self, gcmd):
        sensor_name = gcmd.get('SENSOR')
        low = gcmd.get_float('MINIMUM', float('-inf'))
        high = gcmd.get_float('MAXIMUM', float('inf'), above=low)
        if low == float('-inf') and high == float('inf'):
            raise gcmd.error(
                "Error on 'TEMPERATURE_WAIT': missing MINIMUM or MAXIMUM.")
        if sensor_name in self.heaters:
            sensor = self.heaters[sensor_name]
        else:
            sensor = self.printer.lookup_object(sensor_name)
        toolhead = self.printer.lookup_object("toolhead")
        reactor = self.printer.get_reactor()
        eventtime = reactor.monotonic()
        while not self.printer.is_shutdown():
            temp, target = sensor.get_temp(eventtime)
            if low <= temp <= high:
                return
            toolhead.get_last_move_time()
            gcmd.respond_raw(self._get_temp(eventtime))
            eventtime = reactor.pause(eventtime + 1.)


def load_config(config):
    return PrinterHeaters(config, config.get_printer().u1_strict)


def load_heater_generic(config):
    pheaters = config.get_printer().load_object(config, 'heaters')
    return pheaters.setup_heater(config)
