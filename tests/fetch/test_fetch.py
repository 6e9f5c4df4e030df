"""The real parts on a clone with nothing beside it (no ../shared, no
PANDA_* variable): `./build.sh parts`, the step `./build.sh test` starts
with, fetches them from the remotes (local ones here, named by
PANDA_<REPO>_URL) into .cache at the given commits, builds opkg, and a
second run reuses them.  When they cannot be had, it fails with one line
for each, naming it; PANDA_SKIP skips what needs them."""
import hashlib
import json
import os
import subprocess
import time

import pytest
import realparts
from remotes import clean_env

PARTS = ("klipper-upstream", "klipper-u1", "opkg", "opkg-aarch64")


def build_sh(clone, *args, env, timeout=600):
    return subprocess.run(["bash", str(clone / "build.sh"), *args],
                          cwd=clone, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def digest(tree):
    """sha256 over a tree's file names and contents."""
    h = hashlib.sha256()
    for path in sorted(tree.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(tree)).encode() + b"\0")
            h.update(path.read_bytes())
    return h.hexdigest()


def unreachable(tmp_path, **extra):
    """Every remote a path that does not exist, and no package index."""
    nowhere = tmp_path / "nowhere"
    (tmp_path / "no-wheels").mkdir()
    env = clean_env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(
        tmp_path / "no-wheels"), PIP_CONFIG_FILE=os.devnull, **extra)
    for key, repo in realparts.REPOS.items():
        env["PANDA_%s_URL" % repo.key] = "file://%s/%s.git" % (nowhere, key)
    return env


def problem_lines(stderr):
    return [line for line in stderr.splitlines() if " unavailable" in line]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_lone_clone_fetches_every_part_then_reuses_it(lone, remotes):
    env = clean_env(**remotes)
    args = ["--part=%s" % (p,) for p in PARTS]
    started = time.monotonic()
    first = build_sh(lone, "parts", *args, env=env, timeout=1400)
    first_s = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    cache = lone / ".cache" / "parts"
    for name in ("klipper-upstream", "klipper-u1"):
        repo = realparts.REPOS[name].key
        stamp = json.loads((cache / (name + ".json")).read_text())
        assert stamp["commit"] == remotes["PANDA_%s_REF" % repo]
        assert stamp["url"] == remotes["PANDA_%s_URL" % repo]
        tree = cache / name
        assert (tree / "klippy" / "klippy.py").is_file()
        # only what Klipper is built from, as a plain folder
        assert not (tree / ".git").exists()
        assert not (tree / "not-fetched").exists()
        assert digest(tree) == digest(realparts.parts().locate(name).path)
    version = subprocess.run([cache / "opkg" / "opkg", "--version"],
                             capture_output=True, text=True, timeout=30)
    assert version.returncode == 0
    assert remotes["PANDA_OPKG_LEDE_REF"] in version.stdout
    arm = (cache / "opkg-aarch64" / "opkg").read_bytes()
    assert arm[:4] == b"\x7fELF" and arm[18:20] == b"\xb7\x00"  # aarch64
    assert remotes["PANDA_OPKG_LEDE_REF"] in realparts.opkg_version(
        cache / "opkg-aarch64" / "opkg")
    patches = cache / "src" / "entware" / realparts.ENTWARE_PATCHES
    assert len(list(patches.glob("*.patch"))) == 7
    assert not (cache / "src" / "entware" / "not-fetched").exists()
    assert not list(cache.glob("**/*.tmp"))

    started = time.monotonic()
    again = build_sh(lone, "parts", *args, env=env)
    again_s = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    assert "fetching" not in again.stderr and "building" not in again.stderr
    print("first run %.0f s, second run %.1f s" % (first_s, again_s))
    described = subprocess.run(
        [str(lone / ".venv" / "bin" / "python"), "-m", "tests.realparts",
         "describe", "--json"], cwd=lone, env=env, capture_output=True,
        text=True, check=True)
    origins = {d["part"]: d for d in json.loads(described.stdout)["parts"]}
    for name in PARTS:
        assert origins[name]["path"].startswith(str(cache)), origins[name]
    assert origins["klipper-u1"]["origin"] == "fetched from %s" % (
        remotes["PANDA_KLIPPER_U1_URL"],)
    assert origins["klipper-u1"]["version"].startswith(
        remotes["PANDA_KLIPPER_U1_REF"])


