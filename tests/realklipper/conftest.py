"""Fixtures that run the module inside real Klipper, on both trees.

Each test gets the simulator (`sim`; options from a `sim` marker, e.g.
@pytest.mark.sim(speed=30)) and a `printer` factory that starts klippy and
its Linux host MCU with the chamber config pointed at it.  At the end of a
test every printer is stopped and checked: the reactor was never held
longer than STALL_LIMIT, and klippy wrote no traceback."""
import pytest
from chamber import FAST, chamber_config
from moonraker_endpoint import MoonrakerEndpoint

from realklipper import trees
from realklipper.printer import Printer, tracebacks
from simulator import Simulator

# Lateness of a 10 ms reactor timer (tests/realklipper/extras/
# reactor_probe.py).  Blocking work on the reactor thread (a connect or
# handshake with a 1 s timeout, a DNS lookup) shows as hundreds of ms;
# Klipper's own start-up work and a busy shared machine stay well below.
STALL_LIMIT = 0.100
# Where the trees differ in ways the module can feel (see
# ../shared/klipper/README.md): seconds until Klipper counts a reading
# stale, and the max_duration of heater pins.
STALE_TIME = {"upstream": 7.0, "u1": 10.0}
MAX_DURATION = {"upstream": 3.0, "u1": 7.0}


@pytest.fixture(scope="session", params=trees.TREES)
def klipper_tree(request):
    return request.param, trees.need("klipper", request.param)


@pytest.fixture
def sim(request):
    options = {"push_interval": 0.1, "reboot_delay": 0.3}
    marker = request.node.get_closest_marker("sim")
    if marker is not None:
        options.update(marker.kwargs)
    # Factory defaults are work_on true in auto mode; start from "off".
    with Simulator(**options) as device:
        device.press(work_on=False)
        yield device


@pytest.fixture
def moonraker_endpoint():
    """A Moonraker-like endpoint on loopback for a bound device to poll;
    set its bed_target."""
    with MoonrakerEndpoint() as endpoint:
        yield endpoint


def check_printer(p):
    """Stop p; assert klippy wrote no traceback and the module never
    held the reactor longer than STALL_LIMIT."""
    probe = None
    if p.api is not None and not p.api.closed.is_set():
        probe = p.status("reactor_probe")
    p.stop()
    assert not tracebacks(p.log()), tracebacks(p.log())
    assert not tracebacks(p.stderr()), tracebacks(p.stderr())
    if probe is not None:
        assert probe["max_late"] < STALL_LIMIT, probe


@pytest.fixture
def printer(klipper_tree, sim, tmp_path):
    """start(config=None, options=FAST, ready=True, check=True,
    connect=True, wrap=(), **chamber_kw) -> a started Printer; config
    replaces the chamber config; connect waits for the link; check=False
    skips the end-of-test checks (for expected start-up errors)."""
    name, tree = klipper_tree
    started = []

    def start(config=None, options=FAST, ready=True, check=True,
              connect=True, wrap=(), **kw):
        if config is None:
            config = chamber_config(sim.port, options=options, **kw)
        p = Printer(tree, name, config, tmp_path / ("run%d" % len(started)),
                    wrap=wrap)
        p.checked = check
        started.append(p)
        p.start(ready=ready)
        if ready and check and connect:
            p.wait_for(lambda: p.status("panda_breath")["connected"])
            sim.clear_frames()
        return p
    yield start
    for p in started:
        if p.checked:
            check_printer(p)
        else:
            p.stop()
