"""The panda-breath command asks real Moonraker whether Klipper prints
before it restarts Klipper: standby restarts, a real print (virtual_sdcard
started through Moonraker) does not."""
import re
import subprocess
import sys
import time

import pytest
from chamber import FAST, chamber_config

from realklipper.moonraker_server import Moonraker
from realklipper.trees import ROOT

CLI = ROOT / "package" / "panda-breath" / "panda-breath"


@pytest.fixture
def server(printer, sim, tmp_path):
    gcodes = tmp_path / "mr" / "printer_data" / "gcodes"
    gcodes.mkdir(parents=True)
    (gcodes / "long.gcode").write_text("G4 P600000\n")
    p = printer(chamber_config(sim.port, options=FAST)
                + "\n[virtual_sdcard]\npath: %s\n" % (gcodes,))
    server = Moonraker(p.sock, tmp_path / "mr" / "printer_data")
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()


def cli_restart(server, marker):
    return subprocess.run(
        [sys.executable, str(CLI), "restart", "--restart-cmd",
         "touch %s" % (marker,), "--moonraker", server.url,
         "--klipper-socket", "/nonexistent/klippy.sock"],
        capture_output=True, text=True, timeout=60)


def test_cli_asks_moonraker_before_restarting_klipper(server, tmp_path):
    marker = tmp_path / "restarted"
    idle = cli_restart(server, marker)
    assert idle.returncode == 0, idle.stdout + idle.stderr
    assert "Klipper is not printing (Moonraker: standby)" in idle.stdout
    assert marker.exists()
    marker.unlink()
    server.post("/printer/print/start", filename="long.gcode")
    deadline = time.monotonic() + 15
    while server.query("print_stats")["print_stats"]["state"] \
            != "printing":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    busy = cli_restart(server, marker)
    assert busy.returncode == 1
    assert "a print is printing (Moonraker)" in busy.stderr
    assert not marker.exists()


def test_status_asks_moonraker_for_the_chamber(printer, sim, tmp_path):
    """Without Klipper's API socket the command asks real Moonraker for
    the panda_breath object: here the device's reading with its
    temperature_offset, which is what Klipper's chamber heater shows."""
    options = dict(FAST, temperature_offset=-6)
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "panda_breath.cfg").write_text(
        chamber_config(sim.port, options=options))
    p = printer(chamber_config(sim.port, options=options))
    server = Moonraker(p.sock, tmp_path / "mr" / "printer_data")
    try:
        server.start()
        server.wait_ready()
        p.wait_for(lambda: p.status("panda_breath")["temperature"]
                   is not None)
        result = subprocess.run(
            [sys.executable, str(CLI), "status", "--config-dir",
             str(config_dir), "--timeout", "2", "--moonraker", server.url,
             "--klipper-socket", "/nonexistent/klippy.sock"],
            capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    device = int(re.search(r"^temperature: (-?\d+) °C$", result.stdout,
                           re.M).group(1))
    chamber = re.search(
        r"^chamber:     (-?\d+\.\d) °C \(the device's reading -6 °C, "
        r"temperature_offset, from Klipper\)$", result.stdout, re.M)
    assert chamber, result.stdout
    assert abs(float(chamber.group(1)) - (device - 6)) <= 1
