"""The device's own modes from real Klipper: PANDA_BREATH_DRY, _DRY_STOP and
PANDA_BREATH_AUTO, and the example macros of panda_breath_modes.cfg.

For auto mode the simulator is bound to a Moonraker-like endpoint on
loopback and polls it as the firmware does; tests change the bed target
there and check what the device really does."""
import pathlib

import pytest

from realklipper.helpers import bind, blink, link, refused, set_target, writes

MODES_CFG = (pathlib.Path(__file__).resolve().parents[2]
             / "klipper" / "config" / "panda_breath_modes.cfg")
AUTO = "PANDA_BREATH_AUTO TARGET=45 HEAT_AT=60 FAN_AT=40"


def drying(s):
    return s["work_on"] and s["work_mode"] == 3 and s["isrunning"] == 1


# Drying

def test_dry_preset_custom_stop_and_a_chamber_target(printer, sim):
    p = printer()
    p.gcode("PANDA_BREATH_DRY PRESET=PLA")
    sim.wait_for(lambda s: drying(s) and s["heat_request"])
    assert writes(sim) == [("filament_drying_mode", 1), ("work_mode", 3),
                           ("work_on", True), ("isrunning", 1)]
    assert all(len(f.data["settings"]) == 1 for f in sim.frames)
    assert sim.state()["drying_temp"] == 55
    status = link(p)
    assert status["session"] == "klipper"
    assert status["work_mode"] == "drying"
    assert status["drying_temp"] == 55
    assert status["drying_minutes_left"] == 12 * 60
    sim.clear_frames()
    p.gcode("PANDA_BREATH_DRY_STOP")
    sim.wait_for(lambda s: not s["work_on"])
    assert writes(sim) == [("isrunning", 0), ("work_on", False)]
    sim.wait_for(lambda s: not s["heat_request"])
    assert link(p)["session"] is None
    sim.clear_frames()
    assert any("not drying" in line
               for line in p.output("PANDA_BREATH_DRY_STOP"))
    assert writes(sim) == []
    p.gcode("PANDA_BREATH_DRY PRESET=petg")
    sim.wait_for(lambda s: drying(s) and s["drying_temp"] == 60)
    assert writes(sim)[0] == ("filament_drying_mode", 2)
    line = p.output("PANDA_BREATH_STATUS")[-1]
    assert "on, drying" in line and "720 min left" in line
    p.gcode("PANDA_BREATH_DRY_STOP")
    sim.wait_for(lambda s: not s["work_on"])
    sim.clear_frames()
    out = p.output("PANDA_BREATH_DRY TEMP=45 HOURS=3")
    assert any("drying filament at 45C for 3 h" in line for line in out)
    sim.wait_for(drying)
    assert writes(sim) == [("filament_temp", 45), ("filament_timer", 3),
                           ("filament_drying_mode", 3), ("work_mode", 3),
                           ("work_on", True), ("isrunning", 1)]
    state = sim.state()
    assert state["drying_temp"] == 45
    assert 3 * 3600 - 60 < state["remaining_seconds"] <= 3 * 3600
    assert link(p)["drying_minutes_left"] == 180
    # one mode at a time: a chamber target replaces the drying session
    set_target(p, 40)
    sim.wait_for(lambda s: s["work_mode"] == 2 and s["set_temp"] == 40)
    p.wait_console("chamber target 40 replaces the drying session")
    status = link(p)
    assert status["session"] is None
    assert status["drying_minutes_left"] is None
    refused(p, sim, "PANDA_BREATH_DRY PRESET=PLA",
            "one mode at a time.*TARGET=0")
    state = sim.state()
    assert state["work_mode"] == 2 and state["set_temp"] == 40
    set_target(p, 0)
    sim.wait_for(lambda s: not s["work_on"])


