import time

import pytest
from fake_chamber import chamber_config
from harness import GCodeError


def chamber(k):
    return k.lookup('fake_chamber')


def test_watermark_heats_below_target_and_stops_above(klippy):
    klippy.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    klippy.run_until(lambda: chamber(klippy).pin.writes)
    assert chamber(klippy).pin.writes[-1][1] == 1.
    chamber(klippy).temp = 46.   # inside the 2 degree band: keeps heating
    klippy.run(0.3)
    assert chamber(klippy).pin.writes[-1][1] == 1.
    chamber(klippy).temp = 47.   # target + max_delta: off
    klippy.run_until(lambda: chamber(klippy).pin.writes[-1][1] == 0.)
    assert klippy.status('heater_generic chamber')['power'] == 0.
    chamber(klippy).temp = 43.   # target - max_delta: on again
    klippy.run_until(lambda: chamber(klippy).pin.writes[-1][1] == 1.)


def test_status_reports_smoothed_temperature_target_and_power(klippy):
    klippy.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=30")
    klippy.run(0.5)
    status = klippy.status('heater_generic chamber')
    assert status == {'temperature': 20.0, 'target': 30.0, 'power': 1.0}
    heaters = klippy.status('heaters')
    assert heaters['available_heaters'] == ['heater_generic chamber']
    assert heaters['available_sensors'] == ['heater_generic chamber']


def test_set_pwm_suppresses_small_changes_until_refresh_time(klippy):
    heater = klippy.heater('chamber')
    pin = chamber(klippy).pin
    chamber(klippy).reporting = False
    klippy.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    del pin.writes[:]
    t0 = klippy.lookup('mcu').estimated_print_time(klippy.reactor.monotonic())
    heater.set_pwm(t0, 1.)
    assert pin.writes == [(t0 + heater.pwm_delay, 1.)]
    heater.set_pwm(t0 + 0.5, 0.98)        # change below 5%: suppressed
    assert len(pin.writes) == 1
    heater.set_pwm(t0 + 0.6, 0.5)         # significant change: sent
    assert pin.writes[-1] == (t0 + 0.6 + heater.pwm_delay, 0.5)
    # Unchanged values are re-sent before the pin's max duration runs out.
    refresh = t0 + 0.6 + heater.pwm_delay + 3. - 3. * heater.pwm_delay
    heater.set_pwm(refresh - 0.01, 0.5)
    assert len(pin.writes) == 2
    heater.set_pwm(refresh, 0.5)
    assert len(pin.writes) == 3
    assert pin.max_duration == 3.


def test_pwm_is_forced_off_without_target(klippy):
    heater = klippy.heater('chamber')
    chamber(klippy).reporting = False
    now = klippy.lookup('mcu').estimated_print_time(klippy.reactor.monotonic())
    heater.set_pwm(now, 1.)
    assert chamber(klippy).pin.writes == []


def test_readings_stamped_with_reactor_time_never_heat(make_klippy):
    k = make_klippy(chamber_config())
    chamber(k).use_reactor_time = True
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    k.run(0.5)
    assert all(value == 0. for _, value in chamber(k).pin.writes)


def test_heater_temperature_reads_zero_after_seven_stale_seconds(klippy):
    heater = klippy.heater('chamber')
    chamber(klippy).reporting = False
    mcu = klippy.lookup('mcu')
    eventtime = klippy.reactor.monotonic()
    now = mcu.estimated_print_time(eventtime)
    heater.temperature_callback(now - 6.9, 30.)
    heater.temperature_callback(now - 6.8, 30.)
    assert heater.get_temp(eventtime)[0] == pytest.approx(30., abs=0.01)
    # 0.3 s on, the last reading is 7.1 s old (clear of the float boundary)
    assert heater.get_temp(eventtime + 0.3)[0] == 0.
    # get_status keeps the last smoothed value.
    status = heater.get_status(eventtime + 0.3)
    assert status['temperature'] == pytest.approx(30., abs=0.01)


def test_out_of_range_target_is_a_gcode_error(klippy):
    with pytest.raises(GCodeError) as e:
        klippy.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=71")
    assert str(e.value) == ("Requested temperature (71.0) out of range"
                            " (0.0:70.0)")
    assert klippy.responses[-1] == ("!! Requested temperature (71.0) out of"
                                    " range (0.0:70.0)")
    assert klippy.heater('chamber').target_temp == 0.


