"""Owners of the community panda_breath module: their [panda_breath]
sections, their heater name and their G-code keep working."""
import pathlib

import pytest
import test_auto_mode as auto_mode
from chamber import FAST, STALL_LIMIT, chamber_config
from harness import ConfigError, GCodeError, Klippy
from moonraker_endpoint import MoonrakerEndpoint

from simulator import Simulator


@pytest.fixture
def printer(make_printer):
    """Klipper and a device bound to a Moonraker-like endpoint, as for
    the auto-mode tests."""
    with MoonrakerEndpoint() as moonraker:
        def prepare(sim):
            auto_mode.bind(sim, moonraker.port)
            sim.wait_for(lambda s: s["printer"]["state"] == 3)
        yield make_printer(prepare, speed=auto_mode.SPEED, reboot_delay=0.2)


def writes(sim):
    return [(key, value) for _, key, value in sim.settings_writes()]


def wait_device(k, sim, predicate, timeout=5.0):
    k.run_until(lambda: predicate(sim.state()), timeout=timeout)


def load(text):
    k = Klippy(text)
    try:
        k.start()
    finally:
        k.stop()


# The firmware option

def test_firmware_stock_is_accepted():
    with Simulator(push_interval=0.1) as sim:
        k = Klippy(chamber_config(sim.port, options=dict(
            FAST, firmware="stock")))
        k.start()
        try:
            k.run_until(lambda: k.status("panda_breath")["connected"])
        finally:
            k.stop()


@pytest.mark.parametrize("firmware", ["esphome", "stock-mqtt",
                                      "dragonbreath"])
def test_other_firmware_is_a_config_error_naming_the_way_out(firmware):
    with pytest.raises(ConfigError) as e:
        load(chamber_config(8080, options={"firmware": firmware}))
    message = str(e.value)
    assert "Option 'firmware' in section 'panda_breath'" in message
    assert firmware in message
    assert "stock Panda Breath firmware's WebSocket API" in message
    assert "[dragonbreath]" in message


# Without a heater section (the firmware's manual mode)

DEVICE_ONLY = "[panda_breath]\nfirmware: stock\nhost: 127.0.0.1\nport: %d\n"


@pytest.fixture
def device_only():
    with Simulator(push_interval=0.1, reboot_delay=0.3) as sim:
        sim.press(work_on=True, work_mode=2, set_temp=50)
        options = "".join("%s: %s\n" % kv for kv in FAST.items())
        k = Klippy(DEVICE_ONLY % (sim.port,) + options)
        k.start()
        try:
            k.run_until(lambda: k.status("panda_breath")["connected"])
            yield k, sim
        finally:
            k.stop()
        assert k.stall.max < STALL_LIMIT


def test_without_a_heater_klipper_starts_and_turns_leftover_heat_off(
        device_only):
    k, sim = device_only
    wait_device(k, sim, lambda s: not s["work_on"])
    assert k.status("panda_breath")["target"] == 0.
    out = k.gcode("PANDA_BREATH_STATUS")
    assert "connected" in out[-1]


def test_without_a_heater_the_commands_reach_the_device(device_only):
    k, sim = device_only
    k.gcode("PANDA_BREATH_DRY_START TEMP=50 HOURS=3")
    wait_device(k, sim, lambda s: s["isrunning"] and s["work_mode"] == 3
                and s["filament_temp"] == 50 and s["filament_timer"] == 3)
    k.gcode("PANDA_BREATH_DRY_STOP")
    wait_device(k, sim, lambda s: not s["work_on"])


# PANDA_BREATH_AUTO in the community module's words

def test_auto_with_community_parameters(printer):
    k, sim = printer
    k.gcode("PANDA_BREATH_AUTO ENABLE=1 TARGET=45.0 FILTERTEMP=35"
            " HOTBEDTEMP=90")
    wait_device(k, sim, lambda s: s["work_on"] and s["work_mode"] == 1)
    assert writes(sim) == [("set_temp", 45), ("hotbedtemp", 90),
                           ("filtertemp", 35), ("work_mode", 1),
                           ("work_on", True)]
    k.gcode("PANDA_BREATH_AUTO ENABLE=0")
    wait_device(k, sim, lambda s: not s["work_on"])


def test_auto_uses_the_community_defaults(printer):
    k, sim = printer
    k.gcode("PANDA_BREATH_AUTO ENABLE=1")
    wait_device(k, sim, lambda s: s["work_on"] and s["work_mode"] == 1)
    state = sim.state()
    assert (state["set_temp"], state["hotbedtemp"], state["filtertemp"]) \
        == (45, 80, 30)


def test_auto_fits_values_the_device_does_not_allow_and_says_so(
        printer):
    k, sim = printer
    out = k.gcode("PANDA_BREATH_AUTO TARGET=75 HOTBEDTEMP=20 FILTERTEMP=0")
    wait_device(k, sim, lambda s: s["work_on"] and s["work_mode"] == 1)
    state = sim.state()
    assert (state["set_temp"], state["hotbedtemp"], state["filtertemp"]) \
        == (60, 40, 0)
    assert "// Panda Breath: TARGET=75 sent as 60 (the device allows 0 to 60)" \
        in out
    assert "// Panda Breath: HOTBEDTEMP=20 sent as 40 (the device allows" \
        " 40 to 120)" in out


