import pytest
from fake_chamber import chamber_config
from harness import ConfigError, GCodeError, gcode_macro

M191 = """
[gcode_macro M191]
description: Set chamber temperature and wait
variable_last: 0
gcode:
  {% set s = params.S|default(0)|float %}
  SET_HEATER_TEMPERATURE HEATER=chamber TARGET={s}
  SET_GCODE_VARIABLE MACRO=M191 VARIABLE=last VALUE={s}
  {% if s > 0 %}
    TEMPERATURE_WAIT SENSOR="heater_generic chamber" MINIMUM={s - 2}
  {% endif %}

[gcode_macro SHOW_TARGET]
gcode:
  {% set chamber = printer["heater_generic chamber"] %}
  {action_respond_info("target=%.0f" % chamber.target)}

[gcode_macro TURN_OFF_HEATERS]
rename_existing: TURN_OFF_HEATERS_BASE
gcode:
  RESPOND_NOTE
  TURN_OFF_HEATERS_BASE

[gcode_macro RESPOND_NOTE]
gcode:
  {action_respond_info("heaters off")}
"""


@pytest.fixture
def with_jinja():
    pytest.importorskip('jinja2')


def test_macro_uses_params_status_and_variables(make_klippy, with_jinja):
    k = make_klippy(chamber_config(chamber_extra="temperature: 30",
                                   more=M191))
    k.gcode("M191 S25")
    assert k.heater('chamber').target_temp == 25.
    assert k.status('gcode_macro M191') == {'last': 25.}
    assert k.gcode("SHOW_TARGET") == ["// target=25"]


def test_macro_rename_existing_wraps_the_builtin(make_klippy, with_jinja):
    k = make_klippy(chamber_config(more=M191))
    k.gcode("M191 S0")
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    assert k.gcode("TURN_OFF_HEATERS") == ["// heaters off"]
    assert k.heater('chamber').target_temp == 0.


def test_macro_errors_become_gcode_errors(make_klippy, with_jinja):
    k = make_klippy(chamber_config(more="""
[gcode_macro FAIL]
gcode:
  {action_raise_error("no chamber today")}
"""))
    with pytest.raises(GCodeError, match="no chamber today"):
        k.gcode("FAIL")


def test_macro_without_jinja2_is_a_config_error_naming_the_section(
        make_klippy, monkeypatch):
    monkeypatch.setattr(gcode_macro, 'jinja2', None)
    with pytest.raises(ConfigError) as e:
        make_klippy(chamber_config(more=M191))
    assert "Section 'gcode_macro M191' needs the Python package Jinja2" in (
        str(e.value))


def test_idle_timeout_works_without_jinja2(make_klippy, monkeypatch):
    monkeypatch.setattr(gcode_macro, 'jinja2', None)
    k = make_klippy(chamber_config(more="[idle_timeout]\ntimeout: 0.3\n"))
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    k.run_until(lambda: k.heater('chamber').target_temp == 0., timeout=3.)
