"""Filament drying from Klipper: PANDA_BREATH_DRY / PANDA_BREATH_DRY_STOP.

The module in the Klipper harness against the simulator over loopback;
every test checks what the device really received and does."""
import json

import pytest
from chamber import STALL_LIMIT, start_chamber
from harness import GCodeError
from hypothesis import given
from hypothesis import strategies as st

from simulator import Simulator


@pytest.fixture
def printer(make_printer):
    return make_printer()


def writes(sim):
    return [(key, value) for _, key, value in sim.settings_writes()]


def wait_device(k, sim, predicate, timeout=5.0):
    k.run_until(lambda: predicate(sim.state()), timeout=timeout)


def drying(s):
    return s["work_on"] and s["work_mode"] == 3 and s["isrunning"] == 1


def heating(s):
    return drying(s) and s["heat_request"]


def reconnect(k, sim):
    count = k.status("panda_breath")["reconnects"]
    sim.drop_all()
    k.run_until(lambda: k.status("panda_breath")["reconnects"] > count
                and k.status("panda_breath")["connected"], timeout=5)


# Starting

@pytest.mark.parametrize("preset, number, temp", [("PLA", 1, 55),
                                                  ("petg", 2, 60)])
def test_dry_preset_selects_device_preset_then_starts(printer, preset,
                                                      number, temp):
    k, sim = printer
    k.gcode("PANDA_BREATH_DRY PRESET=%s" % preset)
    wait_device(k, sim, heating)
    assert writes(sim) == [("filament_drying_mode", number),
                           ("work_mode", 3), ("work_on", True),
                           ("isrunning", 1)]
    assert all(len(f.data["settings"]) == 1 for f in sim.frames)
    state = sim.state()
    assert state["drying_temp"] == temp
    status = k.status("panda_breath")
    assert status["session"] == "klipper"
    assert status["work_mode"] == "drying"
    assert status["drying_temp"] == temp
    assert status["drying_minutes_left"] == 12 * 60


def test_dry_custom_sends_temp_and_timer_then_mode_three(printer):
    k, sim = printer
    k.gcode("PANDA_BREATH_DRY TEMP=45 HOURS=3")
    wait_device(k, sim, drying)
    assert writes(sim) == [("filament_temp", 45), ("filament_timer", 3),
                           ("filament_drying_mode", 3), ("work_mode", 3),
                           ("work_on", True), ("isrunning", 1)]
    state = sim.state()
    assert state["drying_temp"] == 45
    assert 3 * 3600 - 60 < state["remaining_seconds"] <= 3 * 3600
    assert k.status("panda_breath")["drying_minutes_left"] == 180
    assert any("drying filament at 45C for 3 h" in r for r in k.responses)


@pytest.mark.parametrize("params, words", [
    ("TEMP=39 HOURS=2", "TEMP must have minimum of 40"),
    ("TEMP=61 HOURS=2", "TEMP must have maximum of 60"),
    ("TEMP=300 HOURS=2", "TEMP must have maximum of 60"),
    ("TEMP=45 HOURS=0", "HOURS must have minimum of 1"),
    ("TEMP=45 HOURS=100", "HOURS must have maximum of 99"),
    ("TEMP=45.5 HOURS=2", "unable to parse"),
    ("TEMP=45", "missing HOURS"),
    ("PRESET=ABS", "PRESET must be PLA or PETG"),
    ("PRESET=PLA TEMP=45 HOURS=2", "not both"),
    ("", "needs PRESET=PLA|PETG or TEMP"),
])
def test_out_of_range_dry_parameters_are_refused_and_nothing_sent(
        printer, params, words):
    k, sim = printer
    with pytest.raises(GCodeError, match=words.replace("|", r"\|")):
        k.gcode("PANDA_BREATH_DRY " + params)
    k.run(0.2)
    assert writes(sim) == []
    assert not sim.state()["work_on"]


def test_dry_on_firmware_v100_uses_its_own_mode_numbers(make_printer):
    k, sim = make_printer(firmware="0.0.0")
    k.gcode("PANDA_BREATH_DRY PRESET=PLA")
    wait_device(k, sim, lambda s: s["isrunning"] and s["heat_request"])
    # V1.0.0 has no presets and numbers drying 1 (auto is 3)
    assert writes(sim) == [("filament_temp", 55), ("filament_timer", 12),
                           ("work_mode", 1), ("work_on", True),
                           ("isrunning", 1)]
    state = sim.state()
    assert state["drying_temp"] == 55
    assert k.status("panda_breath")["work_mode"] == "drying"


