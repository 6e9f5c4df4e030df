"""`pip install ~/panda-breath` on a Klipper host: a real venv, pip
offline (the cached websocket-client wheel), the project's own build
backend.  The installed panda-breath command finds the Klipper module in
Klipper's extras and the config template beside the module's source."""
import os
import shutil
import subprocess
import zipfile

import pytest
from pkgtools import AUTHOR, CACHE, ROOT, git

from package import pip_backend, wheel
from simulator import Simulator


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """What pip builds from, committed as a clone is."""
    repo = tmp_path_factory.mktemp("src") / "panda-breath"
    for part in ("package", "klipper"):
        shutil.copytree(ROOT / part, repo / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "LICENSE"):
        shutil.copy(ROOT / name, repo / name)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, *AUTHOR, "commit", "-q", "-m", "c")
    return repo


@pytest.fixture(scope="module")
def installed(tmp_path_factory, clone):
    """A Klipper host's HOME with the project pip-installed into its venv
    and the module linked into Klipper's extras, as install.sh does."""
    wheel.fetch(CACHE)
    home = tmp_path_factory.mktemp("host") / "home"
    env_dir = home / "klippy-env"
    subprocess.run(["python3", "-m", "venv", str(env_dir)], check=True)
    result = subprocess.run(
        [str(env_dir / "bin" / "pip"), "install", "--quiet",
         "--disable-pip-version-check", "--no-cache-dir", "--no-index",
         "--find-links", str(CACHE), str(clone)], capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    extras = home / "klipper" / "klippy" / "extras"
    extras.mkdir(parents=True)
    (extras / "panda_breath.py").symlink_to(
        clone / "klipper" / "extras" / "panda_breath.py")
    (home / "printer_data" / "config").mkdir(parents=True)
    (home / "printer_data" / "config" / "printer.cfg").write_text(
        "[printer]\n")
    return home


def command(home, *args):
    env = dict(os.environ, HOME=str(home))
    env.pop("PANDA_BREATH_CONFIG_DIR", None)
    return subprocess.run(
        [str(home / "klippy-env" / "bin" / "panda-breath"), *map(str, args)],
        capture_output=True, text=True, timeout=60, env=env)


def test_pip_installs_the_command_and_websocket_client(installed):
    result = command(installed, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: panda-breath")
    version = subprocess.run(
        [str(installed / "klippy-env" / "bin" / "python"), "-c",
         "import websocket; print(websocket.__version__)"],
        capture_output=True, text=True)
    assert version.stdout.strip() == wheel.VERSION


def test_pip_installed_command_sets_up_a_device(installed):
    config = installed / "printer_data" / "config"
    with Simulator(push_interval=0.1) as sim:
        result = command(installed, "setup", "--host", "127.0.0.1",
                         "--port", sim.port, "--no-restart")
        assert result.returncode == 0, result.stdout + result.stderr
        status = command(installed, "status")
    assert f"port: {sim.port}\n" in (config / "panda_breath.cfg").read_text()
    assert "[include panda_breath.cfg]" in (config / "printer.cfg").read_text()
    assert status.returncode == 0, status.stdout + status.stderr
    assert "firmware V1.0.3" in status.stdout


def test_the_wheel_holds_the_command_and_its_metadata(clone, tmp_path):
    name = pip_backend.build_wheel(tmp_path)
    with zipfile.ZipFile(tmp_path / name) as built:
        names = built.namelist()
        info = next(n.split("/")[0] for n in names if "dist-info" in n)
        metadata = built.read(f"{info}/METADATA").decode()
        entry_points = built.read(f"{info}/entry_points.txt").decode()
        assert built.read("panda_breath_cli.py") == (
            ROOT / "package" / "panda-breath" / "panda-breath").read_bytes()
    assert name.endswith("-py3-none-any.whl")
    assert "Requires-Dist: websocket-client==1.9.2\n" in metadata
    assert "License: GPL-3.0-or-later\n" in metadata
    assert entry_points == ("[console_scripts]\n"
                            "panda-breath = panda_breath_cli:main\n")
    assert sorted(n for n in names if not n.startswith(info)) == [
        "panda_breath_cli.py"]
