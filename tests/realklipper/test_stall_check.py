"""The stall check holds the module to account, not the machine.

The check (check_printer at the end of every real-Klipper test, the
safety machine's rule 5, the soak) fails when the module's own code
keeps Klipper's reactor for STALL_LIMIT or longer: a copy of the module
that sleeps in a reactor callback fails it.  A busy machine does not:
klippy stopped from outside for longer than the limit, or sharing its
CPU with busy processes while a module callback runs, passes it.

None of these tests depends on how fast the machine is: the sleep and
the stops are 2 to 2.5 times the limit, and the busy-CPU test checks
that the CPU really was shared before it judges.  The busy-CPU test
keeps its busy processes to one CPU and to about a second, so tests
running beside it see no more than a busy machine."""
import collections
import os
import signal
import subprocess
import sys
import time

import pytest
from chamber import FAST, chamber_config

from realklipper.conftest import (
    HOLD_FIELDS,
    STALL_LIMIT,
    check_printer,
    stall_problem,
)
from realklipper.edited import (
    module_source,
    tree_with_module,
    with_stall_hook,
)

SLEEP = 2 * STALL_LIMIT
STOP = 2.5 * STALL_LIMIT
SPIN = 0.3 * STALL_LIMIT     # of the module's own CPU time
# Busy processes sharing klippy's CPU, klippy at a lower priority (nice)
# than they: it gets about a twentieth of the CPU while they run, and
# the rest of the machine sees no more than two extra busy processes.
HOGS = 2
NICE = 10


@pytest.fixture
def stalling(klipper_tree, tmp_path):
    """(tree, flag): a copy of the built tree whose module's reactor
    callbacks stall once the flag file is written (edited.STALL_HOOK)."""
    _, tree = klipper_tree
    source, hooked = with_stall_hook(module_source())
    assert hooked, "no reactor callback found in the module"
    return (tree_with_module(tree, tmp_path / "tree", source),
            tmp_path / "stall")


def stall(p, flag, how, seconds):
    """Have the next module callback stall; wait until one did."""
    part = flag.with_suffix(".part")
    part.write_text("%s %r\n" % (how, seconds))
    os.replace(part, flag)
    # readings (async callbacks) and status queries (get_status) call
    # the module all the time
    p.wait_for(lambda: not flag.exists() and p.status("panda_breath"),
               timeout=30)


def probe(p):
    return p.status("reactor_probe", HOLD_FIELDS + ["samples"])


def test_a_module_that_sleeps_in_a_callback_fails_the_check(
        printer, stalling):
    tree, flag = stalling
    p = printer(tree=tree, env={"PANDA_TEST_STALL": str(flag)},
                check=False)
    assert stall_problem(probe(p)) is None
    stall(p, flag, "sleep", SLEEP)
    status = probe(p)
    assert status["module_hold_max"] >= STALL_LIMIT, status
    assert "held the reactor" in stall_problem(status)
    with pytest.raises(AssertionError, match="held the reactor"):
        check_printer(p)


CAVITY = """
[temperature_sensor cavity]
sensor_type: temperature_host
sensor_path: {path}
min_temp: -40
max_temp: 120
"""


def test_a_module_that_sleeps_in_a_sensor_callback_fails_the_check(
        printer, sim, klipper_tree, tmp_path):
    # The module's code Klipper runs from another sensor's readings
    # (a callback handed to its setup_callback) counts as the module's.
    _, built = klipper_tree
    source, hooked = with_stall_hook(module_source(), ("setup_callback",))
    assert hooked, "the module hooks no Klipper sensor"
    tree = tree_with_module(built, tmp_path / "tree", source)
    flag = tmp_path / "stall"
    reading = tmp_path / "cavity"
    reading.write_text("%7d\n" % (30000,))
    config = CAVITY.format(path=reading) + chamber_config(
        sim.port, options=dict(FAST, chamber_sensor="temperature_sensor"
                               " cavity"))
    p = printer(config=config, tree=tree, check=False,
                env={"PANDA_TEST_STALL": str(flag)})
    stall(p, flag, "sleep", SLEEP)
    status = probe(p)
    assert status["module_hold_max"] >= STALL_LIMIT, status
    with pytest.raises(AssertionError, match="held the reactor"):
        check_printer(p)


