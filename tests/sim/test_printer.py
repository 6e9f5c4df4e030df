"""The `printer` root: Klipper and Bambu bindings."""

from wire import deliver

# port 1: nothing listens there, so the device's Moonraker link fails
KLIPPER = {"printer": {"name": "Klipper", "ip": "127.0.0.1", "port": 1}}


def klipper_sim(make_sim, connect):
    sim = make_sim()
    client = connect(sim)
    client.send({"settings": {"printer_type": 2}})
    sim.wait_for(lambda s: s["online"] and s["boot_count"] == 2)
    return sim, connect(sim)


def test_klipper_binding_is_stored_and_reported(make_sim, connect):
    sim, client = klipper_sim(make_sim, connect)
    deliver(sim, client, KLIPPER)
    push = client.recv_until(lambda f: "printer" in f)
    assert push == {"printer": {"state": 2}}  # connecting
    printer = sim.state()["printer"]
    # then failed (4): nothing answers Moonraker on that port here
    assert printer.pop("state") in (2, 4)
    assert printer == {"name": "Klipper", "ip": "127.0.0.1", "port": 1}
    printer = connect(sim).snapshot["printer"]
    assert (printer["name"], printer["host"], printer["port"]) == (
        "Klipper", "127.0.0.1", 1)


def test_klipper_binding_survives_reboot(make_sim, connect):
    sim, client = klipper_sim(make_sim, connect)
    deliver(sim, client, KLIPPER)
    sim.reboot()
    sim.wait_for(lambda s: s["online"] and s["boot_count"] == 3)
    assert sim.state()["printer"]["ip"] == "127.0.0.1"


def test_empty_name_makes_the_binding_ignored(make_sim, connect):
    sim, client = klipper_sim(make_sim, connect)
    deliver(sim, client, {"printer": {"name": "", "ip": "127.0.0.1",
                                      "port": 80}})
    assert sim.state()["printer"] == {"state": 0}


def test_bad_binding_fields_give_invalid_info(make_sim, connect):
    sim, client = klipper_sim(make_sim, connect)
    deliver(sim, client, {"printer": {"name": "K", "ip": 5, "port": 80}})
    push = client.recv_until(lambda f: "printer" in f)
    assert push == {"printer": {"state": 1}}


def test_disconnect_unbinds(make_sim, connect):
    sim, client = klipper_sim(make_sim, connect)
    deliver(sim, client, KLIPPER)
    deliver(sim, client, {"printer": {"disconnect": 1}})
    assert sim.state()["printer"] == {"state": 0}
    assert connect(sim).snapshot["printer"]["host"] == ""


def test_bambu_binding_needs_its_own_fields(sim, connect):
    client = connect(sim)
    deliver(sim, client, {"printer": {
        "name": "X1C", "sn": "01S00A", "access_code": "1234",
        "ip": "127.0.0.2"}})
    state = sim.state()["printer"]
    assert state["sn"] == "01S00A" and state["state"] == 2
    assert connect(sim).snapshot["printer"]["access_code"] == "1234"


def test_changing_printer_type_clears_the_binding(make_sim, connect):
    sim, client = klipper_sim(make_sim, connect)
    deliver(sim, client, KLIPPER)
    client.send({"settings": {"printer_type": 1}})
    sim.wait_for(lambda s: s["online"] and s["boot_count"] == 3)
    assert sim.state()["printer"] == {"state": 0}
