"""Heating, drying and sensor faults, driven and watched over the wire."""

import pytest
from wire import closed, deliver, is_temperature

ALWAYS_ON = {"settings": {"work_on": True, "work_mode": 2, "set_temp": 55}}


def test_heat_up_reaches_55_in_about_five_minutes(make_sim, connect):
    sim = make_sim(speed=300)
    start = deliver(sim, connect(sim), ALWAYS_ON)["clock"]
    peak = 0
    while (state := sim.state())["sensor_temp"] < 54.5:
        peak = max(peak, state["ptc_temp"])
        assert state["clock"] - start < 400, "too slow"
    assert state["clock"] - start >= 240  # seconds of device time
    assert 85 <= peak <= 100
    assert state["chamber_temp"] < state["sensor_temp"] - 3


def test_holding_keeps_sensor_at_target_and_ptc_in_range(make_sim,
                                                         connect):
    sim = make_sim(speed=1500)
    begin = deliver(sim, connect(sim), ALWAYS_ON)["clock"]
    sim.wait_for(lambda s: s["clock"] >= begin + 400, timeout=5)
    readings, ptc, relays = [], [], set()
    start = sim.state()["clock"]
    while (state := sim.state())["clock"] < start + 600:
        readings.append(state["reading"])
        ptc.append(state["ptc_temp"])
        relays.add(state["relay"])
    assert 53 <= min(readings) and max(readings) <= 56
    assert relays == {True, False}  # it cycles
    assert 55 <= sum(ptc) / len(ptc) <= 90
    assert max(ptc) <= 106


def test_pushed_temperature_follows_the_sensor(make_sim, connect):
    sim = make_sim(speed=300)
    client = connect(sim)
    deliver(sim, client, ALWAYS_ON)
    frame = client.recv_until(
        lambda f: is_temperature(f)
        and f["settings"]["warehouse_temper"] >= 40, timeout=5)
    assert isinstance(frame["settings"]["warehouse_temper"], int)


def test_work_on_false_turns_everything_off(make_sim, connect):
    sim = make_sim(speed=50)
    client = connect(sim)
    deliver(sim, client, ALWAYS_ON)
    sim.wait_for(lambda s: s["relay"] and s["fan"])
    deliver(sim, client, {"settings": {"work_on": False}})
    state = sim.wait_for(lambda s: not s["relay"] and not s["fan"])
    assert not state["heat_request"]


def test_relay_stays_off_at_or_above_target(make_sim, connect):
    sim = make_sim(speed=50)
    client = connect(sim)
    start = deliver(sim, client, {"settings": {"work_mode": 2,
                                              "set_temp": 25}})["clock"]
    sim.wait_for(lambda s: s["heat_request"] and s["clock"] > start + 2)
    assert not sim.state()["relay"]  # 25 is not below 25
    deliver(sim, client, {"settings": {"set_temp": 26}})
    sim.wait_for(lambda s: s["relay"])


def test_auto_mode_without_printer_link_does_not_heat(make_sim, connect):
    sim = make_sim(speed=50)
    start = deliver(sim, connect(sim), {"settings": {
        "work_mode": 1, "set_temp": 60}})["clock"]
    state = sim.wait_for(lambda s: s["clock"] > start + 3)
    assert not state["relay"] and not state["fan"]


def test_speed_scales_device_time(make_sim):
    sim = make_sim(speed=100)
    first = sim.state()["clock"]
    sim.wait_for(lambda s: s["clock"] >= first + 30, timeout=2)


def test_ambient_sets_where_the_room_drifts(make_sim):
    sim = make_sim(speed=5000, ambient=25)
    sim.set_ambient(10)
    state = sim.wait_for(lambda s: s["sensor_temp"] < 12, timeout=10)
    assert state["ambient"] == 10


def test_ambient_option_sets_the_start_temperature(make_sim, connect):
    sim = make_sim(ambient=18)
    frame = connect(sim).recv(timeout=1)
    assert frame["settings"]["warehouse_temper"] == 18


