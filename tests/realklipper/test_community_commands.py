"""The community module's G-code in real Klipper: PANDA_BREATH_AUTO with
its parameters and defaults, PANDA_BREATH_DRY_START, values fitted to the
device's range with a message, and out-of-range values refused with
nothing sent.  (Owners' config files: test_u1_dropin.py.)"""
import pytest
from chamber import FAST, chamber_config

from realklipper.helpers import bind, link, refused, set_target, writes
from realklipper.printer import StartupError


@pytest.fixture
def bound(printer, sim, moonraker_endpoint):
    """A printer whose device is bound to the Moonraker endpoint."""
    bind(sim, moonraker_endpoint.port)
    sim.wait_for(lambda s: s["printer"]["state"] == 3)
    return printer()


def test_auto_takes_the_community_parameters_and_defaults(bound, sim):
    p = bound
    p.gcode("PANDA_BREATH_AUTO ENABLE=1 TARGET=45.0 FILTERTEMP=35"
            " HOTBEDTEMP=90")
    sim.wait_for(lambda s: s["work_on"] and s["work_mode"] == 1)
    assert writes(sim) == [("set_temp", 45), ("hotbedtemp", 90),
                           ("filtertemp", 35), ("work_mode", 1),
                           ("work_on", True)]
    p.gcode("PANDA_BREATH_AUTO ENABLE=0")
    sim.wait_for(lambda s: not s["work_on"])
    p.gcode("PANDA_BREATH_AUTO ENABLE=1")
    sim.wait_for(lambda s: s["work_on"] and s["work_mode"] == 1)
    state = sim.state()
    assert (state["set_temp"], state["hotbedtemp"], state["filtertemp"]) \
        == (45, 80, 30)
    p.gcode("PANDA_BREATH_AUTO ENABLE=0")
    sim.wait_for(lambda s: not s["work_on"])
    out = p.output("PANDA_BREATH_AUTO TARGET=75 HOTBEDTEMP=20 FILTERTEMP=0")
    sim.wait_for(lambda s: s["work_on"] and s["work_mode"] == 1
                 and s["set_temp"] == 60)
    state = sim.state()
    assert (state["hotbedtemp"], state["filtertemp"]) == (40, 0)
    assert "// Panda Breath: TARGET=75 sent as 60 (the device allows 0 to" \
        " 60)" in out
    assert "// Panda Breath: HOTBEDTEMP=20 sent as 40 (the device allows" \
        " 40 to 120)" in out


def test_dry_start_takes_the_community_defaults_and_fits_the_temperature(
        bound, sim):
    p = bound
    out = p.output("PANDA_BREATH_DRY_START")
    sim.wait_for(lambda s: s["isrunning"] and s["work_mode"] == 3)
    state = sim.state()
    assert (state["filament_temp"], state["filament_timer"]) == (55, 6)
    assert "// Panda Breath: drying filament at 55C for 6 h" in out
    assert link(p)["session"] == "klipper"
    p.gcode("PANDA_BREATH_DRY_STOP")
    sim.wait_for(lambda s: not s["work_on"])
    out = p.output("PANDA_BREATH_DRY_START TEMP=75.5 HOURS=12")
    sim.wait_for(lambda s: s["isrunning"] and s["filament_temp"] == 60
                 and s["filament_timer"] == 12)
    assert "// Panda Breath: TEMP=75 sent as 60 (the device allows 40 to" \
        " 60)" in out
    set_target(p, 40)
    sim.wait_for(lambda s: s["work_on"] and s["work_mode"] == 2)
    # the device's own push about the ended drying reaches the module too
    p.wait_for(lambda: link(p)["session"] is None
               and link(p)["work_mode"] == "always-on")
    refused(p, sim, "PANDA_BREATH_DRY_START TEMP=50 HOURS=2",
            "HEATER=chamber TARGET=0")


def test_out_of_community_range_is_refused_and_nothing_sent(bound, sim):
    p = bound
    for params, words in [
            ("TARGET=81", "TARGET must have maximum of 80"),
            ("TARGET=-1", "TARGET must have minimum of 0"),
            ("FILTERTEMP=121", "FILTERTEMP must have maximum of 120"),
            ("HOTBEDTEMP=-5", "HOTBEDTEMP must have minimum of 0"),
            ("HOTBEDTEMP=hot", "HOTBEDTEMP"),
            ("TARGET=nan", "TARGET must be a number"),
            ("TARGET=45 HEAT_AT=90 FILTERTEMP=30", "not both")]:
        refused(p, sim, "PANDA_BREATH_AUTO " + params, words)
    for params, words in [
            ("TEMP=81", "TEMP must have maximum of 80"),
            ("HOURS=13", "HOURS must have maximum of 12"),
            ("HOURS=0", "HOURS must have minimum of 1"),
            ("TEMP=NaN", "TEMP must be a number")]:
        refused(p, sim, "PANDA_BREATH_DRY_START " + params, words)
    assert not sim.state()["work_on"]


def test_firmware_stock_is_accepted_and_dragonbreath_refused(printer, sim):
    p = printer(options=dict(FAST, firmware="stock"))
    assert link(p)["connected"]
    with pytest.raises(StartupError) as e:
        printer(config=chamber_config(sim.port,
                                      options={"firmware": "dragonbreath"}),
                check=False)
    message = str(e.value)
    assert "Option 'firmware' in section 'panda_breath'" in message
    assert "dragonbreath" in message
    assert "stock Panda Breath firmware's WebSocket API" in message
