"""Auto mode from Klipper: PANDA_BREATH_AUTO on a device bound to this printer.

The simulator is bound to a Moonraker-like endpoint on loopback and polls
it as the firmware does; tests change the bed target there and check what
the device really does."""
import json
import pathlib

import pytest
import websocket
from chamber import (
    FAST,
    STALL_LIMIT,
    chamber_config,
)
from harness import GCodeError, Klippy
from hypothesis import given
from hypothesis import strategies as st
from moonraker_endpoint import MoonrakerEndpoint

MODES_CFG = (pathlib.Path(__file__).resolve().parents[2]
             / "klipper" / "config" / "panda_breath_modes.cfg")
SPEED = 10.0        # the device polls Moonraker every 0.1 s


@pytest.fixture
def moonraker():
    with MoonrakerEndpoint() as endpoint:
        yield endpoint


def bind(sim, port):
    """Bind the device to a Klipper printer at 127.0.0.1:port, as the
    panda-breath CLI does (printer_type 2 reboots it)."""
    ws = websocket.create_connection(sim.url, timeout=3)
    ws.recv()
    ws.send(json.dumps({"settings": {"printer_type": 2}}))
    sim.wait_for(lambda s: s["online"] and s["printer_type"] == 2
                 and s["boot_count"] == 2)
    ws.close()
    ws = websocket.create_connection(sim.url, timeout=3)
    ws.recv()
    ws.send(json.dumps({"printer": {"name": "Klipper", "ip": "127.0.0.1",
                                    "port": port}}))
    sim.wait_for(lambda s: s["printer"].get("port") == port)
    ws.close()


@pytest.fixture
def make_bound(make_printer):
    """make(moonraker=None, extra="", **sim_options): as make_printer,
    with the device bound to the Moonraker endpoint when one is given."""
    def make(moonraker=None, extra="", **sim_options):
        sim_options.setdefault("reboot_delay", 0.2)
        sim_options.setdefault("speed", SPEED)

        def prepare(sim):
            if moonraker is not None:
                bind(sim, moonraker.port)
                sim.wait_for(lambda s: s["printer"]["state"] == 3)
        return make_printer(prepare, extra, **sim_options)
    return make


@pytest.fixture
def printer(make_bound, moonraker):
    return make_bound(moonraker)


def writes(sim):
    return [(key, value) for _, key, value in sim.settings_writes()]


def wait_device(k, sim, predicate, timeout=5.0):
    k.run_until(lambda: predicate(sim.state()), timeout=timeout)


AUTO = "PANDA_BREATH_AUTO TARGET=45 HEAT_AT=60 FAN_AT=40"


def test_auto_sends_thresholds_then_mode_and_on(printer):
    k, sim = printer
    k.gcode(AUTO)
    wait_device(k, sim, lambda s: s["work_on"] and s["work_mode"] == 1)
    assert writes(sim) == [("set_temp", 45), ("hotbedtemp", 60),
                           ("filtertemp", 40), ("work_mode", 1),
                           ("work_on", True)]
    assert all(len(f.data["settings"]) == 1 for f in sim.frames)
    status = k.status("panda_breath")
    assert status["work_mode"] == "auto"
    assert status["session"] == "klipper"
    assert status["binding"] == "connected"
    out = k.gcode("PANDA_BREATH_STATUS")
    assert "on, auto, set 45, link to this printer connected" in out[-1]


def test_auto_follows_a_changing_bed_target(printer, moonraker):
    k, sim = printer
    k.gcode(AUTO)
    wait_device(k, sim, lambda s: s["work_on"] and s["work_mode"] == 1)
    k.run(0.3)
    assert not sim.state()["fan"] and not sim.state()["heat_request"]
    moonraker.bed_target = 50.0         # fans only
    wait_device(k, sim, lambda s: s["fan"])
    assert not sim.state()["heat_request"]
    moonraker.bed_target = 60.0         # heat toward 45
    wait_device(k, sim, lambda s: s["heat_request"] and s["target"] == 45)
    moonraker.bed_target = 0.0
    wait_device(k, sim, lambda s: not s["fan"] and not s["heat_request"])
    assert sim.state()["work_on"]


