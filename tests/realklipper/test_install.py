"""install.sh and the panda-breath command with real upstream Klipper: the
installed tree starts with a ready chamber heater, the command will not
restart Klipper during a real print, and after --uninstall Klipper starts
cleanly without the module."""
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from chamber import FAST, chamber_config

from package import wheel
from realklipper import trees
from realklipper.moonraker_server import Moonraker
from realklipper.printer import Printer, tracebacks

HEATER = "heater_generic chamber"
ROOT = trees.ROOT
CLI = ROOT / "package" / "panda-breath" / "panda-breath"
CACHE = ROOT / ".cache" / "wheels"
AUTHOR = ("-c", "user.name=t", "-c", "user.email=t@example.invalid")


def make_origin(repo):
    """What install.sh needs of this repository, committed on its own."""
    for part in ("klipper", "package/panda-breath"):
        shutil.copytree(ROOT / part, repo / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "install.sh", repo / "install.sh")
    for args in (["init", "-q"], ["add", "."],
                 [*AUTHOR, "commit", "-q", "-m", "c"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True,
                       capture_output=True)
    return repo


def closed_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "http://127.0.0.1:%d" % (s.getsockname()[1],)


@pytest.fixture
def home(tmp_path):
    """A Klipper host's HOME: the built upstream tree as ~/klipper without
    the module, a real venv as ~/klippy-env, a clone of this repository."""
    built = trees.need("klipper", "upstream")
    home = tmp_path / "home"
    shutil.copytree(built, home / "klipper", symlinks=True)
    (home / "klipper" / "klippy" / "extras" / "panda_breath.py").unlink()
    subprocess.run(["python3", "-m", "venv", str(home / "klippy-env")],
                   check=True)
    origin = make_origin(tmp_path / "origin")
    subprocess.run(["git", "clone", "-q", str(origin),
                    str(home / "panda-breath")], check=True)
    (home / "printer_data" / "config").mkdir(parents=True)
    return home


def install(home, *args, updater="no", restart=("--no-restart",)):
    wheel.fetch(CACHE)
    env = dict(os.environ, HOME=str(home), PIP_NO_INDEX="1",
               PIP_FIND_LINKS=str(CACHE))
    env.pop("PANDA_BREATH_CONFIG_DIR", None)
    result = subprocess.run(
        ["bash", str(home / "panda-breath" / "install.sh"), *restart,
         "--updater", updater, *map(str, args)], env=env, capture_output=True,
        text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_installed_tree_heats_and_uninstalls_cleanly(home, sim):
    config = home / "printer_data" / "config"
    p = Printer(home / "klipper", "upstream", "", config)
    install(home, "--host", "127.0.0.1", "--port", sim.port)
    assert "[include panda_breath.cfg]" in p.cfg.read_text()
    try:
        p.start()
        p.wait_for(lambda: p.status("panda_breath")["connected"])
        p.wait_for(lambda: abs(p.status(HEATER)["temperature"]
                               - sim.state()["sensor_temp"]) <= 1.5)
        p.gcode("M141 S40")
        sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 40)
        # `systemctl restart klipper` is a SIGTERM: the module says off
        # as Klipper ends, and the command checks it is off
        sigterm = ("--restart-cmd", "kill -TERM %d" % (p.klippy.pid,),
                   "--moonraker", closed_url(), "--klipper-socket", p.sock)
        result = install(home, "--uninstall", restart=sigterm)
        # no virtual_sdcard, so no print_stats: no print to spoil
        assert "Klipper is not printing (Klipper's API socket" \
            in result.stdout and "no print_stats" in result.stdout
        sim.wait_for(lambda s: not s["work_on"])
    finally:
        p.stop()
    assert not tracebacks(p.log()), tracebacks(p.log())
    assert "panda_breath" not in p.cfg.read_text()
    try:
        p.start()
        objects = p.api.call("objects/list")["objects"]
        assert "panda_breath" not in objects and HEATER not in objects
    finally:
        p.stop()


def cli_restart(printer, marker):
    return subprocess.run(
        [sys.executable, str(CLI), "restart", "--restart-cmd",
         "touch %s" % (marker,), "--moonraker", closed_url(),
         "--klipper-socket", str(printer.sock)],
        capture_output=True, text=True, timeout=60)


def test_cli_asks_klipper_itself_before_a_restart(printer, sim, tmp_path):
    """Without Moonraker the command asks Klipper's API socket, and
    refuses during a real print (virtual_sdcard)."""
    gcodes = tmp_path / "gcodes"
    gcodes.mkdir()
    (gcodes / "long.gcode").write_text("G4 P600000\n")
    p = printer(chamber_config(sim.port, options=FAST)
                + "\n[virtual_sdcard]\npath: %s\n" % (gcodes,))
    marker = tmp_path / "restarted"
    idle = cli_restart(p, marker)
    assert idle.returncode == 0, idle.stdout + idle.stderr
    assert "Klipper is not printing (Klipper's API socket" in idle.stdout
    assert "standby" in idle.stdout and marker.exists()
    marker.unlink()
    p.gcode("SDCARD_PRINT_FILE FILENAME=long.gcode")
    p.wait_for(lambda: p.status("print_stats")["state"] == "printing")
    busy = cli_restart(p, marker)
    assert busy.returncode == 1
    assert "a print is printing (Klipper's API socket" in busy.stderr
    assert not marker.exists()


def test_moonraker_update_manager_tracks_the_clone(home, sim):
    """The section install.sh adds is one real Moonraker accepts: it
    finds the clone, its origin and branch, clean and up to date."""
    data = home / "printer_data"
    server = Moonraker(data / "comms" / "klippy.sock", data,
                       extra="\n[update_manager]\n"
                             "enable_system_updates: False\n")
    (data / "config" / "printer.cfg").write_text("[printer]\n")
    install(home, "--host", "127.0.0.1", "--port", sim.port, updater="yes")
    clone = home / "panda-breath"
    try:
        server.start()
        server.wait_ready(klippy_state=None)
        deadline = time.monotonic() + 60
        while True:
            info = server.get("/machine/update/status")["version_info"]
            repo = info.get("panda-breath", {})
            if repo.get("current_hash") not in (None, "?") and repo.get(
                    "remote_hash") not in (None, "?"):
                break
            assert time.monotonic() < deadline, info
            time.sleep(0.5)
    finally:
        server.stop()
    head = git_out(clone, "rev-parse", "HEAD")
    assert repo["detected_type"] == "git_repo"
    assert repo["repo_detected"] is True and repo["corrupt"] is False
    assert repo["is_valid"] is True and repo["is_dirty"] is False
    assert repo["branch"] == git_out(clone, "branch", "--show-current")
    assert repo["current_hash"] == repo["remote_hash"] == head
    assert repo["configured_type"] == "git_repo"
    assert repo["warnings"] == [] and repo["anomalies"] == []


def git_out(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True,
                          capture_output=True, text=True).stdout.strip()