def test_bad_dry_and_auto_parameters_are_refused_and_nothing_sent(
        printer, sim):
    p = printer()
    for params, words in [
            ("TEMP=39 HOURS=2", "TEMP must have minimum of 40"),
            ("TEMP=61 HOURS=2", "TEMP must have maximum of 60"),
            ("TEMP=300 HOURS=2", "TEMP must have maximum of 60"),
            ("TEMP=45 HOURS=0", "HOURS must have minimum of 1"),
            ("TEMP=45 HOURS=100", "HOURS must have maximum of 99"),
            ("TEMP=45.5 HOURS=2", "nable to parse"),
            ("TEMP=45", "missing HOURS"),
            ("PRESET=ABS", "PRESET must be PLA or PETG"),
            ("PRESET=PLA TEMP=45 HOURS=2", "not both"),
            ("", r"needs PRESET=PLA\|PETG or TEMP")]:
        refused(p, sim, "PANDA_BREATH_DRY " + params, words)
    for params, words in [
            ("TARGET=61 HEAT_AT=60 FAN_AT=40", "TARGET must have maximum"),
            ("TARGET=-1 HEAT_AT=60 FAN_AT=40", "TARGET must have minimum"),
            ("TARGET=45 HEAT_AT=39 FAN_AT=40", "HEAT_AT must have minimum"),
            ("TARGET=45 HEAT_AT=300 FAN_AT=40",
             "HEAT_AT must have maximum"),
            ("TARGET=45 HEAT_AT=60 FAN_AT=121", "FAN_AT must have maximum"),
            ("TARGET=45 HEAT_AT=60", "missing FAN_AT"),
            ("ENABLE=2", "ENABLE must have maximum of 1")]:
        refused(p, sim, "PANDA_BREATH_AUTO " + params, words)
    refused(p, sim, AUTO, "not bound to a Klipper printer")
    assert not sim.state()["work_on"]


@pytest.mark.sim(speed=4000.0)          # one hour in under a second
def test_end_of_cycle_is_announced_and_not_a_session_after_restart(
        printer, sim):
    p = printer()
    p.gcode("PANDA_BREATH_DRY TEMP=45 HOURS=1")
    p.wait_console("drying finished")
    sim.wait_for(lambda s: s["isrunning"] == 0 and not s["heat_request"])
    status = link(p)
    assert status["drying_minutes_left"] is None
    assert status["session"] is None
    p.restart()
    p.wait_for(lambda: link(p)["connected"])
    assert "leaving the drying session" not in p.log()
    assert link(p)["session"] is None
    assert not sim.state()["heat_request"]


# The device's clock runs 600x: its countdown is far ahead of the module's
# own wall-clock estimate until a snapshot corrects it.
@pytest.mark.sim(speed=600.0)
def test_countdown_is_corrected_from_the_snapshot_at_reconnect(printer,
                                                                sim):
    p = printer()
    p.gcode("PANDA_BREATH_DRY TEMP=45 HOURS=2")
    assert link(p)["drying_minutes_left"] == 120
    sim.wait_for(lambda s: s["remaining_seconds"] < 100 * 60)
    blink(p, sim)
    shown = link(p)["drying_minutes_left"]
    device_left = sim.state()["remaining_seconds"] / 60.
    assert shown < 100
    # the snapshot came before this read; the device runs 10 min/s
    assert device_left - 1 <= shown <= device_left + 30
    assert drying(sim.state())
    assert ("work_on", False) not in writes(sim)
    assert "720 min left" not in p.output("PANDA_BREATH_STATUS")[-1]


# Auto mode

