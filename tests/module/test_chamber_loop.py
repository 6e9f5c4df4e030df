"""ChamberLoop on its own, closing the loop through the simulator's
device: its firmware's thermostat and thermal model, stepped in device
time (hours in a second or two), for enclosures smaller, larger and
leakier than the default."""
import pytest

from simulator import thermal
from simulator.device import Device
from simulator.profiles import get_profile

INTERVAL = 60.0
STEP = 1.0


def run(pb, target, minutes, monkeypatch, **plant):
    """Warm up from the room and hold: ([(minute, chamber, setpoint)],
    setpoint writes, the loop)."""
    for name, value in plant.items():
        monkeypatch.setattr(thermal, name, value)
    device = Device(get_profile("1.0.3"))
    loop = pb.ChamberLoop(INTERVAL)
    setpoint = 60       # what the module sends before the first reading
    device.press(work_on=True, work_mode=2, set_temp=setpoint)
    trace, writes, t = [], 0, 0.0
    while t < minutes * 60:
        device.advance(STEP)
        t += STEP
        chamber = device.thermal.chamber
        new = loop.update(t, chamber, target)
        if new != setpoint:
            setpoint, writes = new, writes + 1
            device.receive({"settings": {"set_temp": setpoint}})
        trace.append((t / 60, chamber, setpoint))
    return trace, writes, loop


PLANTS = {
    "default": {},
    "twice the mass": {"CHAMBER_CAPACITY": 10000.0},
    "half the mass": {"CHAMBER_CAPACITY": 2500.0},
    "well insulated": {"CHAMBER_LOSS": 2.0},
    "leaky": {"CHAMBER_LOSS": 7.2},
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
@pytest.mark.parametrize("target", [40, 45, 50])
def test_the_chamber_settles_at_the_target(pb, monkeypatch, plant, target):
    trace, writes, _ = run(pb, target, 150, monkeypatch, **PLANTS[plant])
    arrived = next(m for m, chamber, _ in trace if chamber >= target - 1.0)
    assert arrived < 60
    held = [chamber for m, chamber, _ in trace if m > arrived + 20]
    assert target - 1.0 <= min(held) and max(held) <= target + 1.0, (
        min(held), max(held))
    # flat out at first, never above 60 nor under the target
    setpoints = [s for _, _, s in trace]
    assert setpoints[0] == 60
    assert max(setpoints) <= 60 and min(setpoints) >= target
    # each write goes to the device's flash: at most one a minute while
    # holding, far fewer here
    late = [s for m, _, s in trace if m > arrived + 20]
    moves = sum(1 for a, b in zip(late, late[1:], strict=False)
                if a != b)
    assert moves <= len(late) / 60 / 2


def test_an_unreachable_target_is_seen_as_a_stall(pb, monkeypatch):
    _, _, loop = run(pb, 58, 60, monkeypatch)
    stalled = loop.stalled(58)
    assert stalled is not None and 52 < stalled < 55
    assert loop.setpoint == 60


def test_a_reachable_target_is_no_stall(pb, monkeypatch):
    _, _, loop = run(pb, 45, 60, monkeypatch)
    assert loop.stalled(45) is None


def test_a_frozen_low_reading_does_not_grow_the_learned_gap(pb):
    """A sensor stuck far under the target pushes the device to its
    maximum, as warming does, but learns nothing from it: when it reads
    again the loop is where it was."""
    loop = pb.ChamberLoop(INTERVAL)
    gap = loop.gap
    for minute in range(600):
        setpoint = loop.update(minute * 60.0, 30.0, 45)
    assert setpoint == 60 and loop.gap == gap
