"""The panda-breath command asks real Moonraker whether Klipper prints
before it restarts Klipper: standby restarts, a real print (virtual_sdcard
started through Moonraker) does not."""
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
