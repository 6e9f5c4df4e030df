"""RESTART and FIRMWARE_RESTART in real Klipper: one connection after each,
and what Klipper started ends with it, even when the link was down."""
import pytest

from realklipper.helpers import blink, link, set_target, writes


def drying(s):
    return s["work_on"] and s["work_mode"] == 3 and s["isrunning"] == 1


@pytest.mark.parametrize("command", ["RESTART", "FIRMWARE_RESTART"])
def test_restart_turns_klippers_heat_and_drying_off_and_leaves_one_link(
        printer, sim, command):
    p = printer()
    set_target(p, 45)
    sim.wait_for(lambda s: s["work_on"])
    p.restart(command)
    sim.wait_for(lambda s: not s["work_on"])
    p.wait_for(lambda: link(p)["connected"])
    sim.wait_for(lambda s: s["clients"] == 1)
    p.gcode("PANDA_BREATH_DRY PRESET=PLA")
    sim.wait_for(drying)
    p.restart(command)
    sim.wait_for(lambda s: not s["work_on"])
    p.wait_for(lambda: link(p)["connected"])
    sim.wait_for(lambda s: s["clients"] == 1)


def test_klipper_drying_survives_a_blink_and_ends_after_a_restart_without_link(  # noqa: E501
        printer, sim):
    p = printer()
    p.gcode("PANDA_BREATH_DRY PRESET=PLA")
    sim.wait_for(drying)
    blink(p, sim)
    assert drying(sim.state())
    assert ("work_on", False) not in writes(sim)
    assert link(p)["session"] == "klipper"
    sim.set_fault("refuse", True)
    sim.drop_all()
    p.wait_for(lambda: not link(p)["connected"])
    p.restart()                 # the off cannot reach the device now
    assert drying(sim.state())
    sim.set_fault("refuse", False)
    sim.wait_for(lambda s: not s["work_on"])
    assert "ending the drying session Klipper started" in p.log()


def test_drying_taken_over_at_the_device_is_the_devices(printer, sim):
    p = printer()
    p.gcode("PANDA_BREATH_DRY PRESET=PLA")
    sim.wait_for(drying)
    sim.press(work_mode=1)      # the owner switches to auto on the panel
    p.wait_for(lambda: link(p)["session"] == "device")
    p.wait_console("changed at the device")
    p.restart()
    p.wait_for(lambda: link(p)["connected"]
               and link(p)["session"] == "device")
    state = sim.state()
    assert state["work_on"] and state["work_mode"] == 1