def test_power_cycle_in_always_on_resumes_heating(make_sim, connect):
    sim = make_sim(speed=20)
    deliver(sim, connect(sim), ALWAYS_ON)
    sim.wait_for(lambda s: s["relay"])
    sim.power_cycle(off_for=0.3)
    assert not sim.state()["relay"] and not sim.state()["online"]
    state = sim.wait_for(lambda s: s["online"] and s["relay"], timeout=3)
    assert state["boot_count"] == 2


def test_reboot_in_always_on_resumes_heating(make_sim, connect):
    sim = make_sim(speed=20)
    deliver(sim, connect(sim), ALWAYS_ON)
    sim.reboot()
    sim.wait_for(lambda s: s["online"] and s["relay"], timeout=3)


def test_power_cycle_with_work_on_false_stays_off(make_sim, connect):
    sim = make_sim(speed=20)
    deliver(sim, connect(sim), {"settings": {"work_on": False,
                                             "work_mode": 2}})
    start = sim.state()["clock"]
    sim.power_cycle(off_for=0.1)
    state = sim.wait_for(lambda s: s["online"] and s["clock"] > start + 3)
    assert not state["work_on"] and not state["relay"]


def test_power_cycle_drops_connections(sim, connect):
    client = connect(sim)
    sim.power_cycle(off_for=0.2)
    assert closed(client)


def test_sensor_open_forces_off_and_pushes_settings(make_sim, connect):
    sim = make_sim(speed=20)
    client = connect(sim)
    deliver(sim, client, ALWAYS_ON)
    sim.wait_for(lambda s: s["relay"])
    sim.sensor_fault("open")
    push = client.recv_until(lambda f: "work_on" in f.get("settings", {}))
    s = push["settings"]
    assert s["work_on"] == 0 and s["warehouse_sensor_status"] == 2
    assert s["work_mode"] == 2 and "set_temp" in s
    state = sim.wait_for(lambda s: not s["relay"])
    assert not state["work_on"] and state["warehouse_sensor_status"] == 2


def test_sensor_short_reports_status_one(make_sim, connect):
    sim = make_sim(speed=20)
    client = connect(sim)
    sim.sensor_fault("short")
    push = client.recv_until(lambda f: "work_on" in f.get("settings", {}))
    assert push["settings"]["warehouse_sensor_status"] == 1
    sim.sensor_fault(None)
    assert sim.wait_for(lambda s: s["warehouse_sensor_status"] == 0)


def test_sensor_fault_survives_reboot_and_keeps_device_off(make_sim,
                                                           connect):
    sim = make_sim(speed=20)
    sim.sensor_fault("open")
    sim.wait_for(lambda s: not s["work_on"])
    client = connect(sim)
    deliver(sim, client, {"settings": {"work_on": True}})
    push = client.recv_until(lambda f: "work_on" in f.get("settings", {}))
    assert push["settings"]["work_on"] == 0


def test_swapped_leads_make_readings_jump_above_60(sim, connect):
    client = connect(sim)
    sim.swap_leads(True)
    frame = client.recv_until(is_temperature)
    frame = client.recv_until(is_temperature)
    assert frame["settings"]["warehouse_temper"] >= 60
    sim.swap_leads(False)
    sim.wait_for(lambda s: s["reading"] == 25)


def test_drying_preset_runs_and_counts_down_with_speed(make_sim, connect):
    sim = make_sim(speed=500)
    client = connect(sim)
    deliver(sim, client, {"settings": {
        "work_mode": 3, "filament_drying_mode": 2, "isrunning": 1}})
    state = sim.wait_for(lambda s: s["relay"])
    assert state["target"] == 60 and state["isrunning"] == 1
    start = state["remaining_seconds"]
    assert 12 * 3600 - 300 <= start <= 12 * 3600
    later = sim.wait_for(lambda s: s["remaining_seconds"] <= start - 250)
    assert later["isrunning"] == 1


