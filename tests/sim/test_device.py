"""The device model alone: no sockets, device time driven by hand."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.device import Device
from simulator.nvs import Nvs
from simulator.profiles import V103_ORDER, get_profile
from simulator.thermal import ThermalModel


def device(firmware="1.0.3", **kwargs):
    return Device(get_profile(firmware), **kwargs)


def always_on(dev, target=55):
    dev.receive({"settings": {"work_on": True, "work_mode": 2,
                              "set_temp": target}})


def test_relay_only_below_target_and_never_hysteresis():
    dev = device()
    always_on(dev)
    for _ in range(20 * 60 * 2):  # 20 minutes in 500 ms steps
        dev.advance(0.5)
        if dev.relay:
            assert int(dev.chamber_reading()) < 55
            assert dev.ptc_reading() <= 104
        else:
            assert (int(dev.chamber_reading()) >= 55
                    or dev.ptc_reading() > 104)


def test_ptc_above_104_cuts_the_relay():
    dev = device()
    always_on(dev)
    dev.advance(1)
    assert dev.relay
    dev.thermal.ptc = 104.5
    dev.advance(0.5)
    assert not dev.relay


def test_relay_decision_runs_every_500_ms_of_device_time():
    dev = device()
    always_on(dev)
    dev.advance(0.4)
    assert not dev.relay  # the 200 ms mode rule ran, the relay rule not yet
    dev.advance(0.1)
    assert dev.relay


def test_auto_mode_follows_the_printer_bed_target():
    dev = device()
    dev.settings.update(printer_type=2)
    dev.receive({"printer": {"name": "K", "ip": "127.0.0.1", "port": 80}})
    dev.link.report(3, up=True, bed_target=100)
    dev.advance(1)
    assert dev.relay and dev.fan
    dev.link.report(3, up=True, bed_target=50)  # >= filtertemp only
    dev.advance(1)
    assert dev.fan and not dev.relay
    dev.link.report(4, up=False, bed_target=100)  # link lost
    dev.advance(1)
    assert not dev.fan and not dev.relay


def test_large_steps_stay_stable():
    model = ThermalModel(25)
    model.step(3 * 3600, relay=True, fan=True)
    for value in (model.ptc, model.chamber, model.sensor):
        assert math.isfinite(value) and 25 <= value < 200
    model.step(3 * 3600, relay=False, fan=False)
    assert abs(model.chamber - 25) < 1


def test_sensor_over_reads_the_chamber_while_heating():
    model = ThermalModel(25)
    model.step(600, relay=True, fan=True)
    assert model.sensor > model.chamber + 3


def test_nvs_file_keeps_settings_but_not_isrunning(tmp_path):
    path = str(tmp_path / "nvs.json")
    dev = device(nvs=Nvs(path))
    dev.receive({"settings": {"set_temp": 47, "work_mode": 3,
                              "isrunning": 1}})
    saved = json.loads(open(path).read())
    assert saved["set_temp"] == 47 and "isrunning" not in saved
    again = device(nvs=Nvs(path))
    assert again.settings["set_temp"] == 47 and again.isrunning == 0


def test_bad_nvs_file_is_a_clear_error(tmp_path):
    path = tmp_path / "nvs.json"
    path.write_text("[1]")
    with pytest.raises(ValueError, match="JSON object"):
        Nvs(str(path))


def test_offline_device_ignores_frames_and_keeps_relay_off():
    dev = device()
    always_on(dev)
    dev.advance(1)
    dev.shut_down()
    dev.receive({"settings": {"set_temp": 20}})
    dev.advance(2)
    assert not dev.relay and dev.settings["set_temp"] == 55


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5)
setting_keys = st.sampled_from(V103_ORDER + (
    "temp", "target_temp", "warehouse_temper", "custom_temp", "x"))


@settings(max_examples=100, deadline=None)
@given(frames=st.lists(st.dictionaries(
    st.sampled_from(["settings", "printer", "wifi", "other"]),
    st.dictionaries(setting_keys, json_values, max_size=6) | json_values,
    max_size=3), max_size=4))
def test_any_json_frame_leaves_settings_well_typed(frames):
    dev = device()
    for frame in frames:
        dev.receive(frame)
        dev.advance(0.5)
    s = dev.settings
    assert isinstance(s["work_on"], bool)
    assert s["language"] in ("en", "zh")
    assert s["printer_type"] in (1, 2)
    for key in ("work_mode", "set_temp", "filtertemp", "hotbedtemp",
                "filament_temp", "filament_timer"):
        assert isinstance(s[key], int) and 0 <= s[key] <= 255
    assert s["work_mode"] != 0