def test_moonraker_link_loss_turns_auto_heat_off(printer, moonraker):
    k, sim = printer
    moonraker.bed_target = 100.0
    k.gcode(AUTO)
    wait_device(k, sim, lambda s: s["heat_request"] and s["fan"])
    moonraker.stop()
    wait_device(k, sim, lambda s: not s["heat_request"] and not s["fan"])
    k.run_until(lambda: k.status("panda_breath")["binding"] == "failed")
    assert ("work_on", False) not in writes(sim)


def test_auto_is_refused_when_the_device_is_not_bound(make_bound):
    k, sim = make_bound()
    with pytest.raises(GCodeError, match="not bound to a Klipper printer"):
        k.gcode(AUTO)
    k.run(0.2)
    assert writes(sim) == []


def test_auto_is_refused_on_firmware_without_klipper_binding(make_bound):
    k, sim = make_bound(firmware="0.0.0")
    with pytest.raises(GCodeError, match="panda-breath bind"):
        k.gcode(AUTO)
    k.run(0.2)
    assert writes(sim) == []


@pytest.mark.parametrize("params, words", [
    ("TARGET=61 HEAT_AT=60 FAN_AT=40", "TARGET must have maximum of 60"),
    ("TARGET=-1 HEAT_AT=60 FAN_AT=40", "TARGET must have minimum of 0"),
    ("TARGET=45 HEAT_AT=39 FAN_AT=40", "HEAT_AT must have minimum of 40"),
    ("TARGET=45 HEAT_AT=300 FAN_AT=40", "HEAT_AT must have maximum of 120"),
    ("TARGET=45 HEAT_AT=60 FAN_AT=121", "FAN_AT must have maximum of 120"),
    ("TARGET=45 HEAT_AT=60", "missing FAN_AT"),
    ("ENABLE=2", "ENABLE must have maximum of 1"),
])
def test_out_of_range_auto_parameters_are_refused_and_nothing_sent(
        printer, params, words):
    k, sim = printer
    with pytest.raises(GCodeError, match=words):
        k.gcode("PANDA_BREATH_AUTO " + params)
    k.run(0.2)
    assert writes(sim) == []


def test_auto_is_refused_while_chamber_heater_has_a_target(printer):
    k, sim = printer
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    wait_device(k, sim, lambda s: s["work_on"] and s["work_mode"] == 2)
    sim.clear_frames()
    with pytest.raises(GCodeError, match="one mode at a time"):
        k.gcode(AUTO)
    k.run(0.2)
    assert writes(sim) == []


def test_chamber_target_during_auto_switches_to_always_on_and_says_so(
        printer):
    k, sim = printer
    k.gcode(AUTO)
    wait_device(k, sim, lambda s: s["work_on"] and s["work_mode"] == 1)
    out = k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=50")
    wait_device(k, sim, lambda s: s["work_mode"] == 2 and s["set_temp"] == 50)
    k.run(0.1)
    assert any("replaces the auto session" in line
               for line in out + k.responses)
    assert k.status("panda_breath")["session"] is None


def test_auto_enable_0_turns_auto_mode_off(printer):
    k, sim = printer
    k.gcode(AUTO)
    wait_device(k, sim, lambda s: s["work_on"])
    sim.clear_frames()
    k.gcode("PANDA_BREATH_AUTO ENABLE=0")
    wait_device(k, sim, lambda s: not s["work_on"])
    assert writes(sim) == [("work_on", False)]
    out = k.gcode("PANDA_BREATH_AUTO ENABLE=0")
    assert any("not running" in line for line in out)


def test_auto_on_a_failed_binding_warns_that_it_will_not_heat(make_bound):
    with MoonrakerEndpoint() as gone:
        k, sim = make_bound(gone)
    k.run_until(lambda: k.status("panda_breath")["binding"] == "failed",
                timeout=5)
    out = k.gcode(AUTO)
    assert any("link to this printer is failed" in line for line in out)
    wait_device(k, sim, lambda s: s["work_on"] and s["work_mode"] == 1)


