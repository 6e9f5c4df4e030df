import pytest
from fake_chamber import chamber_config
from harness import ConfigError, GCodeError


def test_commands_and_parameter_names_are_case_insensitive(klippy):
    klippy.gcode("set_heater_temperature heater=chamber target=41")
    assert klippy.heater('chamber').target_temp == 41.


def test_parameter_errors_use_klipper_wording(klippy):
    with pytest.raises(GCodeError) as e:
        klippy.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=warm")
    assert str(e.value) == ("Error on 'SET_HEATER_TEMPERATURE HEATER=chamber"
                            " TARGET=warm': unable to parse warm")
    with pytest.raises(GCodeError) as e:
        klippy.gcode("SET_HEATER_TEMPERATURE TARGET=40")
    assert str(e.value) == ("Error on 'SET_HEATER_TEMPERATURE TARGET=40':"
                            " missing HEATER")
    with pytest.raises(GCodeError, match="MAXIMUM must be above 50.0"):
        klippy.gcode('TEMPERATURE_WAIT SENSOR="heater_generic chamber"'
                     ' MINIMUM=50 MAXIMUM=40')


def test_gcmd_limits(klippy):
    gcode = klippy.lookup('gcode')
    gcmd = gcode.create_gcode_command("X", "X A=1 B=2.5",
                                      {'A': '1', 'B': '2.5'})
    assert gcmd.get_int('A', minval=1, maxval=1) == 1
    assert gcmd.get_float('B', above=2., below=3.) == 2.5
    assert gcmd.get_float('C', 7.) == 7.
    with pytest.raises(GCodeError, match="A must have minimum of 2"):
        gcmd.get_int('A', minval=2)
    with pytest.raises(GCodeError, match="A must have maximum of 0"):
        gcmd.get_int('A', maxval=0)
    with pytest.raises(GCodeError, match="B must be below 2.5"):
        gcmd.get_float('B', below=2.5)


def test_unknown_command_is_reported_not_raised(klippy):
    assert klippy.gcode("FROBNICATE") == ['// Unknown command:"FROBNICATE"']


def test_register_command_none_unregisters_and_returns_old(klippy):
    gcode = klippy.lookup('gcode')
    old = gcode.register_command("TURN_OFF_HEATERS", None)
    assert old is not None
    assert klippy.gcode("TURN_OFF_HEATERS") == [
        '// Unknown command:"TURN_OFF_HEATERS"']
    gcode.register_command("TURN_OFF_HEATERS", old)
    klippy.gcode("TURN_OFF_HEATERS")
    with pytest.raises(ConfigError, match="already registered"):
        gcode.register_command("TURN_OFF_HEATERS", old)
    with pytest.raises(ConfigError, match="invalid name"):
        gcode.register_command("bad_name", old)


def test_run_script_from_a_timer_responds_to_the_console(klippy):
    reactor = klippy.reactor
    gcode = klippy.lookup('gcode')
    done = []

    def timer(eventtime):
        gcode.run_script("ECHO MSG=hi\nSET_HEATER_TEMPERATURE HEATER=chamber"
                         " TARGET=33")
        done.append(True)
        return reactor.NEVER
    reactor.register_timer(timer, reactor.NOW)
    klippy.run_until(lambda: done)
    assert "// ECHO MSG=hi" in klippy.responses
    assert klippy.heater('chamber').target_temp == 33.


def test_help_lists_described_commands(klippy):
    out = klippy.gcode("HELP")[0]
    assert "SET_HEATER_TEMPERATURE: Sets a heater temperature" in out
    assert "TURN_OFF_HEATERS: Turn off all heaters" in out


def test_m105_reports_sensors_with_gcode_id(make_klippy):
    k = make_klippy(chamber_config(heater_extra="gcode_id: C"))
    k.run(0.3)
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    k.run(0.3)
    assert k.gcode("M105") == ["C:20.0 /40.0"]


def test_idle_timeout_turns_heaters_off(make_klippy):
    k = make_klippy(chamber_config(more="[idle_timeout]\ntimeout: 0.3\n"))
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    assert k.status('idle_timeout')['state'] == "Printing"
    k.run_until(lambda: k.heater('chamber').target_temp == 0., timeout=3.)
    assert k.status('idle_timeout')['state'] == "Idle"


def test_idle_timeout_defaults_to_ten_minutes(klippy):
    assert klippy.status('idle_timeout')['idle_timeout'] == 600.


def test_u1_strict_reads_heater_names(make_klippy):
    k = make_klippy(chamber_config(), u1_strict=True)
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    assert k.lookup('heaters').recovery_targets == {'chamber': 40.}


def test_u1_strict_rejects_heater_without_names(make_klippy):
    k = make_klippy(chamber_config(), u1_strict=True)
    heaters = k.lookup('heaters')

    class BareHeater:     # what a hand-made heater object might look like
        def set_temp(self, degrees):
            pass

        def check_busy(self, eventtime):
            return False
    with pytest.raises(AttributeError):
        heaters.set_temperature(BareHeater(), 40.)
    plain = make_klippy(chamber_config())
    plain.lookup('heaters').set_temperature(BareHeater(), 40.)


def test_extended_command_with_bare_word_is_malformed(klippy):
    with pytest.raises(GCodeError, match="Malformed command 'ECHO hello'"):
        klippy.gcode("ECHO hello")


def test_line_numbers_and_checksums_are_ignored(klippy):
    klippy.gcode("N12 SET_HEATER_TEMPERATURE HEATER=chamber TARGET=42*71")
    assert klippy.heater('chamber').target_temp == 42.
