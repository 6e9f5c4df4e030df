"""The device protocol half of the module: pure functions, no sockets."""
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


def test_snapshot_is_parsed_from_pretty_json(pb):
    text = json.dumps({
        "wifi": {"ssid": "x", "password": "secret"},
        "settings": {"fw_version": "V1.0.3", "work_on": 1, "work_mode": 2,
                     "set_temp": 45, "isrunning": 0}}, indent="\t")
    settings, rejected = pb.read_settings(pb.decode_frame(text))
    assert settings == {"fw_version": "V1.0.3", "work_on": True,
                        "work_mode": 2, "set_temp": 45, "isrunning": 0}
    assert rejected == []
    assert pb.is_state_update(settings)
    assert pb.reading_of(settings) is None


def test_reading_prefers_warehouse_temper_over_v104_alias(pb):
    assert pb.reading_of({"warehouse_temper": 41, "chamber_temp": 50}) == 41
    assert pb.reading_of({"chamber_temp": 50}) == 50


@pytest.mark.parametrize("value", ["45", None, [45], {"v": 45}, True])
def test_wrongly_typed_reading_is_rejected(pb, value):
    msg = {"settings": {"warehouse_temper": value}}
    settings, rejected = pb.read_settings(msg)
    assert "warehouse_temper" not in settings
    assert rejected == ["warehouse_temper"]


@pytest.mark.parametrize("text", ['{"settings":{"warehouse_temper":NaN}}',
                                  '{"settings":{"warehouse_temper":Infinity}}',
                                  '{"settings":', '[1,2]', '"x"', ''])
def test_malformed_and_non_finite_frames_raise_protocol_error(pb, text):
    with pytest.raises(pb.ProtocolError):
        pb.decode_frame(text)


def test_oversized_frame_is_refused_before_parsing(pb):
    text = json.dumps({"pad": "x" * pb.MAX_FRAME})
    with pytest.raises(pb.ProtocolError, match="too large"):
        pb.decode_frame(text)


def test_deeply_nested_frame_is_a_protocol_error(pb):
    with pytest.raises(pb.ProtocolError):
        pb.decode_frame("[" * 100000 + "]" * 100000)


@given(json_values)
def test_any_json_yields_clean_settings_or_protocol_error(pb, value):
    try:
        msg = pb.decode_frame(json.dumps(value))
    except pb.ProtocolError:
        return
    settings, rejected = pb.read_settings(msg)
    for key, val in settings.items():
        if key == "fw_version":
            assert isinstance(val, str)
        elif key == "work_on":
            assert isinstance(val, bool)
        else:
            assert not isinstance(val, bool)
            assert isinstance(val, (int, float)) and math.isfinite(val)


@given(st.dictionaries(st.sampled_from(
    ["warehouse_temper", "work_on", "work_mode", "set_temp", "fw_version",
     "isrunning", "chamber_temp", "junk"]), json_values, max_size=6))
def test_settings_root_of_any_shape_never_raises(pb, raw):
    settings, rejected = pb.read_settings({"settings": raw})
    assert set(settings).isdisjoint(rejected)
    reading = pb.reading_of(settings)
    assert reading is None or math.isfinite(reading)


def test_heat_frames_are_single_key_in_device_ui_order(pb):
    frames = [json.loads(f) for f in pb.heat_frames(45)]
    assert frames == [{"settings": {"work_mode": 2}},
                      {"settings": {"set_temp": 45}},
                      {"settings": {"work_on": True}}]


def test_v100_firmware_gets_its_old_target_key(pb):
    frames = [json.loads(f) for f in pb.heat_frames(45, "V1.0.0")]
    assert frames[1] == {"settings": {"temp": 45}}


def test_off_is_a_json_bool(pb):
    assert pb.off_frames() == ['{"settings": {"work_on": false}}']


@given(st.floats(min_value=-1000, max_value=1000))
def test_device_temp_is_always_within_the_device_range(pb, target):
    assert 0 <= pb.device_temp(target) <= pb.DEVICE_MAX_TEMP


def test_device_temp_never_wraps_like_uint8(pb):
    assert pb.device_temp(300) == 60
    assert pb.device_temp(44.6) == 45


# The device's own modes

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


# The frames the panda-breath command binds the device with

def test_printer_type_frame_is_the_one_setting_that_reboots(pb):
    assert json.loads(pb.printer_type_frame(pb.KLIPPER_PRINTER)) == {
        "settings": {"printer_type": 2}}
    assert json.loads(pb.printer_type_frame(1)) == {
        "settings": {"printer_type": 1}}


@pytest.mark.parametrize("kind", [0, 3, 2.0, True, "2", None])
def test_printer_type_frame_refuses_what_the_device_does_not_know(pb, kind):
    with pytest.raises(ValueError, match="printer type"):
        pb.printer_type_frame(kind)


def test_bind_frame_names_the_printer_and_its_moonraker(pb):
    assert json.loads(pb.bind_frame("Klipper", "192.168.1.20", 7125)) == {
        "printer": {"name": "Klipper", "ip": "192.168.1.20", "port": 7125}}


@pytest.mark.parametrize("name, ip, port, words", [
    ("", "10.0.0.2", 7125, "1-31 printable"),
    ("x" * 32, "10.0.0.2", 7125, "1-31 printable"),
    ("a\nb", "10.0.0.2", 7125, "1-31 printable"),
    (None, "10.0.0.2", 7125, "1-31 printable"),
    ("K", "printer.local", 7125, "IPv4"),
    ("K", "::1", 7125, "IPv4"),
    ("K", 167772162, 7125, "IPv4"),
    ("K", "10.0.0.2", 0, "port"),
    ("K", "10.0.0.2", 65536, "port"),
    ("K", "10.0.0.2", "7125", "port"),
])
def test_bind_frame_refuses_what_the_device_would_ignore(pb, name, ip, port,
                                                        words):
    with pytest.raises(ValueError, match=words):
        pb.bind_frame(name, ip, port)


@given(name=st.text(max_size=40), port=st.integers(-10, 70000))
def test_bind_frame_is_json_the_device_reads_back(pb, name, port):
    try:
        frame = pb.bind_frame(name, "10.0.0.2", port)
    except ValueError:
        return
    printer = json.loads(frame)["printer"]
    assert printer == {"name": name, "ip": "10.0.0.2", "port": port}
    assert 1 <= len(name) <= 31 and 1 <= port <= 65535


def test_unbind_frame_disconnects(pb):
    assert json.loads(pb.unbind_frame()) == {"printer": {"disconnect": 1}}
