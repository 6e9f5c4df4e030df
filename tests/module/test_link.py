"""DeviceLink on its own: the connection thread against the simulator,
with no Klipper around it."""
import json
import queue
import time

import pytest

from simulator import Simulator


class Events:
    """Collects what the link thread reports."""
    def __init__(self):
        self.queue = queue.Queue()
        self.seen = []

    def __call__(self, kind, *args):
        self.queue.put((kind, args))

    def wait(self, kind, timeout=5.0, where=lambda args: True):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.queue.get(timeout=0.05)
            except queue.Empty:
                continue
            self.seen.append(event)
            if event[0] == kind and where(event[1]):
                return event[1]
        raise AssertionError("no %r event; saw %r" % (
            kind, [k for k, _ in self.seen[-10:]]))

    def count(self, kind):
        while not self.queue.empty():
            self.seen.append(self.queue.get())
        return sum(1 for k, _ in self.seen if k == kind)


@pytest.fixture
def sim():
    with Simulator(push_interval=0.1) as device:
        yield device


@pytest.fixture
def link_to(pb):
    links = []

    def start(sim, **options):
        options = dict(dict(reconnect_delay=0.1, reconnect_max_delay=2.0,
                            link_timeout=2.0, keepalive_interval=0.5,
                            connect_timeout=1.0), **options)
        events = Events()
        link = pb.DeviceLink(sim.url, events, pb.LinkOptions(**options))
        link.start()
        links.append(link)
        return link, events
    yield start
    for link in links:
        link.close()
        link.thread.join(timeout=5)
        assert not link.thread.is_alive()


def test_link_reports_snapshot_then_readings(sim, link_to):
    link, events = link_to(sim)
    settings, = events.wait("up")
    assert settings["fw_version"] == "V1.0.3"
    update = events.wait("update", where=lambda a: "warehouse_temper" in a[0])
    assert update[0]["warehouse_temper"] == round(sim.state()["sensor_temp"])


def test_frames_sent_from_another_thread_reach_the_device(sim, link_to):
    link, events = link_to(sim)
    events.wait("up")
    link.send(['{"settings": {"set_temp": 33}}'])
    sim.wait_for(lambda s: s["set_temp"] == 33)


def test_close_delivers_final_frames_then_ends_the_thread(sim, link_to):
    link, events = link_to(sim)
    events.wait("up")
    sim.press(work_on=True, work_mode=2)
    link.close(['{"settings": {"work_on": false}}'])
    link.thread.join(timeout=5)
    assert not sim.state()["work_on"]


def test_retries_at_once_after_losing_a_working_link(sim, link_to):
    # A rebooting device is back within seconds: no back-off gaps then.
    link, events = link_to(sim, reconnect_delay=0.1, reconnect_max_delay=5.)
    events.wait("up")
    sim.set_fault("refuse", True)
    sim.drop_all()
    events.wait("down")
    time.sleep(2.0)
    retries = events.count("down") - 1
    # Doubling from 0.1 s would allow 4 retries in 2 s; steady 0.1 s ~20.
    assert retries >= 8, retries
    sim.set_fault("refuse", False)
    events.wait("up")


def test_backs_off_for_a_device_that_never_answered(pb, link_to):
    with Simulator() as sim:
        port = sim.port
    events = Events()
    link = pb.DeviceLink("ws://127.0.0.1:%d/ws" % (port,), events,
                         pb.LinkOptions(reconnect_delay=0.1,
                                        reconnect_max_delay=5.))
    link.start()
    try:
        time.sleep(2.0)
        assert 2 <= events.count("down") <= 6
    finally:
        link.close()
        link.thread.join(timeout=5)


def test_flood_is_read_slowly_without_losing_frames_or_the_link(sim,
                                                                link_to,
                                                                pb):
    link, events = link_to(sim, link_timeout=4.0)
    events.wait("up")
    batch = [json.dumps({"settings": {"filtertemp": n}}) for n in range(50)]
    for _ in range(pb.MAX_FRAME_RATE // len(batch) + 2):
        sim.send(*batch)    # within the simulator's per-client queue
    sim.send(json.dumps({"settings": {"warehouse_temper": 33}}))
    events.wait("error", where=lambda a: a[0] == "flood")
    events.wait("update", where=lambda a: a[0].get("warehouse_temper") == 33)
    assert events.count("down") == 0, [a for k, a in events.seen
                                       if k == "down"]
