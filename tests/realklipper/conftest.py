"""Fixtures that run the module inside real Klipper, on both trees.

Each test gets the simulator (`sim`; options from a `sim` marker, e.g.
@pytest.mark.sim(speed=30)) and a `printer` factory that starts klippy and
its Linux host MCU with the chamber config pointed at it.  At the end of a
test every printer is stopped and checked: the module never held the
reactor longer than STALL_LIMIT, and klippy wrote no traceback."""
import pytest
from chamber import FAST, chamber_config
from moonraker_endpoint import MoonrakerEndpoint

from realklipper import trees
from realklipper.printer import Printer, tracebacks
from simulator import Simulator

# The longest the module's own code may keep the reactor in one call
# (tests/realklipper/extras/reactor_probe.py: wall time in the module's
# callbacks, less run-queue waits and reactor pauses).  Blocking work on
# the reactor thread (a connect or handshake with a 1 s timeout, a DNS
# lookup, a sleep) counts in full and shows as hundreds of ms; a busy
# machine does not count.  The bench applies the same figure to the
# wall-clock lateness of a reactor timer, a timing verdict.
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


HOLD_FIELDS = ["instrumented", "module_hold_max", "module_hold_worst",
               "module_calls", "module_wall_max", "module_wall_worst",
               "max_late"]


def stall_problem(probe):
    """Why the reactor probe's status fails the stall check, or None."""
    if not probe["instrumented"]:
        return ("reactor_probe was loaded after the module: the module's"
                " callbacks were not measured")
    if probe["module_hold_max"] >= STALL_LIMIT:
        return ("the module held the reactor %.1f ms (limit %.0f ms) in"
                " %s; %d module calls, timer lateness max %.1f ms" % (
                    probe["module_hold_max"] * 1000., STALL_LIMIT * 1000.,
                    probe["module_hold_worst"], probe["module_calls"],
                    probe["max_late"] * 1000.))
    return None


def check_printer(p):
    """Stop p; assert klippy wrote no traceback and the module never
    held the reactor longer than STALL_LIMIT."""
    probe = None
    if p.api is not None and not p.api.closed.is_set():
        probe = p.status("reactor_probe", HOLD_FIELDS)
    p.stop()
    assert not tracebacks(p.log()), tracebacks(p.log())
    assert not tracebacks(p.stderr()), tracebacks(p.stderr())
    if probe is not None:
        problem = stall_problem(probe)
        assert problem is None, problem


@pytest.fixture
def printer(klipper_tree, sim, tmp_path):
    """start(config=None, options=FAST, ready=True, check=True,
    connect=True, wrap=(), tree=None, env=None, **chamber_kw) -> a
    started Printer; config replaces the chamber config; connect waits
    for the link; check=False skips the end-of-test checks (for expected
    start-up errors); tree replaces the built tree (a copy with an edited
    module, realklipper/edited.py); env adds to klippy's environment."""
    name, built = klipper_tree
    started = []

    def start(config=None, options=FAST, ready=True, check=True,
              connect=True, wrap=(), tree=None, env=None, **kw):
        if config is None:
            config = chamber_config(sim.port, options=options, **kw)
        p = Printer(tree or built, name, config,
                    tmp_path / ("run%d" % len(started)), wrap=wrap, env=env)
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
