"""What a client sees on the wire, and how the device treats writes."""

import json
import time

import pytest
from wire import deliver, is_temperature


def test_snapshot_has_every_root_and_no_temperature(sim, connect):
    snap = connect(sim).snapshot
    assert set(snap) == {"wifi", "sta", "ap", "settings", "printer"}
    assert snap["wifi"]["password"]  # clear text, as the device sends it
    assert set(snap["settings"]) == {
        "fw_version", "language", "printer_type", "work_on", "work_mode",
        "set_temp", "filtertemp", "hotbedtemp", "custom_temp",
        "custom_timer", "isrunning", "remaining_seconds"}
    assert "warehouse_temper" not in json.dumps(snap)
    assert snap["settings"]["fw_version"] == "V1.0.3"


def test_snapshot_reports_factory_defaults_with_numbers(sim, connect):
    s = connect(sim).snapshot["settings"]
    assert s["work_on"] == 1 and s["work_mode"] == 1
    assert (s["set_temp"], s["filtertemp"], s["hotbedtemp"]) == (60, 30, 80)
    assert (s["custom_temp"], s["custom_timer"]) == (60, 12)
    assert s["printer_type"] == 1


def test_frames_are_pretty_printed_with_tabs(sim, connect):
    client = connect(sim)
    raw_snapshot = client.ws.recv()  # the first temperature push
    assert "\n\t" in raw_snapshot and '":\t' in raw_snapshot


def test_snapshot_goes_to_the_connecting_client_only(sim, connect):
    first = connect(sim)
    connect(sim)
    frames = first.frames_for(0.35)
    assert frames and all(is_temperature(f) for f in frames)


def test_temperature_is_pushed_to_all_clients_as_integer(sim, connect):
    clients = [connect(sim), connect(sim)]
    for client in clients:
        frame = client.recv(timeout=1)
        assert is_temperature(frame)
        assert isinstance(frame["settings"]["warehouse_temper"], int)
        assert frame["settings"]["warehouse_temper"] == 25


def test_temperature_is_pushed_every_half_second_by_default(make_sim,
                                                            connect):
    sim = make_sim(push_interval=0.5)
    client = connect(sim)
    frames = client.frames_for(1.2)
    assert 2 <= len(frames) <= 3
    assert all(is_temperature(f) for f in frames)


def test_push_interval_sets_the_cadence(make_sim, connect):
    sim = make_sim(push_interval=0.05)
    frames = connect(sim).frames_for(0.5)
    assert 5 <= len(frames) <= 11


def test_writes_are_applied_but_never_echoed(sim, connect):
    client = connect(sim)
    deliver(sim, client, {"settings": {"set_temp": 45, "work_mode": 2}})
    state = sim.state()
    assert (state["set_temp"], state["work_mode"]) == (45, 2)
    frames = client.frames_for(0.35)
    assert frames and all(is_temperature(f) for f in frames)


def test_reconnect_reads_the_written_state(sim, connect):
    deliver(sim, connect(sim), {"settings": {"set_temp": 41}})
    assert connect(sim).snapshot["settings"]["set_temp"] == 41


def test_work_on_accepts_only_json_bool(sim, connect):
    client = connect(sim)
    for ignored in (0, 1, "false", None):
        deliver(sim, client, {"settings": {"work_on": ignored}})
        assert sim.state()["work_on"] is True
    assert deliver(sim, client, {"settings": {"work_on": False}})[
        "work_on"] is False
    assert connect(sim).snapshot["settings"]["work_on"] == 0


def test_wrong_types_are_ignored_key_by_key(sim, connect):
    client = connect(sim)
    state = deliver(sim, client, {"settings": {
        "set_temp": "50", "filtertemp": True, "hotbedtemp": 90,
        "work_mode": [2], "language": 1}})
    assert state["set_temp"] == 60 and state["filtertemp"] == 30
    assert state["hotbedtemp"] == 90
    assert state["work_mode"] == 1 and state["language"] == "en"


