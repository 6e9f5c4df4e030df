"""Targets reach the device however Klipper's commands are arranged."""
import pytest
from chamber import FAST, chamber_config

from realklipper.api import APIError
from realklipper.helpers import blink, set_target, writes
from realklipper.test_shipped_config import shipped_config

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


# Owners' configs and macro packs rename Klipper's heater commands to
# wrap them; the module wraps them too.  Either may load first.
RENAME_BOTH = """
[gcode_macro SET_HEATER_TEMPERATURE]
rename_existing: SET_HEATER_TEMPERATURE_BASE
gcode:
  SET_HEATER_TEMPERATURE_BASE {rawparams}

[gcode_macro TURN_OFF_HEATERS]
rename_existing: TURN_OFF_HEATERS_BASE
gcode:
  TURN_OFF_HEATERS_BASE
"""


def took_over(p, sim, **press):
    """A panel press while Klipper heats: wait until the module let go."""
    sim.press(**press)
    p.wait_console("left Klipper's control")


@pytest.mark.parametrize("order", ["macros_first", "module_first"])
def test_every_set_takes_the_device_back_through_owners_macros(
        printer, sim, order):
    config = chamber_config(sim.port, options=FAST)
    config = (RENAME_BOTH + config if order == "macros_first"
              else config + RENAME_BOTH)
    p = printer(config=config)
    set_target(p, 40)
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 40)
    took_over(p, sim, work_on=False)
    sim.clear_frames()
    set_target(p, 40)                   # the same target again
    sim.wait_for(lambda s: s["work_on"] and s["work_mode"] == 2
                 and s["set_temp"] == 40)
    assert writes(sim) == [("work_mode", 2), ("set_temp", 40),
                           ("work_on", True)]
    took_over(p, sim, work_on=True, work_mode=3, isrunning=1)
    p.gcode("TURN_OFF_HEATERS")
    assert p.status("heater_generic chamber")["target"] == 0
    set_target(p, 40)
    sim.wait_for(lambda s: s["work_mode"] == 2 and s["set_temp"] == 40)
    p.wait_console("replaces the drying session")
    p.gcode("TURN_OFF_HEATERS")
    sim.wait_for(lambda s: not s["work_on"])
    # Klipper's own command, under its new name, still reaches the device
    p.gcode("SET_HEATER_TEMPERATURE_BASE HEATER=chamber TARGET=42")
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 42)
    p.gcode("TURN_OFF_HEATERS_BASE")
    sim.wait_for(lambda s: not s["work_on"])
    assert any("SET_HEATER_TEMPERATURE_BASE" in line
               for line in p.output("HELP"))


def test_m141_again_after_a_panel_press_takes_the_device_back(printer, sim):
    p = printer(config=shipped_config(sim.port))
    p.gcode("M141 S50")
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 50)
    took_over(p, sim, work_on=True, work_mode=1)        # auto at the panel
    assert "left Klipper's control (auto)" in p.log()
    # the module lets go: nothing is sent while the owner has it
    sim.clear_frames()
    blink(p, sim)
    assert writes(sim) == []
    assert sim.state()["work_mode"] == 1
    p.gcode("M141 S50")
    sim.wait_for(lambda s: s["work_mode"] == 2 and s["set_temp"] == 50)
    p.gcode("M141 S0")
    sim.wait_for(lambda s: not s["work_on"])


def test_a_set_naming_another_heater_does_not_take_the_device_back(
        printer, sim):
    p = printer()
    set_target(p, 40)
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 40)
    took_over(p, sim, work_on=False)
    sim.clear_frames()
    try:
        p.gcode("SET_HEATER_TEMPERATURE HEATER=nosuch TARGET=40")
    except APIError:
        pass
    assert writes(sim) == []
    assert not sim.state()["work_on"]
