"""The bench and the soak still run end to end (short runs).

No timing is asserted here: whether a figure meets its target is the
bench's own verdict (its exit status), checked by `./build.sh bench`."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
FIGURES = {
    "command_latency", "telemetry_latency", "telemetry_owner",
    "stall_normal", "stall_unreachable", "stall_dns", "stall_no_upgrade",
    "stall_half_open", "stall_flood", "reconnect", "silent_link",
    "cpu_alone", "cpu_idle", "cpu_ratio", "rss_growth", "fd_change",
    "thread_change", "chamber_time_plain", "chamber_error_plain",
    "setpoint_writes_plain", "chamber_time_loop", "chamber_error_loop",
    "setpoint_writes_loop", "cpu_chamber_ratio"}
# A quick run is too short for these to have a value: the chamber may
# not arrive, nor hold long enough to count writes.
MAY_BE_EMPTY = {"chamber_time_plain", "chamber_time_loop",
                "setpoint_writes_plain", "setpoint_writes_loop"}
pytestmark = pytest.mark.usefixtures("bench_klipper")
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
    # 1 is a missed target: a verdict, not a failure of the bench
    assert run.returncode in (0, 1), run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["trees"]) == ["upstream"]
    figures = {f["key"]: f for f in report["trees"]["upstream"]}
    assert FIGURES <= set(figures) <= FIGURES | OPTIONAL
    for key, figure in figures.items():
        if key in MAY_BE_EMPTY:
            continue
        assert figure["samples"] > 0, key
        assert figure["max"] is not None, key
    assert report["machine"]["python"] == sys.version.split()[0]
    assert report["all_met"] == (run.returncode == 0)
    md = (tmp_path / "report.md").read_text()
    for figure in figures.values():
        assert figure["title"] in md
        assert figure["title"] in run.stdout
    assert "Traceback" not in (tmp_path / "bench.log").read_text()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_short_soak_prints_its_summary(tmp_path):
    run = bench("--soak", "0.2", "--out", str(tmp_path), timeout=110)
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode in (0, 1), run.stderr
    assert "target change" in run.stdout
    assert ("soak passed" in run.stdout) == (run.returncode == 0)


def test_bad_arguments_get_a_message_not_a_traceback(tmp_path):
    run = bench("--soak", "-1", "--out", str(tmp_path), timeout=30)
    assert run.returncode == 2
    assert "bench: error: --soak" in run.stderr
    assert "Traceback" not in run.stderr

