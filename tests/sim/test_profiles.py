"""Each firmware profile decides which keys exist and how they act."""

import pytest
from wire import deliver

from simulator import Simulator


@pytest.mark.parametrize("firmware", ["1.0.1", "1.0.2"])
def test_old_firmware_has_no_printer_type(make_sim, connect, firmware):
    sim = make_sim(firmware=firmware)
    client = connect(sim)
    settings = client.snapshot["settings"]
    assert settings["fw_version"] == "V" + firmware
    assert "printer_type" not in settings and "set_temp" in settings
    state = deliver(sim, client, {"settings": {"printer_type": 2}})
    assert state["online"] and state["printer_type"] == 1
    frames = client.frames_for(0.3)
    assert frames and all("response" not in f for f in frames)


def test_old_firmware_ignores_scan_port_and_binds_bambu_only(make_sim,
                                                             connect):
    sim = make_sim(firmware="1.0.2")
    client = connect(sim)
    assert set(client.snapshot["printer"]) >= {"name", "sn", "access_code",
                                               "ip", "state"}
    deliver(sim, client, {"printer": {"scan_port": 80}})
    deliver(sim, client, {"printer": {"name": "K", "ip": "10.0.0.2",
                                      "port": 80}})
    assert sim.state()["printer"] == {"state": 1}  # invalid for Bambu


def test_v100_reports_v100_and_uses_temp_as_target(make_sim, connect):
    sim = make_sim(firmware="0.0.0")
    client = connect(sim)
    settings = client.snapshot["settings"]
    assert settings["fw_version"] == "V1.0.0"
    assert "temp" in settings and "set_temp" not in settings
    assert "filtertemp" not in settings and "printer_type" not in settings
    assert settings["work_mode"] == 3  # auto, in V1.0.0's numbering
    deliver(sim, client, {"settings": {"set_temp": 40, "filtertemp": 9}})
    assert sim.state()["set_temp"] == 60
    assert deliver(sim, client, {"settings": {"temp": 40}})["set_temp"] == 40
    assert connect(sim).snapshot["settings"]["temp"] == 40


def test_v100_mode_one_is_drying(make_sim, connect):
    sim = make_sim(firmware="0.0.0", speed=20)
    client = connect(sim)
    deliver(sim, client, {"settings": {
        "work_mode": 1, "filament_temp": 48, "filament_timer": 2,
        "filament_drying_mode": 2, "isrunning": 1}})
    state = sim.wait_for(lambda s: s["relay"])
    assert state["target"] == 48  # no drying_mode key: custom values
    assert state["remaining_seconds"] <= 7200


def test_v100_mode_three_is_auto(make_sim, connect):
    sim = make_sim(firmware="0.0.0", speed=20)
    start = deliver(sim, connect(sim), {"settings": {
        "work_mode": 3, "isrunning": 1}})["clock"]
    state = sim.wait_for(lambda s: s["clock"] > start + 2)
    assert not state["relay"] and state["isrunning"] == 1


def test_v104_behaves_like_v103_on_websocket(make_sim, connect):
    sim = make_sim(firmware="1.0.4")
    client = connect(sim)
    assert client.snapshot["settings"]["fw_version"] == "V1.0.4"
    assert "printer_type" in client.snapshot["settings"]
    state = deliver(sim, client, {"settings": {"target_temp": 41,
                                               "set_temp": 50}})
    assert state["set_temp"] == 50
    deliver(sim, client, {"settings": {"target_temp": 41}})
    assert sim.state()["set_temp"] == 50


def test_v104_mqtt_aliases_are_opt_in(make_sim, connect):
    sim = make_sim(firmware="1.0.4", mqtt_aliases=True)
    client = connect(sim)
    state = deliver(sim, client, {"settings": {
        "target_temp": 41, "filter_temp": 20, "heater_temp": 70}})
    assert (state["set_temp"], state["filtertemp"],
            state["hotbedtemp"]) == (41, 20, 70)
    state = deliver(sim, client, {"settings": {"target_temp": 41,
                                               "set_temp": 44}})
    assert state["set_temp"] == 44  # the V1.0.3 key wins


def test_mqtt_aliases_flag_does_nothing_on_v103(make_sim, connect):
    sim = make_sim(firmware="1.0.3", mqtt_aliases=True)
    state = deliver(sim, connect(sim), {"settings": {"target_temp": 41}})
    assert state["set_temp"] == 60


def test_unknown_firmware_is_rejected():
    with pytest.raises(ValueError, match="unknown firmware"):
        Simulator(firmware="2.0")