def syscall(pid):
    """What klippy's main (reactor) thread is doing: the number of the
    system call it waits in, or 'running'."""
    with open("/proc/%d/task/%d/syscall" % (pid, pid)) as f:
        return f.read().split()[0]


def state(pid):
    with open("/proc/%d/stat" % (pid,)) as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2]


def stop_while_idle(pid, seconds):
    """SIGSTOP klippy for seconds at a moment its reactor thread waits
    for work (not inside any callback), as a machine that gives it no
    CPU for that long does."""
    seen = collections.Counter()
    for _ in range(50):
        seen[syscall(pid)] += 1
        time.sleep(0.002)
    idle = seen.most_common(1)[0][0]    # the reactor's poll
    assert idle != "running", seen
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if syscall(pid) == idle:
            os.kill(pid, signal.SIGSTOP)
            try:
                while state(pid) != "T":
                    time.sleep(0.0005)
                if syscall(pid) == idle:
                    time.sleep(seconds)
                    return
            finally:
                os.kill(pid, signal.SIGCONT)
        time.sleep(0.003)
    raise AssertionError("klippy's reactor was never seen waiting")


def test_klippy_stopped_by_the_machine_passes_the_check(printer):
    p = printer()
    for target in (40, 0, 45):
        p.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=%d"
                % (target,))
        stop_while_idle(p.klippy.pid, STOP)
    status = probe(p)
    # the reactor ran late by the whole stop...
    assert status["max_late"] >= STOP * 0.9, status
    # ...and none of it was the module's
    assert stall_problem(status) is None, status
    assert status["module_calls"] > 0


class SharedCPU:
    """klippy's threads and HOGS busy processes on one CPU, each process
    in a session (and so a scheduler autogroup) of its own; klippy's
    threads and autogroup at nice NICE (for good: its test ends with
    it)."""

    def __init__(self, pid):
        self.pid = pid
        self.cpu = max(os.sched_getaffinity(0))
        self.saved = {}
        self.hogs = []

    def __enter__(self):
        for name in os.listdir("/proc/%d/task" % (self.pid,)):
            tid = int(name)
            self.saved[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, {self.cpu})
            os.setpriority(os.PRIO_PROCESS, tid, max(
                NICE, os.getpriority(os.PRIO_PROCESS, tid)))
        # with scheduler autogroups, klippy's session shares the CPU with
        # the others' as a whole: lower its nice too
        autogroup = "/proc/%d/autogroup" % (self.pid,)
        if os.path.exists(autogroup):
            with open(autogroup, "w") as f:
                f.write("%d\n" % (NICE,))
        for _ in range(HOGS):
            hog = subprocess.Popen(
                [sys.executable, "-c", "while True: pass"],
                start_new_session=True)
            self.hogs.append(hog)
            os.sched_setaffinity(hog.pid, {self.cpu})
        time.sleep(0.2)     # all of them running
        return self

    def __exit__(self, *exc):
        for hog in self.hogs:
            hog.kill()
            hog.wait()
        everywhere = os.sched_getaffinity(0)
        for name in os.listdir("/proc/%d/task" % (self.pid,)):
            try:
                os.sched_setaffinity(int(name), self.saved.get(
                    int(name), everywhere))
            except OSError:
                pass    # a thread that ended


def test_a_callback_sharing_a_busy_cpu_is_charged_its_own_time(
        printer, stalling):
    tree, flag = stalling
    p = printer(tree=tree, env={"PANDA_TEST_STALL": str(flag)})
    for _ in range(5):
        with SharedCPU(p.klippy.pid):
            stall(p, flag, "spin", SPIN)
        status = probe(p)
        if status["module_wall_max"] >= STALL_LIMIT:
            break
    # the CPU was shared: the callback took longer than the limit...
    assert status["module_wall_max"] >= STALL_LIMIT, status
    # ...but the module kept the reactor only for its own CPU time
    assert SPIN <= status["module_hold_max"] < STALL_LIMIT, status
    assert stall_problem(status) is None
