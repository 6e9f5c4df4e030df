"""No process outlives a test run (tests/leaks.py): the sweep finds what
carries a run's token, kills it and says so, and `./build.sh test` fails
a run that left one.  (A pytest session's own sweep, with real Klipper:
tests/realklipper/test_leftovers.py.)"""
import os
import pathlib
import secrets
import subprocess
import sys
import time

import leaks

ROOT = pathlib.Path(__file__).resolve().parents[1]


def running(pid):
    try:
        with open("/proc/%d/stat" % (pid,)) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def start(cmd, token=None):
    env = dict(os.environ)
    if token is not None:
        env[leaks.RUN] = "%s %s" % (env.get(leaks.RUN, ""), token)
    return subprocess.Popen(cmd, env=env, start_new_session=True)


def test_the_sweep_kills_and_names_what_carries_the_token():
    token = "test-" + secrets.token_hex(4)
    mine = start(["sleep", "300"], token)
    other = start(["sleep", "301"])
    try:
        run = subprocess.run([sys.executable, str(ROOT / "tests/leaks.py"),
                              token, "the example run"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 1, run.stderr
        assert "the example run left 1 process running" in run.stderr
        assert "pid %d" % (mine.pid,) in run.stderr
        assert "sleep 300" in run.stderr
        assert mine.wait(5) == -9
        assert running(other.pid)
        # nothing left: a clean run
        again = subprocess.run([sys.executable, str(ROOT / "tests/leaks.py"),
                                token], capture_output=True, text=True,
                               timeout=60)
        assert again.returncode == 0 and again.stderr == ""
    finally:
        for proc in (mine, other):
            proc.kill()
            proc.wait()


def guarded(script):
    """Run script in bash after build.sh's leftover_guard, as `./build.sh
    test` runs its stages."""
    return subprocess.run(
        ["bash", "-c", ". ./build.sh && leftover_guard test && { %s; }"
         % (script,)],
        cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_build_sh_fails_a_run_that_leaves_a_process_and_kills_it():
    run = guarded('sleep 300 >/dev/null 2>&1 & echo "$!"; exit 0')
    pid = int(run.stdout.split()[0])
    assert run.returncode == 1, run.stderr
    assert "./build.sh test left 1 process running" in run.stderr
    assert "sleep 300" in run.stderr
    deadline = time.monotonic() + 5
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(pid)


def test_build_sh_keeps_its_status_when_nothing_is_left():
    assert guarded("exit 0").returncode == 0
    failed = guarded("exit 3")
    assert failed.returncode == 3 and "left" not in failed.stderr
