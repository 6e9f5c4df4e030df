"""The simulated device's own Moonraker client, against a loopback endpoint."""
import pytest
from moonraker_endpoint import MoonrakerEndpoint
from wire import deliver

from simulator.moonraker import QUERY_OBJECTS

SPEED = 10.0    # device seconds per wall second: polls every 0.1 s
AUTO = dict(work_on=True, work_mode=1, set_temp=50, hotbedtemp=60,
            filtertemp=40)


@pytest.fixture
def moonraker():
    with MoonrakerEndpoint() as endpoint:
        yield endpoint


def bind(make_sim, connect, port, ip="127.0.0.1"):
    sim = make_sim(speed=SPEED)
    connect(sim).send({"settings": {"printer_type": 2}})
    sim.wait_for(lambda s: s["online"] and s["boot_count"] == 2)
    client = connect(sim)
    deliver(sim, client, {"printer": {"name": "Klipper", "ip": ip,
                                      "port": port}})
    return sim, client


def printer_states(client, until, timeout=3.0):
    states = []
    while not states or states[-1] != until:
        frame = client.recv_until(lambda f: "printer" in f, timeout=timeout)
        states.append(frame["printer"]["state"])
    return states


def test_bound_device_queries_exactly_the_listed_objects(
        make_sim, connect, moonraker):
    bind(make_sim, connect, moonraker.port)
    queries = moonraker.wait_for_queries(3)
    for query in queries:
        assert query["jsonrpc"] == "2.0"
        assert query["method"] == "printer.objects.query"
        assert query["params"] == {"objects": QUERY_OBJECTS}
    assert QUERY_OBJECTS["heater_bed"] == ["temperature", "target"]
    assert len({q["id"] for q in queries}) == len(queries)


def test_queries_come_once_per_device_second(make_sim, connect, moonraker):
    bind(make_sim, connect, moonraker.port)
    moonraker.wait_for_queries(4)
    times = [t for t, _ in moonraker.requests[:4]]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.9 / SPEED


def test_binding_state_goes_connecting_then_connected(
        make_sim, connect, moonraker):
    sim, client = bind(make_sim, connect, moonraker.port)
    assert printer_states(client, until=3)[0] in (2, 3)
    assert sim.state()["printer"]["state"] == 3
    assert connect(sim).snapshot["printer"]["state"] == 3


def test_auto_mode_follows_the_bed_target(make_sim, connect, moonraker):
    sim, _ = bind(make_sim, connect, moonraker.port)
    sim.press(**AUTO)
    sim.wait_for(lambda s: s["printer"]["state"] == 3)
    moonraker.bed_target = 45.0         # above filtertemp only: fan
    state = sim.wait_for(lambda s: s["fan"])
    assert not state["heat_request"]
    moonraker.bed_target = 60.0         # at hotbedtemp: heat toward set_temp
    state = sim.wait_for(lambda s: s["heat_request"])
    assert state["target"] == 50 and state["fan"]
    moonraker.bed_target = 0.0
    sim.wait_for(lambda s: not s["heat_request"] and not s["fan"])


def test_losing_moonraker_turns_heater_and_fan_off(make_sim, connect,
                                                    moonraker):
    sim, client = bind(make_sim, connect, moonraker.port)
    sim.press(**AUTO)
    moonraker.bed_target = 100.0
    sim.wait_for(lambda s: s["heat_request"] and s["fan"])
    moonraker.stop()
    assert printer_states(client, until=4)[-1] == 4   # failed
    state = sim.wait_for(lambda s: not s["heat_request"] and not s["fan"])
    assert state["work_on"] and state["work_mode"] == 1


def test_link_comes_back_after_a_failure(make_sim, connect):
    endpoint = MoonrakerEndpoint().start()
    port = endpoint.port
    sim, client = bind(make_sim, connect, port)
    endpoint.wait_for_queries(1)
    endpoint.stop()
    printer_states(client, until=4)
    with MoonrakerEndpoint(port=port) as back:
        back.bed_target = 90.0
        sim.press(**AUTO)
        assert printer_states(client, until=3)[-1] == 3
        sim.wait_for(lambda s: s["heat_request"])


def test_unbinding_closes_the_link(make_sim, connect, moonraker):
    sim, client = bind(make_sim, connect, moonraker.port)
    moonraker.wait_for_queries(1)
    deliver(sim, client, {"printer": {"disconnect": 1}})
    sim.wait_for(lambda s: s["printer"]["state"] == 0)
    count = len(moonraker.wait_for_queries(1))
    client.frames_for(0.4)
    assert len(moonraker.queries()) <= count + 1
    assert sim.state()["printer"]["state"] == 0


def test_binding_outside_loopback_fails_without_connecting(
        make_sim, connect, moonraker):
    sim, client = bind(make_sim, connect, 7125, ip="192.0.2.10")
    assert printer_states(client, until=4)[-1] == 4
    sim.press(**AUTO)
    assert not sim.wait_for(lambda s: s["printer"]["state"] == 4)["fan"]


def test_bambu_bound_device_never_queries_moonraker(sim, connect,
                                                     moonraker):
    client = connect(sim)
    deliver(sim, client, {"printer": {"name": "X1C", "sn": "01S",
                                      "access_code": "1", "ip": "127.0.0.1"}})
    client.frames_for(0.3)
    assert moonraker.queries() == []
