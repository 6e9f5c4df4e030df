"""The bench and the soak still run end to end (short runs).

No timing is asserted here: whether a timing figure meets its target is
the bench's own verdict (its exit status 1), checked by `./build.sh
bench`.  What must hold on any machine (the module never holding the
reactor, no leaked fd or thread, no traceback, the device as Klipper
wants) fails these tests."""
import json
import os
import subprocess
import sys

import pytest
from realklipper.conftest import STALL_LIMIT

from tests.bench.report import Figure, table
from tests.bench.soak import Verdict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
FIGURES = {
    "command_latency", "telemetry_latency", "telemetry_owner",
    "stall_normal", "stall_unreachable", "stall_dns", "stall_no_upgrade",
    "stall_half_open", "stall_flood", "reconnect", "silent_link",
    "cpu_alone", "cpu_idle", "cpu_ratio", "rss_growth", "fd_change",
    "thread_change", "hold_normal", "hold_faults", "chamber_time_plain",
    "chamber_error_plain", "setpoint_writes_plain", "chamber_time_loop",
    "chamber_error_loop", "setpoint_writes_loop", "cpu_chamber_ratio"}
# A quick run is too short for these to have a value: the chamber may
# not arrive, nor hold long enough to count writes.
MAY_BE_EMPTY = {"chamber_time_plain", "chamber_time_loop",
                "setpoint_writes_plain", "setpoint_writes_loop"}
pytestmark = pytest.mark.usefixtures("bench_klipper")
# What a quick run is too short to judge: a p99 of 10 samples, CPU over
# 1 s, RSS over 20 reconnects.
NOT_JUDGED = {"command_latency", "cpu_ratio", "rss_growth"}
# Measured once the simulator has its "mute" fault (pushes stop while
# pings are answered).
OPTIONAL = {"silent_link_mute"}


def bench(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "tests.bench", *args], cwd=ROOT,
        capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_bench_reports_every_figure_with_samples(tmp_path):
    # One tree keeps it short; `./build.sh bench --quick` runs both.
    run = bench("--quick", "--tree", "upstream", "--out", str(tmp_path))
    assert "Traceback" not in run.stderr, run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    figures = {f["key"]: f for f in report["trees"]["upstream"]}
    # 1 is a missed timing target: a verdict on this machine, not a
    # failure; a missed correctness target (3) is
    wrong = [f for f in figures.values()
             if f["kind"] == "correctness" and f["met"] is False]
    assert wrong == [] and report["correct"], wrong
    assert run.returncode in (0, 1), run.stdout + run.stderr
    assert list(report["trees"]) == ["upstream"]
    assert FIGURES <= set(figures) <= FIGURES | OPTIONAL
    for key, figure in figures.items():
        if key in MAY_BE_EMPTY:
            continue
        assert figure["samples"] > 0, key
        assert figure["max"] is not None, key
    # what a quick run cannot measure gets no verdict
    assert set(report["not_judged"]) == NOT_JUDGED
    for key in NOT_JUDGED:
        assert figures[key]["met"] is None and figures[key]["not_judged"]
    assert "not judged" in run.stdout
    assert report["machine"]["python"] == sys.version.split()[0]
    assert report["all_met"] == (run.returncode == 0)
    md = (tmp_path / "report.md").read_text()
    for figure in figures.values():
        assert figure["title"] in md
        assert figure["title"] in run.stdout
    assert "Traceback" not in (tmp_path / "bench.log").read_text()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_short_soak_is_correct_and_prints_its_summary(tmp_path):
    run = bench("--soak", "0.2", "--out", str(tmp_path), timeout=110)
    assert "Traceback" not in run.stderr, run.stderr
    verdict = json.loads((tmp_path / "soak.json").read_text())
    # Every correctness failure fails this test: an exception, a
    # traceback in klippy.log, the device not as Klipper wants, the
    # module holding the reactor.  Only a timing verdict (1: the reactor
    # ran late on a busy machine) may differ between machines.
    assert verdict["correctness"] == [], run.stdout
    assert run.returncode in (0, 1), run.stdout + run.stderr
    assert verdict["status"] == run.returncode
    assert (verdict["timing"] == []) == (run.returncode == 0)
    assert 0 < verdict["module_hold_max"] < STALL_LIMIT
    assert verdict["steps"] > 0 and verdict["counts"]["target change"] > 0
    assert "target change" in run.stdout
    assert ("soak passed" in run.stdout) == (run.returncode == 0)


@pytest.mark.parametrize("correctness,timing,status", [
    ([], [], 0), ([], ["late"], 1), (["traceback"], [], 3),
    (["traceback"], ["late"], 3)])
def test_soak_status_tells_correctness_from_timing(correctness, timing,
                                                   status):
    verdict = Verdict()
    verdict.correctness.extend(correctness)
    verdict.timing.extend(timing)
    assert verdict.status() == status


def test_bad_arguments_get_a_message_not_a_traceback(tmp_path):
    run = bench("--soak", "-1", "--out", str(tmp_path), timeout=30)
    assert run.returncode == 2
    assert "bench: error: --soak" in run.stderr
    assert "Traceback" not in run.stderr



def test_a_figure_gives_no_verdict_on_what_it_could_not_measure():
    short = Figure("x", "x", "ms", range(10), "p99", "<=", 100.)
    assert short.met() is None and "10 samples" in short.unjudged
    assert Figure("x", "x", "ms", range(100), "p99", "<=", 100.).met()
    brief = Figure("r", "r", "x", [3.], "total", "<=", 2., total=3.,
                   unjudged="1 s of each")
    assert brief.met() is None
    assert table({"t": [brief]})[1][-1] == "not judged"
    missed = Figure("r", "r", "x", [3.], "total", "<=", 2., total=3.)
    assert missed.met() is False
    assert table({"t": [missed]})[1][-1] == "MISSED (t)"