def test_unknown_heater_name_lists_options(klippy):
    with pytest.raises(GCodeError) as e:
        klippy.gcode("SET_HEATER_TEMPERATURE HEATER=oven TARGET=40")
    assert str(e.value) == ("The value 'oven' is not valid for HEATER."
                            " Options: 'chamber'")


def test_turn_off_heaters_clears_every_target(klippy):
    klippy.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    klippy.gcode("TURN_OFF_HEATERS")
    assert klippy.heater('chamber').target_temp == 0.


def test_temperature_wait_pauses_while_other_timers_run(make_klippy):
    k = make_klippy(chamber_config())
    reactor = k.reactor
    started = reactor.monotonic()

    def warm_up(eventtime):
        chamber(k).temp = 35.
        return reactor.NEVER
    reactor.register_timer(warm_up, started + 0.3)
    samples_before = len(chamber(k).pin.writes)
    out = k.gcode('TEMPERATURE_WAIT SENSOR="heater_generic chamber"'
                  ' MINIMUM=30')
    waited = reactor.monotonic() - started
    assert 0.3 < waited < 2.5
    assert out and out[0] == "T:0"         # M105-style report while waiting
    assert k.status('heater_generic chamber')['temperature'] > 30.
    assert len(chamber(k).pin.writes) >= samples_before
    assert k.stall.max < 0.05              # the wait is not a stall


def test_temperature_wait_needs_a_limit(klippy):
    with pytest.raises(GCodeError, match="missing MINIMUM or MAXIMUM"):
        klippy.gcode('TEMPERATURE_WAIT SENSOR="heater_generic chamber"')


def test_set_temperature_with_wait_returns_when_not_busy(klippy):
    heaters = klippy.lookup('heaters')
    heater = klippy.heater('chamber')
    chamber(klippy).temp = 44.
    klippy.run(0.5)
    started = time.monotonic()
    result = {}

    def wait(eventtime):
        heaters.set_temperature(heater, 45., wait=True)
        result['done'] = time.monotonic() - started
    klippy.reactor.register_callback(wait)
    klippy.run_until(lambda: 'done' in result)
    assert result['done'] < 0.5            # 44 >= 45 - max_delta


def test_verify_heater_shuts_down_when_not_heating(make_klippy):
    k = make_klippy(chamber_config(more="""
[verify_heater chamber]
max_error: 5
check_gain_time: 1
hysteresis: 1
heating_gain: 1
"""))
    started = time.monotonic()
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    k.run_until(k.is_shutdown, timeout=5.)
    elapsed = time.monotonic() - started
    assert 1. <= elapsed <= 3.5
    assert k.shutdown_message.startswith(
        "Heater chamber not heating at expected rate")
    assert chamber(k).events[-1] == 'klippy:shutdown'
    # Klipper's Heater forces its PWM off once shut down.
    k.run(0.3)
    assert chamber(k).pin.writes[-1][1] == 0.


STRICT_CHECK = """
[verify_heater chamber]
max_error: 40
"""


def stop_readings_seven_seconds_ago(k):
    """The sensor went quiet 7.5 s of print time ago."""
    chamber(k).reporting = False
    mcu = k.lookup('mcu')
    now = mcu.estimated_print_time(k.reactor.monotonic())
    heater = k.heater('chamber')
    heater.temperature_callback(now - 7.5, heater.last_temp)


def test_stale_readings_with_a_target_trip_verify_heater(make_klippy):
    k = make_klippy(chamber_config(chamber_extra="temperature: 45",
                                   more=STRICT_CHECK))
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    k.run(1.1)                   # verify_heater has seen it at target
    assert not k.is_shutdown()
    stop_readings_seven_seconds_ago(k)
    assert k.heater('chamber').get_temp(k.reactor.monotonic())[0] == 0.
    k.run_until(k.is_shutdown, timeout=1.5)
    assert k.shutdown_message.startswith(
        "Heater chamber not heating at expected rate")
    # get_status still shows the last smoothed reading.
    assert k.status('heater_generic chamber')['temperature'] == 45.


def test_stale_readings_without_target_are_harmless(make_klippy):
    k = make_klippy(chamber_config(chamber_extra="temperature: 45",
                                   more=STRICT_CHECK))
    k.run(0.1)
    stop_readings_seven_seconds_ago(k)
    k.run(1.05)
    assert not k.is_shutdown()


def test_unknown_verify_heater_option_is_rejected(make_klippy):
    from harness import ConfigError
    with pytest.raises(ConfigError, match="'max_eror' is not valid"):
        make_klippy(chamber_config(more="[verify_heater chamber]\n"
                                        "max_eror: 5\n"))
