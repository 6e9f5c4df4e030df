"""DeviceLink on its own: the connection thread against the simulator,
with no Klipper around it."""
import json
import queue
import socket
import threading
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


def test_an_unchanged_reading_is_news_once_a_second_a_change_at_once(
        sim, link_to, pb):
    link, events = link_to(sim)
    events.wait("update", where=lambda a: "warehouse_temper" in a[0])
    before = events.count("update")
    time.sleep(2.0)     # about 20 pushes of the same ambient degree
    repeats = events.count("update") - before
    least = pb.REPORT_TIME - pb.PUSH_TIME / 2
    assert 1 <= repeats <= 2.0 / least + 1, repeats
    sim.send(json.dumps({"settings": {"warehouse_temper": 33}}))
    events.wait("update", where=lambda a: a[0] == {"warehouse_temper": 33})
    # a throttle that let one reading a second through would have lost it
    update = events.wait("update")
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


def test_retries_at_once_after_losing_a_working_link(sim, link_to, pb,
                                                    monkeypatch):
    # A rebooting device is back within seconds: no back-off gaps then.
    monkeypatch.setattr(pb, "STABLE_LINK_TIME", 0.3)
    link, events = link_to(sim, reconnect_delay=0.1, reconnect_max_delay=5.)
    events.wait("up")
    time.sleep(0.5)     # a working link, not a flapping one
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


def test_backs_off_for_a_device_that_keeps_dropping_the_link(sim, link_to):
    link, events = link_to(sim, reconnect_delay=0.1, reconnect_max_delay=5.)
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        sim.drop_all()
        time.sleep(0.02)
    # Each link dies within a moment of coming up: doubling from 0.1 s
    # allows 5 attempts in 3 s; retrying at once would be 20 or more.
    assert 1 <= events.count("up") <= 8, events.count("up")


@pytest.mark.parametrize("extra", ["nothing", "binary"])
def test_link_drops_when_pushes_stop_though_pings_are_answered(
        sim, link_to, extra):
    link, events = link_to(sim, link_timeout=2.0, keepalive_interval=0.3)
    events.wait("up")
    sim.set_fault("mute", True)
    stop = threading.Event()

    def send_binary():
        while not stop.wait(0.3):
            sim.send(b"\x00")
    if extra == "binary":
        threading.Thread(target=send_binary, daemon=True).start()
    try:
        reason, = events.wait("down", timeout=10.0)
    finally:
        stop.set()
    assert "no reading" in reason
    sim.set_fault("mute", False)
    events.wait("up", timeout=10.0)


def test_text_frame_with_bad_utf8_is_read_not_fatal(sim, link_to):
    link, events = link_to(sim)
    events.wait("up")
    sim.send_text_bytes(b'{"settings": {"warehouse_temper": 41},'
                        b' "note": "\xff\xfe"}')
    events.wait("update", where=lambda a: a[0].get("warehouse_temper") == 41)
    assert events.count("down") == 0


@pytest.fixture
def blackhole():
    """A port whose listen backlog is full: connects hang in SYN_SENT."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        fillers.append(sock)
    yield "ws://127.0.0.1:%d/ws" % (port,)
    for sock in fillers + [listener]:
        sock.close()


def stop_and_check_silence(link, events):
    """Stop the link; no event may follow close() returning."""
    link.close()
    seen = events.count("up") + events.count("down") + events.count("error")
    assert link.stop(timeout=1.0)
    time.sleep(0.2)
    assert (events.count("up") + events.count("down")
            + events.count("error")) == seen


def test_stop_interrupts_a_connect_to_a_blackhole(pb, blackhole):
    events = Events()
    link = pb.DeviceLink(blackhole, events,
                         pb.LinkOptions(connect_timeout=30.))
    link.start()
    time.sleep(0.3)
    stop_and_check_silence(link, events)


@pytest.mark.parametrize("fault", ["half_open", "no_upgrade"])
def test_stop_interrupts_a_hanging_handshake(pb, sim, fault):
    sim.set_fault(fault, True)
    events = Events()
    link = pb.DeviceLink(sim.url, events,
                         pb.LinkOptions(connect_timeout=30.))
    link.start()
    sim.wait_for(lambda s: len(sim.server.sessions) == 1)
    stop_and_check_silence(link, events)


def test_stop_while_refused_is_quiet(pb, sim):
    sim.set_fault("refuse", True)
    events = Events()
    link = pb.DeviceLink(sim.url, events,
                         pb.LinkOptions(reconnect_delay=0.1))
    link.start()
    events.wait("down")
    stop_and_check_silence(link, events)


def test_frames_handed_to_close_while_the_link_is_down_are_sent(pb, sim):
    sim.set_fault("refuse", True)
    events = Events()
    link = pb.DeviceLink(sim.url, events,
                         pb.LinkOptions(reconnect_delay=5.))
    link.start()
    events.wait("down")
    sim.set_fault("refuse", False)
    sim.press(work_on=True, work_mode=2)
    assert link.stop(['{"settings": {"work_on": false}}'])
    assert not sim.state()["work_on"]


def test_the_bench_reboots_a_link_past_its_flapping_window(pb):
    """The bench's reboot figure measures a working link, not flapping."""
    from bench import figures
    assert figures.STABLE_LINK == pb.STABLE_LINK_TIME
