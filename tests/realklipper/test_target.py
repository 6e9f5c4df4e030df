"""Targets reach the device however Klipper's commands are arranged."""
from realklipper.api import APIError

RENAMED = """
[gcode_macro SET_HEATER_TEMPERATURE]
rename_existing: SET_HEATER_TEMPERATURE_BUILTIN
gcode:
  SET_HEATER_TEMPERATURE_BUILTIN {rawparams}
"""


def test_target_reaches_device_through_renamed_command(printer, sim):
    p = printer(extra=RENAMED)
    p.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 40)
    p.gcode("TURN_OFF_HEATERS")
    sim.wait_for(lambda s: not s["work_on"])


def test_rejected_target_changes_nothing(printer, sim):
    p = printer()
    p.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 40)
    sim.clear_frames()
    try:
        p.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=500")
    except APIError as e:
        assert "500" in str(e)
    else:
        raise AssertionError("a target above max_temp was accepted")
    assert p.status("heater_generic chamber")["target"] == 40
    assert sim.settings_writes() == []