@pytest.mark.parametrize("sent, stored", [
    (300, 44), (256, 0), (-1, 255), (45.9, 45), (1e12, 255)])
def test_set_temp_is_stored_as_uint8_without_clamping(sim, connect,
                                                      sent, stored):
    state = deliver(sim, connect(sim), {"settings": {"set_temp": sent}})
    assert state["set_temp"] == stored


def test_work_mode_zero_is_ignored_and_range_unchecked(sim, connect):
    client = connect(sim)
    assert deliver(sim, client, {"settings": {"work_mode": 0}})[
        "work_mode"] == 1
    assert deliver(sim, client, {"settings": {"work_mode": 7}})[
        "work_mode"] == 7


def test_hotbedtemp_zero_is_ignored(sim, connect):
    state = deliver(sim, connect(sim), {"settings": {"hotbedtemp": 0}})
    assert state["hotbedtemp"] == 80


def test_unknown_roots_and_keys_and_queries_are_ignored(sim, connect):
    client = connect(sim)
    before = sim.state()
    for message in ({"get_settings": 1}, {"query": 1},
                    {"bogus": {"set_temp": 1}},
                    {"settings": {"target_temp": 40, "custom_temp": 40,
                                  "temp": 40, "nonsense": 1}}):
        deliver(sim, client, message)
    after = sim.state()
    for key in ("set_temp", "filament_temp", "work_on", "work_mode"):
        assert after[key] == before[key]
    frames = client.frames_for(0.25)
    assert all(is_temperature(f) for f in frames)


def test_malformed_json_is_dropped_and_connection_kept(sim, connect):
    client = connect(sim)
    for text in ('{"settings":{"set_temp":', "not json", "[1,2]",
                 '{"settings":{"set_temp":NaN}}', ""):
        deliver(sim, client, text)
    state = deliver(sim, client, {"settings": {"set_temp": 33}})
    assert state["set_temp"] == 33
    assert is_temperature(client.recv(timeout=1))


def test_keys_apply_in_firmware_order_not_json_order(sim, connect):
    client = connect(sim)
    # isrunning (13) comes after filament_drying_mode (12) and work_mode
    # (6) whatever the JSON order, so drying starts at the preset.
    deliver(sim, client, {"settings": {
        "isrunning": 1, "filament_drying_mode": 1, "work_mode": 3}})
    state = sim.wait_for(lambda s: s["relay"], timeout=2)
    assert state["isrunning"] == 1 and state["target"] == 55


def test_reset_in_a_frame_stops_the_later_keys(sim, connect):
    deliver(sim, connect(sim), {"settings": {"set_temp": 20, "reset": 1}})
    sim.wait_for(lambda s: s["online"] and s["boot_count"] == 2)
    assert sim.state()["set_temp"] == 60  # key 7 never ran after key 3


def test_frames_record_time_client_text_and_data(sim, connect):
    client = connect(sim)
    before = time.monotonic()
    deliver(sim, client, {"settings": {"set_temp": 40}})
    deliver(sim, client, "garbage")
    last, bad = sim.frames[-2:]
    assert last.time >= before and last.client == bad.client
    assert last.data == {"settings": {"set_temp": 40}}
    assert bad.text == "garbage" and bad.data is None
    assert sim.settings_writes()[-1][1:] == ("set_temp", 40)
    sim.clear_frames()
    assert sim.frames == [] and sim.settings_writes() == []


def test_settings_writes_list_every_key_in_arrival_order(sim, connect):
    client = connect(sim)
    deliver(sim, client, {"settings": {"work_on": False, "set_temp": 5}})
    deliver(sim, client, {"printer": {"disconnect": 1}})
    deliver(sim, client, {"settings": {"work_mode": 2}})
    assert [w[1:] for w in sim.settings_writes()] == [
        ("work_on", False), ("set_temp", 5), ("work_mode", 2)]
