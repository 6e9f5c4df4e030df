"""The chamber: how far the true chamber air sits under the device's
reading (the field figures in protocol.md, driven in device time), the
file it is written to for Klipper's temperature_host, and its faults."""

import os
import threading
import time

import pytest
from wire import deliver

from simulator import Simulator
from simulator.chamber_file import SIZE, ChamberFile, render
from simulator.device import Device
from simulator.profiles import get_profile


def heat(target, seconds, ambient=25.0):
    """Always-on at target from a cold start: the device and one sample
    (clock, reading, sensor node, chamber) per device second."""
    dev = Device(get_profile("1.0.3"), ambient=ambient)
    dev.receive({"settings": {"work_on": True, "work_mode": 2,
                              "set_temp": target}})
    samples = []
    for _ in range(int(seconds)):
        dev.advance(1.0)
        samples.append((dev.clock_ms / 1000.0, int(dev.chamber_reading()),
                        dev.thermal.sensor, dev.thermal.chamber))
    return dev, samples


def steady(samples, last=1800):
    """Mean reading, chamber and gap over the last `last` seconds."""
    tail = samples[-last:]
    reading = sum(s[2] for s in tail) / len(tail)
    chamber = sum(s[3] for s in tail) / len(tail)
    return reading, chamber, reading - chamber


def test_steady_chamber_is_about_6_under_a_55_reading():
    _, samples = heat(55, 2 * 3600)
    reading, chamber, gap = steady(samples)
    assert 54.5 <= reading <= 55.5
    assert 47.5 <= chamber <= 50.5  # U1 owners: 46-50 at a held 55
    assert 4 <= gap <= 7.5


def test_at_the_60_cap_the_chamber_settles_53_to_55():
    _, samples = heat(60, 3 * 3600)
    reading, chamber, gap = steady(samples)
    assert 59.5 <= reading <= 60.5
    assert 53 <= chamber <= 55  # X1C: 54 against 60
    # so a chamber target in the high 50s is out of reach
    assert max(s[3] for s in samples) < 56


def test_a_45_chamber_is_within_reach():
    _, samples = heat(60, 900)
    assert max(s[3] for s in samples) >= 45  # on the way up at the cap
    _, samples = heat(50, 2 * 3600)
    assert 44 <= steady(samples)[1] <= 47  # and held below it


def test_the_steady_gap_grows_with_temperature():
    gaps = [steady(heat(target, 2 * 3600)[1])[2] for target in (45, 55, 60)]
    assert gaps == sorted(gaps) and gaps[-1] - gaps[0] >= 1.5


def test_warming_up_the_gap_reaches_15_to_20():
    _, samples = heat(55, 1200)
    gaps = [(reading - chamber, clock)
            for clock, reading, _, chamber in samples]
    peak, when = max(gaps)
    assert 15 <= peak <= 20
    assert 180 <= when <= 480  # as the reading gets to 55
    reached = next(s for s in samples if s[1] >= 55)
    assert reached[1] - reached[3] >= 15
    assert max(gap for gap, _ in gaps[-60:]) <= 10  # closing after


def test_the_cavity_is_near_40_when_the_device_first_reads_60():
    _, samples = heat(60, 900)
    clock, _, _, chamber = next(s for s in samples if s[1] >= 60)
    assert 300 <= clock <= 600
    assert 39 <= chamber <= 46  # DragonBreath #99: 40 against 60


def test_extra_heat_warms_the_chamber_by_watts_over_its_loss():
    dev = Device(get_profile("1.0.3"))
    dev.receive({"settings": {"work_on": False}})
    dev.thermal.extra_watts = 36.0
    dev.advance(6 * 3600)
    assert 34 <= dev.thermal.chamber <= 35.2  # 25 + 36 W / 3.6 W/K
    assert not dev.relay


# -- the chamber file ------------------------------------------------------

def read(path):
    with open(path) as f:
        return f.read()


def celsius(text):
    return float(text) / 1000.0


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "chamber_temp")


def test_the_file_holds_millidegrees_at_a_fixed_width(make_sim, path):
    sim = make_sim(chamber_file=path)
    assert read(path) == "  25000\n"
    for value in (-40, -5.5, 0, 0.0004, 9.9995, 49.55, 100, 150, 200):
        sim.set_chamber(value)
        text = read(path)
        assert len(text) == SIZE and text.endswith("\n")
        assert celsius(text) == pytest.approx(value, abs=0.0006)
        assert sim.state()["chamber_temp"] == value


def test_render_never_changes_width():
    for value in (-1e9, -999.9995, -40, 0, 55.5555, 9999.9994, 1e9):
        assert len(render(value)) == SIZE
        float(render(value))


def test_the_file_is_written_before_start_and_kept_after_stop(path):
    sim = Simulator(port=0, chamber_file=path, ambient=18)
    try:
        assert read(path) == "  18000\n"
        sim.start()
        sim.set_chamber(30)
    finally:
        sim.stop()
    assert read(path) == "  30000\n"
    assert sim.chamber_file.closed


