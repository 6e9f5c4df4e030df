"""The simulator counts the device's flash (NVS) writes: one per saved key
it is given, changed or not (protocol.md, "Persistence")."""

import urllib.request

from wire import deliver

from simulator.device import Device
from simulator.nvs import Nvs
from simulator.profiles import get_profile


def device(firmware="1.0.3", **kwargs):
    return Device(get_profile(firmware), **kwargs)


def writes(dev):
    state = dev.state()
    return state["flash_writes"], state["flash_writes_by_key"]


def test_a_fresh_device_has_written_nothing():
    assert writes(device()) == (0, {})


def test_every_saved_key_is_one_write_even_unchanged():
    dev = device()
    frame = {"settings": {"work_on": True, "work_mode": 2, "set_temp": 55}}
    dev.receive(frame)
    assert writes(dev) == (3, {"work_on": 1, "work_mode": 1, "set_temp": 1})
    dev.receive(frame)  # the same values again
    assert writes(dev) == (6, {"work_on": 2, "work_mode": 2, "set_temp": 2})


def test_each_saved_setting_counts_under_its_key():
    dev = device()
    dev.receive({"settings": {
        "language": "zh", "filtertemp": 40, "hotbedtemp": 90,
        "filament_temp": 50, "filament_timer": 3}})
    assert writes(dev)[1] == {"language": 1, "filtertemp": 1,
                              "hotbedtemp": 1, "filament_temp": 1,
                              "filament_timer": 1}


def test_ignored_and_unsaved_keys_write_nothing():
    dev = device()
    dev.receive({"settings": {
        "work_on": 1,  # not a JSON bool: ignored
        "work_mode": 0, "hotbedtemp": 0,  # ignored by the firmware
        "set_temp": "50", "language": "fr",  # wrong types/values
        "isrunning": 1, "filament_drying_mode": 2,  # never saved
        "target_temp": 50, "warp": 9}})  # unknown on the WebSocket
    dev.receive({"get_settings": 1})
    assert writes(dev) == (0, {})


def test_v100_counts_its_temp_key():
    dev = device("0.0.0")
    dev.receive({"settings": {"temp": 40}})
    assert writes(dev) == (1, {"temp": 1})


def test_printer_type_binding_and_factory_reset_count():
    dev = device()
    dev.receive({"settings": {"printer_type": 2}})
    assert writes(dev)[1] == {"printer_type": 1}
    dev.boot()
    dev.receive({"printer": {"name": "K", "ip": "127.0.0.1", "port": 80}})
    dev.receive({"printer": {"disconnect": 1}})
    assert writes(dev)[1] == {"printer_type": 1, "printer": 2}
    dev.receive({"settings": {"factory_reset": 1}})  # an erase
    assert writes(dev) == (4, {"printer_type": 1, "printer": 2,
                               "factory_reset": 1})


def test_panel_presses_count():
    dev = device()
    dev.press(set_temp=50, work_on=False)
    assert writes(dev) == (2, {"set_temp": 1, "work_on": 1})


def test_a_sensor_fault_saves_work_on_false():
    dev = device()
    dev.set_sensor_fault("open")
    assert writes(dev) == (1, {"work_on": 1})


def test_the_count_survives_reboots():
    nvs = Nvs()
    dev = device(nvs=nvs)
    dev.receive({"settings": {"set_temp": 45}})
    dev.shut_down()
    dev.boot()
    dev.receive({"settings": {"set_temp": 45}})
    assert writes(dev) == (2, {"set_temp": 2})
    assert nvs.writes == 2


def test_mqtt_aliases_count_as_their_key():
    dev = device("1.0.4", mqtt_aliases=True)
    dev.receive({"settings": {"target_temp": 50, "set_temp": 51}})
    assert writes(dev) == (2, {"set_temp": 2})


def test_over_the_wire_and_on_the_status_page(sim, connect):
    client = connect(sim)
    state = deliver(sim, client, {"settings": {"work_on": False,
                                               "set_temp": 40}})
    assert state["flash_writes"] == 2
    assert state["flash_writes_by_key"] == {"work_on": 1, "set_temp": 1}
    sim.press(set_temp=41)
    assert sim.state()["flash_writes"] == 3
    url = f"http://127.0.0.1:{sim.port}/"
    with urllib.request.urlopen(url, timeout=3) as response:
        assert "Flash writes: 3." in response.read().decode()