def test_drying_custom_needs_mode_three(make_sim, connect):
    sim = make_sim(speed=20)
    client = connect(sim)
    deliver(sim, client, {"settings": {"work_mode": 3, "filament_temp": 45,
                                       "filament_drying_mode": 1,
                                       "isrunning": 1}})
    assert sim.wait_for(lambda s: s["heat_request"])["target"] == 55
    deliver(sim, client, {"settings": {"filament_drying_mode": 3}})
    assert sim.wait_for(lambda s: s["target"] == 45)


def test_filament_timer_resets_remaining_seconds(sim, connect):
    state = deliver(sim, connect(sim), {"settings": {"filament_timer": 2}})
    assert state["remaining_seconds"] == 7200
    assert state["filament_timer"] == 2


def test_drying_end_pushes_isrunning_zero_and_stays_on(make_sim, connect):
    sim = make_sim(speed=10000)
    client = connect(sim)
    deliver(sim, client, {"settings": {
        "work_mode": 3, "filament_temp": 50, "filament_timer": 1,
        "filament_drying_mode": 3, "isrunning": 1}})
    push = client.recv_until(lambda f: "isrunning" in f.get("settings", {}),
                             timeout=5)
    assert push == {"settings": {"isrunning": 0, "remaining_seconds": 0}}
    state = sim.state()
    assert state["work_on"] and state["work_mode"] == 3
    assert state["isrunning"] == 0 and not state["heat_request"]


def test_isrunning_zero_stops_drying(make_sim, connect):
    sim = make_sim(speed=20)
    client = connect(sim)
    deliver(sim, client, {"settings": {"work_mode": 3, "isrunning": 1}})
    sim.wait_for(lambda s: s["relay"])
    deliver(sim, client, {"settings": {"isrunning": 0}})
    assert not sim.wait_for(lambda s: not s["relay"])["isrunning"]


def test_work_on_false_stops_drying_and_resets_timer(make_sim, connect):
    sim = make_sim(speed=100)
    client = connect(sim)
    deliver(sim, client, {"settings": {"work_mode": 3, "isrunning": 1}})
    sim.wait_for(lambda s: s["remaining_seconds"] < 12 * 3600 - 50)
    deliver(sim, client, {"settings": {"work_on": False}})
    state = sim.wait_for(lambda s: s["remaining_seconds"] == 12 * 3600)
    assert state["isrunning"] == 0 and not state["relay"]


def test_panel_press_pushes_full_settings_to_all(sim, connect):
    clients = [connect(sim), connect(sim)]
    sim.press(work_on=False, set_temp=50)
    for client in clients:
        push = client.recv_until(lambda f: "work_on" in f.get("settings",
                                                               {}))
        assert push["settings"]["work_on"] == 0
        assert push["settings"]["set_temp"] == 50
        assert push["settings"]["fw_version"] == "V1.0.3"
    assert not sim.state()["work_on"]


def test_panel_press_rejects_unknown_settings(sim):
    with pytest.raises(ValueError):
        sim.press(warp_drive=1)


def test_panel_cannot_be_pressed_while_rebooting(make_sim):
    sim = make_sim(reboot_delay=1)
    sim.reboot()
    with pytest.raises(ValueError, match="rebooting"):
        sim.press(work_on=False)


def test_sensor_fault_push_comes_before_the_bad_reading(sim, connect):
    client = connect(sim)
    sim.sensor_fault("open")
    frame = client.recv_until(
        lambda f: f != {"settings": {"warehouse_temper": 25}})
    assert frame["settings"]["warehouse_sensor_status"] == 2
    assert client.recv_until(is_temperature) == {
        "settings": {"warehouse_temper": -40}}


def test_sensor_fault_pushes_even_when_already_off(sim, connect):
    client = connect(sim)
    deliver(sim, client, {"settings": {"work_on": False}})
    sim.sensor_fault("short")
    frame = client.recv_until(lambda f: "work_on" in f.get("settings", {}))
    assert frame["settings"]["warehouse_sensor_status"] == 1