def test_shutdown_turns_auto_mode_off(printer, moonraker):
    k, sim = printer
    moonraker.bed_target = 100.0
    k.gcode(AUTO)
    wait_device(k, sim, lambda s: s["heat_request"])
    k.gcode("M112")
    wait_device(k, sim, lambda s: not s["work_on"])


def test_restart_ends_auto_mode_klipper_started(printer):
    k, sim = printer
    k.gcode(AUTO)
    wait_device(k, sim, lambda s: s["work_on"])
    k.restart()
    wait_device(k, sim, lambda s: not s["work_on"])


def test_restart_leaves_auto_mode_started_on_the_device(printer):
    k, sim = printer
    sim.press(work_on=True, work_mode=1)
    k.run_until(lambda: k.status("panda_breath")["session"] == "device")
    k.restart()
    k.run_until(lambda: k.status("panda_breath")["connected"])
    k.run(0.5)
    assert sim.state()["work_on"]
    assert ("work_on", False) not in writes(sim)


def test_example_macros_load_and_drive_both_modes(make_bound, moonraker):
    k, sim = make_bound(moonraker, extra="\n" + MODES_CFG.read_text())
    k.gcode("DRY_PLA")
    wait_device(k, sim, lambda s: s["isrunning"] and s["work_mode"] == 3)
    k.gcode("DRY_STOP")
    wait_device(k, sim, lambda s: not s["work_on"])
    k.gcode("DRY_FILAMENT TEMP=48 HOURS=4")
    wait_device(k, sim, lambda s: s["isrunning"]
                and s["filament_temp"] == 48 and s["filament_timer"] == 4)
    k.gcode("DRY_STOP")
    moonraker.bed_target = 100.0
    k.gcode("CHAMBER_AUTO CHAMBER=40 HEAT_AT=90 FAN_AT=50")
    wait_device(k, sim, lambda s: s["heat_request"] and s["set_temp"] == 40
                and s["hotbedtemp"] == 90 and s["filtertemp"] == 50)
    k.gcode("CHAMBER_AUTO_OFF")
    wait_device(k, sim, lambda s: not s["work_on"])


def test_example_macros_refuse_out_of_range_values():
    k = Klippy(chamber_config(1, options=FAST,
                              extra="\n" + MODES_CFG.read_text()))
    k.start()
    try:
        with pytest.raises(GCodeError, match="TEMP must have maximum"):
            k.gcode("DRY_FILAMENT TEMP=80 HOURS=2")
    finally:
        k.stop()
    assert k.stall.max < STALL_LIMIT


@given(target=st.integers(-500, 500), heat_at=st.integers(-500, 500),
       fan_at=st.integers(-500, 500))
def test_auto_frames_never_carry_a_value_outside_the_device_ui(
        pb, target, heat_at, fan_at):
    inside = (0 <= target <= 60 and 40 <= heat_at <= 120
              and 0 <= fan_at <= 120)
    try:
        frames = pb.auto_frames(target, heat_at, fan_at)
    except ValueError:
        assert not inside
        return
    assert inside
    keys = [next(iter(json.loads(f)["settings"])) for f in frames]
    assert keys == ["set_temp", "hotbedtemp", "filtertemp", "work_mode",
                    "work_on"]


def test_binding_fields_are_read_without_bambu_secrets(pb):
    printer = pb.read_printer({"printer": {
        "name": "K", "host": "10.0.0.2", "port": 7125, "state": 3,
        "access_code": "12345678", "sn": "01S", "list": [], "scan": 0}})
    assert printer == {"name": "K", "host": "10.0.0.2", "port": 7125,
                       "state": 3}
    assert pb.read_printer({"printer": {"state": "3", "port": True}}) == {}
    assert pb.read_printer({"printer": []}) == {}