# One mode at a time

def test_dry_is_refused_while_chamber_heater_has_a_target(printer):
    k, sim = printer
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    wait_device(k, sim, lambda s: s["work_on"] and s["work_mode"] == 2)
    sim.clear_frames()
    with pytest.raises(GCodeError, match="one mode at a time.*TARGET=0"):
        k.gcode("PANDA_BREATH_DRY PRESET=PLA")
    k.run(0.2)
    assert writes(sim) == []
    state = sim.state()
    assert state["work_mode"] == 2 and state["set_temp"] == 45


def test_chamber_target_while_drying_switches_to_always_on_and_says_so(
        printer):
    k, sim = printer
    k.gcode("PANDA_BREATH_DRY PRESET=PLA")
    wait_device(k, sim, drying)
    out = k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    wait_device(k, sim, lambda s: s["work_mode"] == 2 and s["set_temp"] == 40)
    k.run(0.1)
    assert any("chamber target 40 replaces the drying session" in line
               for line in out + k.responses)
    status = k.status("panda_breath")
    assert status["session"] is None
    assert status["drying_minutes_left"] is None
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=0")
    wait_device(k, sim, lambda s: not s["work_on"])


# Stopping and the end of a cycle

def test_dry_stop_ends_drying_and_turns_device_off(printer):
    k, sim = printer
    k.gcode("PANDA_BREATH_DRY TEMP=50 HOURS=2")
    wait_device(k, sim, drying)
    sim.clear_frames()
    k.gcode("PANDA_BREATH_DRY_STOP")
    wait_device(k, sim, lambda s: not s["work_on"])
    assert writes(sim) == [("isrunning", 0), ("work_on", False)]
    assert not sim.state()["heat_request"]
    assert k.status("panda_breath")["session"] is None


def test_dry_stop_without_drying_sends_nothing(printer):
    k, sim = printer
    out = k.gcode("PANDA_BREATH_DRY_STOP")
    assert any("not drying" in line for line in out)
    k.run(0.2)
    assert writes(sim) == []


def test_end_of_cycle_is_announced_and_clears_the_countdown(make_printer):
    k, sim = make_printer(speed=4000.0)     # one hour in under a second
    k.gcode("PANDA_BREATH_DRY TEMP=45 HOURS=1")
    k.run_until(lambda: any("drying finished" in r for r in k.responses),
                timeout=5)
    state = sim.state()
    assert state["isrunning"] == 0 and not state["heat_request"]
    status = k.status("panda_breath")
    assert status["drying_minutes_left"] is None
    assert status["session"] is None


def test_countdown_is_corrected_from_the_snapshot_at_reconnect(make_printer):
    # The device's clock runs 600x: its countdown is far ahead of the
    # module's own wall-clock estimate until a snapshot corrects it.
    k, sim = make_printer(speed=600.0)
    k.gcode("PANDA_BREATH_DRY TEMP=45 HOURS=2")
    k.run(1.5)
    assert k.status("panda_breath")["drying_minutes_left"] == 120
    reconnect(k, sim)
    shown = k.status("panda_breath")["drying_minutes_left"]
    device_left = sim.state()["remaining_seconds"] / 60.
    # 15+ device minutes went by: the module's own estimate said 120
    assert shown <= 110
    # the snapshot came before this read; the device runs 10 min/s
    assert device_left - 1 <= shown <= device_left + 10
    assert drying(sim.state())
    assert ("work_on", False) not in writes(sim)


def test_status_command_shows_minutes_left(printer):
    k, sim = printer
    k.gcode("PANDA_BREATH_DRY PRESET=PETG")
    wait_device(k, sim, drying)
    out = k.gcode("PANDA_BREATH_STATUS")
    assert "on, drying" in out[-1] and "720 min left" in out[-1]


# Safety and ownership

def test_shutdown_turns_klipper_drying_off(printer):
    k, sim = printer
    k.gcode("PANDA_BREATH_DRY PRESET=PLA")
    wait_device(k, sim, drying)
    k.gcode("M112")
    wait_device(k, sim, lambda s: not s["work_on"])


def test_restart_ends_a_drying_session_klipper_started(printer):
    k, sim = printer
    k.gcode("PANDA_BREATH_DRY PRESET=PLA")
    wait_device(k, sim, drying)
    k.restart()
    wait_device(k, sim, lambda s: not s["work_on"])


