"""Settings kept in an NVS file survive a restart of the simulator."""

from wire import deliver

from simulator import Simulator


def test_nvs_file_carries_settings_to_the_next_run(make_sim, connect,
                                                   tmp_path):
    path = str(tmp_path / "nvs.json")
    sim = make_sim(nvs_path=path)
    deliver(sim, connect(sim), {"settings": {"set_temp": 38,
                                             "work_on": False}})
    sim.stop()
    sim = make_sim(nvs_path=path)
    settings = connect(sim).snapshot["settings"]
    assert settings["set_temp"] == 38 and settings["work_on"] == 0


def test_factory_reset_erases_the_nvs_file(make_sim, connect, tmp_path):
    nvs = tmp_path / "nvs.json"
    sim = make_sim(nvs_path=str(nvs))
    client = connect(sim)
    deliver(sim, client, {"settings": {"set_temp": 38}})
    assert nvs.exists()
    client.send({"settings": {"factory_reset": 1}})
    sim.wait_for(lambda s: s["online"] and s["boot_count"] == 2)
    assert not nvs.exists()
    assert sim.state()["set_temp"] == 60


def test_context_manager_starts_and_stops():
    with Simulator(port=0) as sim:
        assert sim.state()["online"] and sim.url.endswith(f":{sim.port}/ws")
    try:
        sim.state()
    except RuntimeError:
        pass
    else:
        raise AssertionError("state() after stop should fail")
