"""Tests of the QEMU stage itself: its result marker, and that a failing,
crashing or hung guest fails the stage.  The boots use tiny payloads on the
real guest image (built once and cached), not the shipped scenario."""

import ast
import re
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import qemu_stage
import realparts
from qemu_stage import ROOT, StageError, parse_result, result_tag
from realklipper.edited import without_method

from package.build import build

RUN_SH = ROOT / "tests" / "qemu" / "run.sh"


# --- the marker parser --------------------------------------------------------

def test_marker_on_its_own_line_gives_the_exit_code():
    nonce = secrets.token_hex(16)
    console = (f"[    1.0] booting\r\nhello\r\n\r\n"
               f"PB-QEMU-RESULT {result_tag(nonce)} rc=3\r\n"
               f"[    2.0] reboot: Power down\r\n")
    assert parse_result(console, nonce) == 3
    assert parse_result(console.replace("rc=3", "rc=0"), nonce) == 0


def test_echoed_kernel_command_line_is_not_a_result():
    nonce = secrets.token_hex(16)
    tag = result_tag(nonce)
    console = "\n".join([
        # the kernel echoes its command line, nonce included
        f"[    0.000000] Kernel command line: console=ttyAMA0 panic=-1 "
        f"pb.nonce={nonce}",
        # even a command line that carried a whole marker line
        f"[    0.000000] Kernel command line: pb.nonce={nonce} "
        f"PB-QEMU-RESULT {tag} rc=0",
        # a shell tracing the line that prints the marker
        "+ printf '\\n%s %s rc=%d\\n' PB-QEMU-RESULT \"$tag\" \"$rc\"",
        f"+ echo PB-QEMU-RESULT {tag} rc=0",
        # a marker written out with the nonce instead of the tag
        f"PB-QEMU-RESULT {nonce} rc=0",
    ])
    assert parse_result(console, nonce) is None


def test_marker_from_another_boot_is_not_a_result():
    old, new = secrets.token_hex(16), secrets.token_hex(16)
    console = f"PB-QEMU-RESULT {result_tag(old)} rc=0\n"
    assert parse_result(console, old) == 0
    assert parse_result(console, new) is None


def test_marker_inside_a_longer_line_is_not_a_result():
    nonce = secrets.token_hex(16)
    tag = result_tag(nonce)
    for line in (f"x PB-QEMU-RESULT {tag} rc=0",
                 f"PB-QEMU-RESULT {tag} rc=0 x",
                 f"PB-QEMU-RESULT {tag} rc=",
                 f"PB-QEMU-RESULT {tag[:-1]} rc=0"):
        assert parse_result(line + "\n", nonce) is None, line


def test_tag_never_appears_in_the_nonce():
    for _ in range(50):
        nonce = secrets.token_hex(16)
        assert result_tag(nonce) not in nonce


# --- the shipped scenario's inputs --------------------------------------------

def test_scenario_without_packages_names_what_is_missing(tmp_path,
                                                         monkeypatch):
    monkeypatch.setattr(qemu_stage, "ROOT", tmp_path)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "python3-websocket_1.9.2-1_aarch64-3.10.ipk"
     ).write_bytes(b"")
    with pytest.raises(StageError) as e:
        qemu_stage.scenario_payload(tmp_path / "payload", tmp_path / "dist")
    assert "panda-breath_*.ipk" in str(e.value)
    assert "panda-breath-overlay-*.tar.gz" in str(e.value)
    assert "python3-websocket" not in str(e.value)


# --- what the stage starts ends with it ---------------------------------------

STAGE_CHILD = """\
import subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import qemu_stage
child = subprocess.Popen(["sleep", "300"], preexec_fn=qemu_stage.with_stage())
print(child.pid, flush=True)
time.sleep(300)
"""


def running(pid):
    try:
        stat = Path("/proc/%d/stat" % (pid,)).read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def test_qemu_and_the_simulator_end_with_a_killed_stage():
    # QEMU and the simulator are started with with_stage(): a stage that
    # is killed outright (a test's timeout) takes them with it.
    stage = subprocess.Popen(
        [sys.executable, "-c", STAGE_CHILD, str(ROOT / "tests" / "qemu")],
        stdout=subprocess.PIPE, text=True)
    try:
        child = int(stage.stdout.readline())
        assert running(child)
        stage.kill()
        stage.wait()
        deadline = time.monotonic() + 10
        while running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(child)
    finally:
        stage.kill()
        stage.wait()
        stage.stdout.close()


# --- the stage with tiny payloads ---------------------------------------------

