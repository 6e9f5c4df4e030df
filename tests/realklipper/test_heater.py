"""The chamber heater in real Klipper: readings, targets, the device's own
state at connect.  Every test checks what the device really received or
did (the simulator's frames and state) and what Klipper reports through
its API socket."""
import time

import pytest

from realklipper.api import APIError
from realklipper.conftest import MAX_DURATION
from realklipper.helpers import HEAT_45, HEATER, link, set_target, writes


def test_readings_reach_klipper_and_status_reports_them(printer, sim):
    p = printer()
    # Klipper smooths readings (smooth_time 1 s) from 0 at start.
    p.wait_for(lambda: abs(p.status(HEATER)["temperature"]
                           - sim.state()["sensor_temp"]) <= 1.5)
    status = link(p)
    assert status["stale"] is False and status["reconnects"] == 0
    assert status["work_on"] is False and status["firmware"] == "V1.0.3"
    assert "password" not in repr(status)
    lines = p.output("PANDA_BREATH_STATUS")
    assert len(lines) == 1, lines
    assert "connected, firmware V1.0.3" in lines[0]
    assert "Klipper target 0" in lines[0]


def test_target_sends_single_key_frames_and_the_device_heats(printer, sim):
    p = printer()
    set_target(p, 45)
    sim.wait_for(lambda s: s["work_on"] and s["relay"])
    assert writes(sim) == HEAT_45
    # readings carry MCU print time, else Klipper would force power 0
    p.wait_for(lambda: p.status(HEATER)["power"] > 0)
    assert all(len(f.data["settings"]) == 1 for f in sim.frames)
    assert sim.state()["set_temp"] == 45
    assert link(p)["target"] == 45
    sim.clear_frames()
    set_target(p, 0)
    sim.wait_for(lambda s: not s["work_on"])
    assert writes(sim) == [("work_on", False)]
    assert '"work_on": false' in sim.frames[0].text


@pytest.mark.parametrize("command", [
    "TURN_OFF_HEATERS", "SET_HEATER_TEMPERATURE HEATER=chamber"])
def test_klipper_off_commands_turn_the_device_off(printer, sim, command):
    p = printer()
    set_target(p, 45)
    sim.wait_for(lambda s: s["work_on"])
    p.gcode(command)
    sim.wait_for(lambda s: not s["work_on"])
    assert writes(sim)[-1] == ("work_on", False)


# The device's own state when the link comes up

@pytest.mark.sim(snapshot_with_handshake=True)
def test_device_heating_after_a_power_cycle_is_turned_off(printer, sim):
    # always-on is saved: after a power cycle the device heats by itself
    sim.press(work_on=True, work_mode=2, set_temp=50)
    sim.power_cycle(off_for=0.1)
    sim.wait_for(lambda s: s["online"] and s["work_on"])
    # this device sends its snapshot in the handshake's TCP read
    p = printer(connect=False)
    sim.wait_for(lambda s: not s["work_on"])
    assert writes(sim)[-1] == ("work_on", False)
    assert link(p)["firmware"] == "V1.0.3"


def test_panel_switch_on_without_a_klipper_target_is_undone(printer, sim):
    printer()
    sim.press(work_on=True, work_mode=2)
    sim.wait_for(lambda s: not s["work_on"])


@pytest.mark.parametrize("mode,extra", [(3, {"isrunning": 1}), (1, {})],
                         ids=["drying", "auto"])
def test_session_started_on_the_device_survives_connect_and_restart(
        printer, sim, mode, extra):
    sim.press(work_on=True, work_mode=mode, **extra)
    p = printer(connect=False)
    p.wait_for(lambda: link(p)["session"] == "device")
    assert "session started on the device running" in p.log()
    p.restart()
    p.wait_for(lambda: link(p)["connected"]
               and link(p)["session"] == "device")
    state = sim.state()
    assert state["work_on"] and state["work_mode"] == mode
    assert ("work_on", False) not in writes(sim)


@pytest.mark.sim(firmware="0.0.0")
def test_firmware_v100_gets_its_own_keys_and_mode_numbers(printer, sim):
    p = printer()
    set_target(p, 40)
    sim.wait_for(lambda s: s["work_on"])
    assert ("temp", 40) in writes(sim)
    set_target(p, 0)
    sim.wait_for(lambda s: not s["work_on"])
    sim.clear_frames()
    p.gcode("PANDA_BREATH_DRY PRESET=PLA")
    sim.wait_for(lambda s: s["isrunning"] and s["heat_request"])
    # V1.0.0 has no presets and numbers drying 1 (auto is 3)
    assert writes(sim) == [("filament_temp", 55), ("filament_timer", 12),
                           ("work_mode", 1), ("work_on", True),
                           ("isrunning", 1)]
    assert sim.state()["drying_temp"] == 55
    assert link(p)["work_mode"] == "drying"
    # and it cannot be bound to a Klipper printer, so no auto mode
    sim.clear_frames()
    with pytest.raises(APIError, match="panda-breath bind"):
        p.gcode("PANDA_BREATH_AUTO TARGET=45 HEAT_AT=60 FAN_AT=40")
    assert writes(sim) == []


# The chamber barely warms, so Klipper's watermark asks for full power
# all along and refreshes the pin only as its max_duration requires.
@pytest.mark.sim(speed=0.02)
def test_steady_heating_is_refreshed_before_the_pin_watchdog_expires(
        printer, sim, klipper_tree):
    # The U1 fork gives heater pins 7 s and refreshes them every 3.5 s;
    # a watchdog that ignored setup_max_duration (upstream's 3 s) would
    # turn the device off between two refreshes.
    p = printer()
    set_target(p, 45)
    sim.wait_for(lambda s: s["work_on"])
    p.wait_for(lambda: p.status(HEATER)["power"] > 0)
    deadline = time.monotonic() + 2 * MAX_DURATION[klipper_tree[0]] + 1
    while time.monotonic() < deadline:
        assert link(p)["target"] == 45
        time.sleep(0.1)
    assert ("work_on", False) not in writes(sim)
    assert sim.state()["work_on"]
