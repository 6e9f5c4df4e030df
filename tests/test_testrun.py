"""dist/test-run.md names what the run skipped on purpose and the real
parts it used, with their versions."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JUNIT = """\
<testsuites><testsuite name="pytest" timestamp="2026-12-01T10:00:00+00:00">
<testcase classname="tests.realklipper.test_smoke" name="a" time="2.0"/>
<testcase classname="tests.package.test_opkg" name="b" time="0.1">
<skipped message="opkg skipped on purpose (PANDA_SKIP=opkg)"/></testcase>
</testsuite></testsuites>
"""
QEMU = {"skipped": [],
        "kernel": {"package": "linux-image-6.1.0-99-arm64",
                   "version": "6.1.999-1"},
        "debian_arm64": {"busybox-static": "1:1.35.0-4+b3",
                         "python3.11-minimal": "3.11.2-6+deb12u9"},
        "parts": [{"part": "opkg-aarch64",
                   "title": "the real opkg (aarch64)",
                   "version": "38eccbb1 (2024-10-16)",
                   "origin": "../shared", "path": "/x"}]}


def tree(path):
    (path / "klippy").mkdir(parents=True)
    (path / "klippy" / "klippy.py").write_text("# klippy\n")
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c",
           "user.email=t@t.invalid"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "t"], check=True)
    return subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_run_summary_lists_skips_and_the_parts_with_versions(tmp_path):
    (tmp_path / "pytest.xml").write_text(JUNIT)
    (tmp_path / "parts.json").write_text(json.dumps(QEMU))
    up, u1 = tree(tmp_path / "up"), tree(tmp_path / "u1")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PANDA_")}
    env.update(PANDA_SKIP="opkg,moonraker,fetch",
               PANDA_KLIPPER_UPSTREAM=str(tmp_path / "up"),
               PANDA_KLIPPER_U1=str(tmp_path / "u1"),
               PANDA_OPKG_AARCH64="/bin/true")
    run = subprocess.run(
        [sys.executable, "-m", "tests.testrun", "--junit",
         str(tmp_path / "pytest.xml"), "--pytest-seconds", "60",
         "--qemu-seconds", "30", "--out", str(tmp_path / "run.md"),
         "--qemu-parts", str(tmp_path / "parts.json")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "run.md").read_text()
    assert "| pytest `tests/package` | 1 | 1 | 0 | 0 s |" in text
    assert ("Layers skipped on purpose (`PANDA_SKIP`): `opkg`, `moonraker`,"
            " `fetch`.") in text
    assert ("| Real Klipper (upstream) | %s | $PANDA_KLIPPER_UPSTREAM |"
            % (up,)) in text
    assert ("| Real Klipper (the Snapmaker U1 fork) | %s | $PANDA_KLIPPER_U1"
            " |" % (u1,)) in text
    # the stage's opkg, from what the stage recorded
    assert "| The real opkg (aarch64) | 38eccbb1 (2024-10-16) | ../shared |" \
        in text
    assert "(x86_64)" not in text and "Moonraker" not in text
    assert ("| Guest kernel (QEMU stage) | linux-image-6.1.0-99-arm64"
            " 6.1.999-1 |") in text
    assert ("| Debian arm64 packages (QEMU stage) | busybox-static"
            " 1:1.35.0-4+b3, python3.11-minimal 3.11.2-6+deb12u9 |") in text
    assert "Real parts the run used:" in run.stderr