def test_lone_clone_without_remotes_names_each_missing_part(lone, tmp_path):
    run = build_sh(lone, "parts", env=unreachable(tmp_path))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    lines = problem_lines(run.stderr)
    assert len(lines) == len(realparts.PARTS), run.stderr
    for line, part in zip(lines, realparts.PARTS.values(), strict=True):
        assert line.startswith(part.title + " unavailable for "), line
        assert "set %s to " % (part.var,) in line and "PANDA_SKIP=" in line
    upstream, u1, opkg, arm, moonraker = lines
    assert ("for klipper, safety, docs-config, install-sh, bench, fetch:"
            in upstream)
    assert upstream.endswith("PANDA_SKIP=klipper-upstream,docs-config,"
                             "install-sh,bench,fetch")
    assert "fetch of file://" in upstream and "failed (fatal: " in upstream
    assert u1.endswith("PANDA_SKIP=klipper-u1,qemu,fetch")
    assert "opkg-lede.git at 38eccbb1fd69" in opkg
    assert opkg.endswith("skip it with PANDA_SKIP=opkg")
    assert arm.endswith("skip it with PANDA_SKIP=qemu-opkg")
    assert "pip install -r tests/realklipper/moonraker-requirements.txt" \
        " failed (" in moonraker
    cache = lone / ".cache"
    assert not list(cache.glob("**/*.tmp"))
    assert not (cache / "moonraker").exists()


def test_test_command_stops_before_pytest_naming_what_it_lacks(
        lone, tmp_path):
    # --collect-only: were the parts wrongly found, pytest only collects.
    env = unreachable(tmp_path, PANDA_SKIP="qemu,fetch")
    run = build_sh(lone, "test", "--collect-only", "-q",
                   "tests/test_lint.py", env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert "skipping on purpose (PANDA_SKIP): qemu, fetch" in run.stderr
    lines = problem_lines(run.stderr)
    assert [line.split(" unavailable")[0] for line in lines] == [
        "real Klipper (upstream)", "real Klipper (the Snapmaker U1 fork)",
        "the real opkg (x86_64)", "real Moonraker"]
    assert lines[1].endswith("skip them with PANDA_SKIP=klipper-u1")
    assert run.stdout == ""   # pytest never ran


def test_skipped_layers_need_no_parts(lone, tmp_path):
    every = ("klipper,safety,docs-config,install-sh,bench,opkg,moonraker,"
             "qemu,fetch")
    run = build_sh(lone, "parts", env=unreachable(tmp_path,
                                                  PANDA_SKIP=every))
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip() == (
        "parts: skipping on purpose (PANDA_SKIP): " + every.replace(
            ",", ", "))


def test_unknown_layer_in_panda_skip_is_one_line(lone):
    env = clean_env(PANDA_SKIP="klipper,qemu-everything")
    for command in ("parts", "test"):
        run = build_sh(lone, command, env=env)
        assert run.returncode == 2
        assert run.stderr.splitlines() == [
            "PANDA_SKIP: unknown layer 'qemu-everything' (layers: %s)"
            % (", ".join(realparts.LAYERS),)]


def test_qemu_stage_says_it_is_skipped_and_records_it(lone):
    run = subprocess.run(["python3", "tests/qemu/qemu_stage.py"], cwd=lone,
                         env=clean_env(PANDA_SKIP="qemu"),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == [
        "qemu: SKIPPED: qemu skipped on purpose (PANDA_SKIP=qemu)"]
    record = json.loads((lone / "dist/qemu/parts.json").read_text())
    assert record == {"skipped": ["qemu"]}
    bad = subprocess.run(["python3", "tests/qemu/qemu_stage.py"], cwd=lone,
                         env=clean_env(PANDA_SKIP="qemu-all"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.startswith("qemu: FAILED: PANDA_SKIP: unknown layer")
    assert len(bad.stderr.splitlines()) == 1