def test_restart_leaves_drying_started_on_the_device(printer):
    k, sim = printer
    sim.press(work_on=True, work_mode=3, isrunning=1)
    k.run(0.3)
    assert k.status("panda_breath")["session"] == "device"
    k.restart()
    k.run_until(lambda: k.status("panda_breath")["connected"])
    k.run(0.5)
    assert drying(sim.state())
    assert ("work_on", False) not in writes(sim)


def test_klipper_dry_lost_with_the_link_ends_after_restart(printer):
    k, sim = printer
    k.gcode("PANDA_BREATH_DRY PRESET=PLA")
    wait_device(k, sim, drying)
    sim.set_fault("refuse", True)
    sim.drop_all()
    k.run_until(lambda: not k.status("panda_breath")["connected"])
    k.restart()                 # the off cannot reach the device now
    assert drying(sim.state())
    sim.set_fault("refuse", False)
    wait_device(k, sim, lambda s: not s["work_on"])
    k.run(0.1)
    assert any("ending the drying session Klipper started" in r
               for r in k.responses)


def test_link_blink_keeps_klipper_drying_running(printer):
    k, sim = printer
    k.gcode("PANDA_BREATH_DRY PRESET=PLA")
    wait_device(k, sim, drying)
    reconnect(k, sim)
    k.run(0.3)
    assert drying(sim.state())
    assert ("work_on", False) not in writes(sim)
    assert k.status("panda_breath")["session"] == "klipper"


def test_device_ui_taking_over_a_klipper_dry_makes_it_the_devices(printer):
    k, sim = printer
    k.gcode("PANDA_BREATH_DRY PRESET=PLA")
    wait_device(k, sim, drying)
    sim.press(work_mode=1)      # the owner switches to auto on the panel
    k.run_until(lambda: k.status("panda_breath")["session"] == "device")
    assert any("changed at the device" in r for r in k.responses)
    k.restart()
    k.run_until(lambda: k.status("panda_breath")["connected"])
    k.run(0.3)
    state = sim.state()
    assert state["work_on"] and state["work_mode"] == 1


# The frames themselves (pure functions)

@given(temp=st.integers(-1000, 1000), hours=st.integers(-1000, 1000),
       preset=st.sampled_from([None, 1, 2]),
       fw=st.sampled_from(["V1.0.3", "V1.0.4", "V1.0.0"]))
def test_dry_frames_never_carry_a_value_outside_the_device_ui(
        pb, temp, hours, preset, fw):
    inside = 40 <= temp <= 60 and 1 <= hours <= 99
    try:
        frames = pb.dry_frames(temp, hours, preset, fw)
    except ValueError:
        assert not inside
        return
    assert inside
    sent = dict(next(iter(json.loads(f)["settings"].items()))
                for f in frames)
    assert all(0 <= v <= 99 for k, v in sent.items() if k != "work_on")
    assert sent["work_on"] is True
    assert sent["work_mode"] == (1 if fw == "V1.0.0" else 3)


def test_dry_frames_refuse_floats_and_bools(pb):
    for temp, hours in ((45.5, 2), (True, 2), (45, 2.0), ("45", 2)):
        with pytest.raises(ValueError):
            pb.dry_frames(temp, hours)


def test_idle_timeout_leaves_klipper_drying_running():
    sim = Simulator(push_interval=0.1).start()
    try:
        sim.press(work_on=False)
        k = start_chamber(sim, extra="\n[idle_timeout]\ntimeout: 1\n")
        try:
            k.gcode("PANDA_BREATH_DRY PRESET=PLA")
            wait_device(k, sim, heating)
            k.run_until(lambda: k.status("idle_timeout")["state"]
                        == "Idle", timeout=5)
            k.run(0.3)
            assert drying(sim.state())
            assert ("work_on", False) not in writes(sim)
        finally:
            k.stop()
        assert k.stall.max < STALL_LIMIT
    finally:
        sim.stop()


def test_finished_cycle_is_not_reported_as_a_running_session(make_printer):
    k, sim = make_printer(speed=4000.0)
    k.gcode("PANDA_BREATH_DRY TEMP=45 HOURS=1")
    k.run_until(lambda: any("drying finished" in r for r in k.responses),
                timeout=5)
    k.restart()
    k.run_until(lambda: k.status("panda_breath")["connected"])
    k.run(0.3)
    assert not any("leaving the drying session" in r for r in k.responses)
    assert k.status("panda_breath")["session"] is None
    assert not sim.state()["heat_request"]
