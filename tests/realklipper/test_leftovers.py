"""No process outlives a test session, whatever fails (tests/leaks.py).

Each test runs a small pytest session of its own, as the suite runs
(with tests/leaks.py's hooks, under xdist or not), and then looks for
any process that session started:
- Klipper refusing to start in a module-scoped fixture that starts it
  before its yield (as test_device_faults.py's `rig` once did): the U1
  fork refusing a module without set_read_tolerance, upstream one
  without setup_minmax.  Nothing of it may be left running.
- a test that starts klippy and its MCU and never stops them: the
  session's sweep must kill both, name them and the test, and fail."""
import json
import os
import secrets
import subprocess
import sys
import textwrap

import leaks
import pytest
from chamber import chamber_config

from realklipper.edited import module_source, tree_with_module, without_method
from realklipper.trees import ROOT

INNER = textwrap.dedent('''\
    import json
    import os

    import pytest
    from realklipper.printer import Printer

    SETUP = json.loads(os.environ["LEFTOVER_SETUP"])


    def note(p):
        with open(SETUP["pids"], "a") as f:
            for proc in (p.mcu, p.klippy):
                if proc is not None:
                    f.write("%d\\n" % proc.pid)


    @pytest.fixture(scope="module")
    def klipper(tmp_path_factory):
        # started before the yield, as the rig fixture did
        p = Printer(SETUP["tree"], SETUP["name"], SETUP["config"],
                    tmp_path_factory.mktemp("klipper"))
        try:
            p.start()
        finally:
            note(p)
        yield p
        p.stop()


    def test_needs_klipper(klipper):
        assert klipper.status("panda_breath")


    def test_forgets_to_stop_klipper(tmp_path):
        p = Printer(SETUP["tree"], SETUP["name"], "", tmp_path)
        p.start()
        note(p)
''')
# the module without a method the tree's heater calls at start-up
REFUSED = {"u1": "set_read_tolerance", "upstream": "setup_minmax"}


def inner_session(tmp_path, setup, test, xdist):
    """Run one test of INNER in a pytest session of its own; return
    (its result, the pids it noted, the token its processes carry)."""
    (tmp_path / "test_inner.py").write_text(INNER)
    setup = dict(setup, pids=str(tmp_path / "pids"))
    token = "leftover-test-" + secrets.token_hex(4)
    env = dict(os.environ, LEFTOVER_SETUP=json.dumps(setup),
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    env[leaks.RUN] = "%s %s" % (env.get(leaks.RUN, ""), token)
    env.pop(leaks.NODE, None)
    cmd = [sys.executable, "-m", "pytest", "-p", "leaks", "-p",
           "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
           "-c", os.devnull, "test_inner.py::" + test]
    cmd += ["-n", "1"] if xdist else ["-p", "no:xdist"]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=180)
    pids_file = tmp_path / "pids"
    pids = [int(line) for line in pids_file.read_text().split()] \
        if pids_file.exists() else []
    return run, pids, token


def gone(pid):
    try:
        with open("/proc/%d/stat" % (pid,)) as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


@pytest.mark.slow
@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_klipper_that_refuses_to_start_leaves_no_process(
        klipper_tree, tmp_path, xdist):
    name, tree = klipper_tree
    method = REFUSED[name]
    edited = tree_with_module(tree, tmp_path / "tree", without_method(
        module_source(), method))
    run, pids, token = inner_session(
        tmp_path, {"tree": str(edited), "name": name,
                   "config": chamber_config(9)}, "test_needs_klipper", xdist)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    # Klipper refused the module...
    assert "StartupError" in output and method in output, output
    # ...and nothing it started is left, nor needed the session's sweep
    assert len(pids) == 2, output
    assert all(gone(pid) for pid in pids), pids
    assert "leftover processes" not in output, output
    assert leaks.tagged(token) == []


@pytest.mark.slow
@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_a_process_a_test_leaves_is_killed_and_fails_the_session(
        klipper_tree, tmp_path, xdist):
    name, tree = klipper_tree
    run, pids, token = inner_session(
        tmp_path, {"tree": str(tree), "name": name, "config": ""},
        "test_forgets_to_stop_klipper", xdist)
    output = run.stdout + run.stderr
    assert len(pids) == 2, output
    # the test itself passed; the session fails for what it left
    assert run.returncode == 1, output
    assert "leftover processes" in output
    assert "the test session left 2 processes running; killed now" \
        in output, output
    for pid in pids:
        assert "pid %d " % (pid,) in output
    assert "klipper.elf" in output and "klippy.py" in output
    assert "test_inner.py::test_forgets_to_stop_klipper" in output
    assert all(gone(pid) for pid in pids), pids
    assert leaks.tagged(token) == []
