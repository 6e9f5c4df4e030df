import pytest
from fake_chamber import chamber_config
from harness import ConfigError
from harness.configfile import ConfigWrapper, parse_config_text


def wrapper(text, section):
    return ConfigWrapper(None, parse_config_text(text), {}, section)


def test_missing_required_option_names_option_and_section(make_klippy):
    config = chamber_config().replace("max_temp: 70\n", "")
    with pytest.raises(ConfigError) as e:
        make_klippy(config)
    assert str(e.value) == ("Option 'max_temp' in section 'heater_generic"
                            " chamber' must be specified")


def test_out_of_range_option_names_option(make_klippy):
    with pytest.raises(ConfigError) as e:
        make_klippy(chamber_config(report_time=0))
    assert str(e.value) == ("Option 'report_time' in section 'fake_chamber'"
                            " must be above 0.0")


def test_unknown_option_is_rejected_after_loading(make_klippy):
    with pytest.raises(ConfigError) as e:
        make_klippy(chamber_config(chamber_extra="colour: blue"))
    assert str(e.value) == ("Option 'colour' is not valid in section"
                            " 'fake_chamber'")


def test_unknown_section_is_rejected(make_klippy):
    with pytest.raises(ConfigError) as e:
        make_klippy(chamber_config(more="\n[no_such_thing]\nx: 1\n"))
    assert "Section 'no_such_thing' is not a valid config section" in str(
        e.value)


def test_sensor_section_after_heater_is_an_unknown_sensor(make_klippy):
    heater, chamber = chamber_config().split("[heater_generic chamber]")
    config = "[heater_generic chamber]" + chamber + heater
    with pytest.raises(ConfigError) as e:
        make_klippy(config)
    assert str(e.value) == "Unknown temperature sensor 'fake_chamber'"


def test_unknown_pin_chip_is_a_config_error(make_klippy):
    config = chamber_config().replace("fake_chamber:pwm", "nowhere:pwm")
    with pytest.raises(ConfigError) as e:
        make_klippy(config)
    assert str(e.value) == "Unknown pin chip name 'nowhere'"


def test_invalid_choice_names_option(make_klippy):
    config = chamber_config().replace("watermark", "fuzzy")
    with pytest.raises(ConfigError) as e:
        make_klippy(config)
    assert str(e.value) == ("Choice 'fuzzy' for option 'control' in section"
                            " 'heater_generic chamber' is not a valid"
                            " choice")


def test_comments_equals_and_multiline_values_parse_like_klipper():
    text = ("[a b]\n"
            "host = 192.168.1.5  # the device\n"
            "port: 81 ; inline\n"
            "gcode:\n"
            "  M117 one\n"
            "  M117 two\n"
            "flag: yes\n"
            "items: 1, 2,3\n")
    c = wrapper(text, 'a b')
    assert c.get('host') == '192.168.1.5'
    assert c.getint('port') == 81
    assert c.get('gcode') == "\nM117 one\nM117 two"
    assert c.getboolean('flag') is True
    assert c.getintlist('items') == (1, 2, 3)
    assert c.getlist('items') == ('1', '2', '3')
    assert c.get('missing', None) is None
    assert c.getfloat('missing', 1.5) == 1.5


def test_numeric_limits_use_klipper_wording():
    c = wrapper("[panda_breath]\nport: 0\ntimeout: 3\n", 'panda_breath')
    with pytest.raises(ConfigError) as e:
        c.getint('port', minval=1)
    assert str(e.value) == ("Option 'port' in section 'panda_breath' must"
                            " have minimum of 1")
    with pytest.raises(ConfigError, match="must have maximum of 2"):
        c.getfloat('timeout', maxval=2.)
    with pytest.raises(ConfigError, match="must be below 3"):
        c.getfloat('timeout', below=3)
    with pytest.raises(ConfigError, match="must be above 3"):
        c.getfloat('timeout', above=3)
    assert c.getfloat('timeout', minval=3., maxval=3.) == 3.


def test_unparsable_value_names_option():
    c = wrapper("[panda_breath]\nport: eighty\n", 'panda_breath')
    with pytest.raises(ConfigError) as e:
        c.getint('port')
    assert str(e.value) == ("Unable to parse option 'port' in section"
                            " 'panda_breath'")


def test_prefix_sections_and_options():
    c = wrapper("[heater_generic a]\n[heater_generic b]\n[x]\n"
                "variable_one: 1\nvariable_two: 2\nother: 3\n", 'x')
    names = [s.get_name() for s in c.get_prefix_sections('heater_generic')]
    assert names == ['heater_generic a', 'heater_generic b']
    assert c.get_prefix_options('variable_') == ['variable_one',
                                                 'variable_two']
    assert c.has_section('x') and not c.has_section('y')
