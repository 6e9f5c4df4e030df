import pytest
from harness import PinError
from harness.pins import PrinterPins


class Chip:
    def __init__(self):
        self.calls = []

    def setup_pin(self, pin_type, pin_params):
        self.calls.append((pin_type, pin_params))
        return pin_params


def test_pin_descriptions_parse_like_klipper():
    ppins = PrinterPins()
    chip = Chip()
    ppins.register_chip('panda_breath', chip)
    params = ppins.setup_pin('pwm', '! panda_breath: pwm')
    assert {k: params[k] for k in ('pin', 'invert', 'pullup', 'chip_name')} \
        == {'pin': 'pwm', 'invert': 1, 'pullup': 0,
            'chip_name': 'panda_breath'}
    assert params['chip'] is chip
    assert chip.calls[0][0] == 'pwm'
    ppins.register_chip('mcu', Chip())
    params = ppins.setup_pin('endstop', '^PA1')
    assert (params['chip_name'], params['pin'], params['pullup']) == (
        'mcu', 'PA1', 1)


def test_pin_errors():
    ppins = PrinterPins()
    ppins.register_chip('panda_breath', Chip())
    with pytest.raises(PinError, match="Unknown pin chip name 'nope'"):
        ppins.setup_pin('pwm', 'nope:pwm')
    with pytest.raises(PinError, match="Invalid pin description"):
        ppins.setup_pin('pwm', 'panda_breath:^pwm')
    with pytest.raises(PinError, match="Duplicate chip name"):
        ppins.register_chip('panda_breath', Chip())
    ppins.setup_pin('pwm', 'panda_breath:pwm')
    with pytest.raises(PinError, match="used multiple times"):
        ppins.setup_pin('pwm', 'panda_breath:pwm')


def test_mcu_print_time_is_monotonic_and_not_reactor_time(klippy):
    mcu = klippy.lookup('mcu')
    assert mcu.get_name() == 'mcu'
    now = klippy.reactor.monotonic()
    first = mcu.estimated_print_time(now)
    assert 0. < first < now
    assert mcu.estimated_print_time(now + 1.5) == pytest.approx(first + 1.5)


def test_print_time_survives_restart_but_not_firmware_restart(klippy):
    now = klippy.reactor.monotonic()
    before = klippy.lookup('mcu').estimated_print_time(now)
    klippy.gcode("M112")       # shut down: RESTART then skips its dwell
    klippy.restart()
    assert klippy.lookup('mcu').estimated_print_time(now) == before
    klippy.firmware_restart()
    assert klippy.lookup('mcu').estimated_print_time(now) < before


def test_pid_heater_on_an_mcu_pin(make_klippy):
    from fake_chamber import chamber_config
    k = make_klippy(chamber_config(more="""
[heater_generic bed]
sensor_type: fake_chamber
heater_pin: PA2
control: pid
pid_Kp: 50
pid_Ki: 1
pid_Kd: 100
min_temp: 0
max_temp: 120
"""))
    pin = k.lookup('mcu').pins['PA2']
    k.gcode("SET_HEATER_TEMPERATURE HEATER=bed TARGET=60")
    k.run_until(lambda: pin.value > 0.)
    assert pin.value == 1.          # 40 degrees below target: full power
    assert k.heater('bed').check_busy(k.reactor.monotonic())
    # The MCU turns a heater off that is not refreshed within max_duration.
    assert pin.max_duration == 3.
    assert pin.get_value(pin.last_time + 3.1) == 0.
    k.gcode("TURN_OFF_HEATERS")
    k.run_until(lambda: pin.value == 0.)
    k.gcode("M112")
    assert k.heater('bed').verify_mainthread_time == -999.


def test_mcu_pin_scheduled_in_the_past_shuts_down(make_klippy):
    from fake_chamber import chamber_config
    k = make_klippy(chamber_config(more="""
[heater_generic bed]
sensor_type: fake_chamber
heater_pin: PA2
control: watermark
min_temp: 0
max_temp: 120
"""))
    pin = k.lookup('mcu').pins['PA2']
    now = k.lookup('mcu').estimated_print_time(k.reactor.monotonic())
    pin.set_pwm(now - 1., 1.)
    assert k.shutdown_message == "MCU 'mcu' shutdown: Timer too close"