def test_auto_mode_follows_the_bed_and_ends_on_enable_0_or_a_target(
        printer, sim, moonraker_endpoint):
    bind(sim, moonraker_endpoint.port)
    sim.wait_for(lambda s: s["printer"]["state"] == 3)
    p = printer()
    p.gcode(AUTO)
    sim.wait_for(lambda s: s["work_on"] and s["work_mode"] == 1)
    assert writes(sim) == [("set_temp", 45), ("hotbedtemp", 60),
                           ("filtertemp", 40), ("work_mode", 1),
                           ("work_on", True)]
    status = link(p)
    assert status["work_mode"] == "auto"
    assert status["session"] == "klipper"
    assert status["binding"] == "connected"
    assert "on, auto, set 45, link to this printer connected" in \
        p.output("PANDA_BREATH_STATUS")[-1]
    assert not sim.state()["fan"] and not sim.state()["heat_request"]
    moonraker_endpoint.bed_target = 50.0         # fans only
    sim.wait_for(lambda s: s["fan"])
    assert not sim.state()["heat_request"]
    moonraker_endpoint.bed_target = 60.0         # heat toward 45
    sim.wait_for(lambda s: s["heat_request"] and s["target"] == 45)
    moonraker_endpoint.bed_target = 0.0
    sim.wait_for(lambda s: not s["fan"] and not s["heat_request"])
    assert sim.state()["work_on"]
    sim.clear_frames()
    p.gcode("PANDA_BREATH_AUTO ENABLE=0")
    sim.wait_for(lambda s: not s["work_on"])
    assert writes(sim) == [("work_on", False)]
    assert any("not running" in line
               for line in p.output("PANDA_BREATH_AUTO ENABLE=0"))
    p.gcode(AUTO)
    sim.wait_for(lambda s: s["work_on"] and s["work_mode"] == 1)
    set_target(p, 50)
    sim.wait_for(lambda s: s["work_mode"] == 2 and s["set_temp"] == 50)
    p.wait_console("replaces the auto session")
    assert link(p)["session"] is None
    refused(p, sim, AUTO, "one mode at a time")
    set_target(p, 0)
    sim.wait_for(lambda s: not s["work_on"])
    p.gcode(AUTO)
    sim.wait_for(lambda s: s["work_on"])
    p.restart()                 # what Klipper started ends with it
    sim.wait_for(lambda s: not s["work_on"])


def test_moonraker_loss_stops_auto_heat_and_m112_turns_it_off(
        printer, sim, moonraker_endpoint):
    bind(sim, moonraker_endpoint.port)
    sim.wait_for(lambda s: s["printer"]["state"] == 3)
    p = printer()
    moonraker_endpoint.bed_target = 100.0
    p.gcode(AUTO)
    sim.wait_for(lambda s: s["heat_request"] and s["fan"])
    moonraker_endpoint.stop()
    sim.wait_for(lambda s: not s["heat_request"] and not s["fan"])
    p.wait_for(lambda: link(p)["binding"] == "failed")
    assert ("work_on", False) not in writes(sim)
    out = p.output(AUTO)
    assert any("link to this printer is failed" in line for line in out)
    p.gcode("M112")
    sim.wait_for(lambda s: not s["work_on"])


def test_example_macros_drive_both_modes(printer, sim, moonraker_endpoint):
    bind(sim, moonraker_endpoint.port)
    sim.wait_for(lambda s: s["printer"]["state"] == 3)
    p = printer(extra="\n" + MODES_CFG.read_text())
    p.gcode("DRY_PLA")
    sim.wait_for(lambda s: s["isrunning"] and s["work_mode"] == 3)
    p.gcode("DRY_STOP")
    sim.wait_for(lambda s: not s["work_on"])
    p.gcode("DRY_FILAMENT TEMP=48 HOURS=4")
    sim.wait_for(lambda s: s["isrunning"] and s["filament_temp"] == 48
                 and s["filament_timer"] == 4)
    p.gcode("DRY_STOP")
    sim.wait_for(lambda s: not s["work_on"])
    refused(p, sim, "DRY_FILAMENT TEMP=80 HOURS=2", "TEMP must have maximum")
    moonraker_endpoint.bed_target = 100.0
    p.gcode("CHAMBER_AUTO CHAMBER=40 HEAT_AT=90 FAN_AT=50")
    sim.wait_for(lambda s: s["heat_request"] and s["set_temp"] == 40
                 and s["hotbedtemp"] == 90 and s["filtertemp"] == 50)
    p.gcode("CHAMBER_AUTO_OFF")
    sim.wait_for(lambda s: not s["work_on"])
