import importlib.util
import pathlib

import pytest
from chamber import STALL_LIMIT, STARTUP_STALL_LIMIT, start_chamber

from simulator import Simulator

EXTRAS = pathlib.Path(__file__).resolve().parents[2] / "klipper" / "extras"


@pytest.fixture(scope="session")
def pb():
    """The module as Klipper would import it, without a Klipper host."""
    spec = importlib.util.spec_from_file_location(
        "panda_breath_under_test", EXTRAS / "panda_breath.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def make_printer():
    """make(prepare=None, extra="", **sim_options) -> (klippy, sim): a
    simulator switched off (after prepare(sim), if given) and Klipper
    connected to it; both stopped, and the stall limits checked, at the
    end of the test."""
    sims, started = [], []

    def make(prepare=None, extra="", **sim_options):
        sim_options.setdefault("push_interval", 0.1)
        sim_options.setdefault("reboot_delay", 0.3)
        sim = Simulator(**sim_options).start()
        sims.append(sim)
        if prepare is not None:
            prepare(sim)
        sim.press(work_on=False)
        k = start_chamber(sim, extra=extra)
        started.append(k)
        sim.clear_frames()
        return k, sim
    yield make
    for k in started:
        k.stop()
        assert k.stall.max < STALL_LIMIT, (k.stall.worst, k.stall.max)
        assert k.stall.startup_max < STARTUP_STALL_LIMIT
    for sim in sims:
        sim.stop()