def test_the_file_follows_the_chamber_in_place(make_sim, path):
    with open(path, "w") as f:
        f.write("left by an earlier run, longer than ours\n")
    klipper = open(path)  # temperature_host opens once, at start-up
    try:
        inode = os.stat(path).st_ino
        sim = make_sim(chamber_file=path, speed=100)
        sim.set_chamber(60)  # the device is off: the chamber cools
        time.sleep(0.6)
        klipper.seek(0)
        seen = celsius(klipper.read())
        state = sim.state()
        assert seen < 60
        assert abs(seen - state["chamber_temp"]) < 1.0  # a tick behind
        assert os.stat(path).st_ino == inode  # never replaced
        assert os.stat(path).st_size == SIZE
    finally:
        klipper.close()


def test_the_file_is_written_about_four_times_a_second(make_sim, path):
    sim = make_sim(chamber_file=path, speed=50)
    first = sim.chamber_file.writes
    time.sleep(2.0)
    assert 4 <= sim.chamber_file.writes - first <= 10


def test_the_file_shows_the_chamber_not_the_device_reading(make_sim, path,
                                                           connect):
    sim = make_sim(chamber_file=path, speed=300)
    deliver(sim, connect(sim), {"settings": {
        "work_on": True, "work_mode": 2, "set_temp": 55}})
    state = sim.wait_for(lambda s: s["reading"] >= 55, timeout=5)
    time.sleep(0.3)
    assert celsius(read(path)) <= state["reading"] - 10


def test_a_concurrent_reader_never_sees_an_empty_or_partial_value(path):
    """Readers as temperature_host reads (one open file, seek(0), read())
    and with pread, against a writer flipping between values of every
    length as fast as it can."""
    writer = ChamberFile(path, 25.0)
    values = [-40.0, -5.0, 0.0, 7.0, 49.5, 123.456, 999.999]
    stop = threading.Event()
    bad = []
    reads = [0]

    def reader(use_pread):
        fd = os.open(path, os.O_RDONLY)
        f = open(path)
        try:
            while not stop.is_set():
                if use_pread:
                    text = os.pread(fd, 64, 0).decode()
                else:
                    f.seek(0)
                    text = f.read()
                reads[0] += 1
                try:
                    if len(text) != SIZE or float(text) / 1000 not in values \
                            and float(text) != 25000:
                        bad.append(text)
                except ValueError:
                    bad.append(text)
        finally:
            f.close()
            os.close(fd)

    threads = [threading.Thread(target=reader, args=(p,))
               for p in (False, True)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 1.5
        i = 0
        while time.monotonic() < deadline:
            writer.update(values[i % len(values)], 0.0, force=True)
            i += 1
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        writer.close()
    assert i > 1000 and reads[0] > 1000
    assert bad == []


def test_no_chamber_file_unless_asked(sim):
    state = sim.state()
    assert state["chamber_file"] is None
    assert state["chamber_file_fault"] is None
    with pytest.raises(ValueError, match="no chamber file"):
        sim.chamber_file_fault("freeze")


def test_a_bad_chamber_file_path_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="no such directory"):
        Simulator(chamber_file=str(tmp_path / "nowhere" / "temp"))
    with pytest.raises(ValueError, match="is a directory"):
        Simulator(chamber_file=str(tmp_path))


# -- faults and offsets ----------------------------------------------------

def test_freeze_stops_the_file_until_cleared(make_sim, path):
    sim = make_sim(chamber_file=path, speed=20)
    sim.set_chamber(40)
    sim.chamber_file_fault("freeze")
    assert sim.state()["chamber_file_fault"] == "freeze"
    sim.set_chamber(70)
    time.sleep(0.6)
    assert read(path) == "  40000\n"
    sim.chamber_file_fault(None)
    assert celsius(read(path)) > 65
    assert sim.state()["chamber_file_fault"] is None


def test_garbage_writes_a_non_number_once_and_holds_it(make_sim, path):
    sim = make_sim(chamber_file=path, speed=20)
    writes = sim.chamber_file.writes
    sim.chamber_file_fault("garbage")
    text = read(path)
    assert text == "garbage\n" and len(text) == SIZE
    with pytest.raises(ValueError):
        float(text)
    sim.set_chamber(30)
    time.sleep(0.6)
    assert read(path) == "garbage\n"
    assert sim.chamber_file.writes == writes + 1
    sim.chamber_file_fault(None)
    assert celsius(read(path)) == pytest.approx(30, abs=0.5)


def test_unknown_file_fault_is_refused(make_sim, path):
    sim = make_sim(chamber_file=path)
    with pytest.raises(ValueError, match="freeze"):
        sim.chamber_file_fault("melt")


def test_set_chamber_moves_the_air_and_the_device_feels_it(make_sim):
    sim = make_sim(speed=20)
    sim.set_chamber(45)
    state = sim.wait_for(lambda s: s["reading"] >= 40, timeout=5)
    assert state["chamber_temp"] < 45  # cooling back towards the room
    for bad in (-41, 201, float("nan"), "hot", True):
        with pytest.raises(ValueError):
            sim.set_chamber(bad)


def test_chamber_heat_warms_the_chamber_with_the_device_off(make_sim):
    sim = make_sim(speed=5000)
    sim.set_chamber_heat(72)  # 25 + 72 W / 3.6 W/K = 45
    state = sim.wait_for(lambda s: s["chamber_temp"] > 44, timeout=10)
    assert state["chamber_heat"] == 72 and not state["relay"]
    sim.set_chamber_heat(0)
    sim.wait_for(lambda s: s["chamber_temp"] < 30, timeout=10)
    with pytest.raises(ValueError):
        sim.set_chamber_heat(1e6)