@pytest.mark.parametrize("params, words", [
    ("TARGET=81", "TARGET must have maximum of 80"),
    ("TARGET=-1", "TARGET must have minimum of 0"),
    ("FILTERTEMP=121", "FILTERTEMP must have maximum of 120"),
    ("HOTBEDTEMP=-5", "HOTBEDTEMP must have minimum of 0"),
    ("HOTBEDTEMP=hot", "HOTBEDTEMP"),
    ("TARGET=nan", "TARGET must be a number"),
    ("TARGET=45 HEAT_AT=90 FILTERTEMP=30", "not both"),
])
def test_auto_out_of_community_range_is_refused_and_nothing_sent(
        printer, params, words):
    k, sim = printer
    with pytest.raises(GCodeError, match=words):
        k.gcode("PANDA_BREATH_AUTO " + params)
    k.run(0.2)
    assert writes(sim) == []


# PANDA_BREATH_DRY_START, the community name for drying

def test_dry_start_with_community_defaults(printer):
    k, sim = printer
    out = k.gcode("PANDA_BREATH_DRY_START")
    wait_device(k, sim, lambda s: s["isrunning"] and s["work_mode"] == 3)
    state = sim.state()
    assert (state["filament_temp"], state["filament_timer"]) == (55, 6)
    assert "// Panda Breath: drying filament at 55C for 6 h" in out
    assert k.status("panda_breath")["session"] == "klipper"


def test_dry_start_fits_the_temperature_and_says_so(printer):
    k, sim = printer
    out = k.gcode("PANDA_BREATH_DRY_START TEMP=75.5 HOURS=12")
    wait_device(k, sim, lambda s: s["isrunning"] and s["work_mode"] == 3)
    state = sim.state()
    assert (state["filament_temp"], state["filament_timer"]) == (60, 12)
    assert "// Panda Breath: TEMP=75 sent as 60 (the device allows 40 to 60)" \
        in out


@pytest.mark.parametrize("params, words", [
    ("TEMP=81", "TEMP must have maximum of 80"),
    ("HOURS=13", "HOURS must have maximum of 12"),
    ("HOURS=0", "HOURS must have minimum of 1"),
    ("TEMP=NaN", "TEMP must be a number"),
])
def test_dry_start_out_of_community_range_is_refused(
        printer, params, words):
    k, sim = printer
    with pytest.raises(GCodeError, match=words):
        k.gcode("PANDA_BREATH_DRY_START " + params)
    k.run(0.2)
    assert writes(sim) == []


def test_dry_start_is_refused_while_the_heater_has_a_target(
        printer):
    k, sim = printer
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    wait_device(k, sim, lambda s: s["work_on"] and s["work_mode"] == 2)
    sim.clear_frames()
    with pytest.raises(GCodeError, match="HEATER=chamber TARGET=0"):
        k.gcode("PANDA_BREATH_DRY_START TEMP=50 HOURS=2")


# The firmware's template, with the heater named panda_breath

TWEAKS = (pathlib.Path(__file__).resolve().parents[2] / "overlay"
          / "firmware-extended/37-feature-chamber-heater/root/usr/local"
          / "share/firmware-config/tweaks/klipper")


def firmware_config(port):
    """The template as Firmware Config leaves it (host set, the heater
    include active), the include written out: the harness has none."""
    text = (TWEAKS / "panda_breath.cfg").read_text()
    include = [line for line in text.splitlines() if "[include" in line]
    assert len(include) == 1
    heater = (TWEAKS / "panda_breath_heater_auto.cfg").read_text()
    return (text.replace("host: PandaBreath.local\nport: 80\n",
                         "host: 127.0.0.1\nport: %d\n" % (port,))
            .replace(include[0], heater))


def test_firmware_template_heats_with_m141_and_m191():
    with Simulator(push_interval=0.1, speed=20.0) as sim:
        sim.press(work_on=False)
        k = Klippy(firmware_config(sim.port))
        k.start()
        try:
            k.run_until(lambda: k.status("panda_breath")["connected"])
            k.gcode("M191 S40")
            state = sim.state()
            assert state["work_on"] and state["set_temp"] == 40
            heater = k.status("heater_generic panda_breath")
            assert heater["target"] == 40
            k.gcode("M141 S0")
            k.run_until(lambda: not sim.state()["work_on"])
            out = k.gcode("PANDA_BREATH_DRY_START TEMP=45 HOURS=1")
            assert "drying filament at 45C for 1 h" in out[-1]
            k.gcode("SET_HEATER_TEMPERATURE HEATER=panda_breath TARGET=35")
            k.run_until(lambda: sim.state()["work_mode"] == 2
                        and sim.state()["set_temp"] == 35)
            with pytest.raises(GCodeError,
                               match="HEATER=panda_breath TARGET=0"):
                k.gcode("PANDA_BREATH_DRY_START")
        finally:
            k.stop()
        assert k.stall.max < STALL_LIMIT