@pytest.fixture(scope="module")
def guest_image():
    """Fetch the arm64 packages and build the base image once (cached);
    skipped with PANDA_SKIP=qemu."""
    realparts.need("qemu")
    proc = subprocess.run(["bash", str(RUN_SH), "--prepare"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr


def payload(tmp_path, script):
    d = tmp_path / "payload"
    d.mkdir()
    run = d / "run"
    run.write_text("#!/bin/sh\n" + textwrap.dedent(script))
    run.chmod(0o755)
    return d


def stage(tmp_path, script, timeout=60):
    log = tmp_path / "console.log"
    proc = subprocess.run(
        ["bash", str(RUN_SH), "--payload", str(payload(tmp_path, script)),
         "--timeout", str(timeout), "--console", str(log), "--quiet"],
        capture_output=True, text=True, timeout=timeout + 60)
    return proc, Path(log).read_text(errors="replace")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_passing_payload_passes_the_stage(guest_image, tmp_path):
    proc, console = stage(tmp_path, """
        python3 -c 'import os; print("python ok uid", os.getuid())'
        exit 0
        """)
    assert proc.returncode == 0, proc.stderr
    assert "python ok uid 0" in console
    assert "PASSED" in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_failing_payload_fails_the_stage(guest_image, tmp_path):
    # The payload also prints lookalike markers (from its command line, with
    # the nonce, with a made-up tag) before failing: none may count.
    proc, console = stage(tmp_path, """
        nonce=$(sed -n 's/.*pb\\.nonce=\\([0-9a-f]*\\).*/\\1/p' /proc/cmdline)
        echo "Kernel command line: $(cat /proc/cmdline)"
        echo "PB-QEMU-RESULT $nonce rc=0"
        echo "PB-QEMU-RESULT 0123456789abcdef0123456789abcdef rc=0"
        echo "the check failed" >&2
        exit 3
        """)
    assert proc.returncode != 0
    assert "the guest payload failed (exit 3)" in proc.stderr
    # the kernel's own echo of the command line, nonce included, is there
    assert "] Kernel command line: " in console and "pb.nonce=" in console
    # the reason and the tail of the console log are shown
    assert "the check failed" in proc.stderr
    assert "the check failed" in console


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_guest_crash_without_marker_fails_the_stage(guest_image, tmp_path):
    proc, console = stage(tmp_path, """
        echo "about to crash the kernel"
        echo c >/proc/sysrq-trigger
        sleep 600
        """)
    assert proc.returncode != 0
    assert "without a result marker" in proc.stderr
    assert "about to crash the kernel" in console
    assert "Kernel panic" in console


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_hung_guest_hits_the_timeout(guest_image, tmp_path):
    proc, console = stage(tmp_path, """
        echo "about to hang"
        sleep 600
        """, timeout=20)
    assert proc.returncode != 0
    assert "timed out after 20 s" in proc.stderr
    assert "about to hang" in console


# --- the shipped scenario on the U1's own Klipper -----------------------------

def packages_from(tmp_path, edit):
    """dist/ built from a copy of the project's sources with the module
    edited; returns the dist folder."""
    src = tmp_path / "src"
    for d in ("klipper", "package", "overlay"):
        shutil.copytree(ROOT / d, src / d,
                        ignore=shutil.ignore_patterns("__pycache__"))
    module = src / "klipper" / "extras" / "panda_breath.py"
    module.write_text(edit(module.read_text()))
    git = ["git", "-C", str(src), "-c", "user.name=test",
           "-c", "user.email=test@example.invalid"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "edited"], check=True)
    build(src, src / "dist", ROOT / ".cache" / "wheels")
    return src / "dist"


def test_without_method_cuts_only_that_method():
    source = textwrap.dedent("""\
        class Sensor:
            def a(self):
                return 1

            def set_read_tolerance(self, tol, ratio):
                self.tol = tol

            def b(self):
                return 2
        """)
    edited = without_method(source, "set_read_tolerance")
    assert "set_read_tolerance" not in edited
    assert "def a(self)" in edited and "def b(self)" in edited
    ast.parse(edited)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_u1_klipper_refuses_a_module_without_set_read_tolerance(
        guest_image, tmp_path):
    # The stage runs the U1's own klippy, which calls set_read_tolerance
    # on every heater's sensor: without it, start-up stops, and the stage
    # fails showing Klipper's AttributeError.
    realparts.need("qemu", "klipper-u1")
    module = (ROOT / "klipper/extras/panda_breath.py").read_text()
    assert "def set_read_tolerance" in module
    dist = packages_from(
        tmp_path, lambda text: without_method(text, "set_read_tolerance"))
    log = tmp_path / "console.log"
    proc = subprocess.run(
        ["bash", str(RUN_SH), "--dist", str(dist), "--timeout", "600",
         "--console", str(log), "--quiet"],
        capture_output=True, text=True, timeout=700)
    assert proc.returncode != 0
    assert "the guest payload failed (exit 1)" in proc.stderr
    assert re.search(r"AttributeError: '\w+' object has no attribute "
                     r"'set_read_tolerance'", proc.stderr), proc.stderr
    assert "Klipper is not ready (state error)" in log.read_text()
