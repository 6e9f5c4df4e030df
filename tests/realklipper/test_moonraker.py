"""Real Moonraker (PyPI, pinned in requirements-dev.txt) in front of real
Klipper running the module against the simulator: what Fluidd and
Mainsail see and send goes through it."""
import subprocess
import sys
import time

import pytest
from chamber import FAST, chamber_config

from realklipper.moonraker_server import Moonraker
from realklipper.trees import ROOT

HEATER = "heater_generic chamber"
CLI = ROOT / "package" / "panda-breath" / "panda-breath"
@pytest.fixture
def moonraker(printer, sim, tmp_path):
    try:
        import moonraker  # noqa: F401
    except ImportError as e:
        pytest.skip("real Moonraker layer skipped: %s (run ./build.sh to "
                    "refresh .venv)" % (e,))
    try:
        import libnacl  # noqa: F401  Moonraker's authorization needs it
    except OSError as e:
        pytest.skip("real Moonraker layer skipped: %s (install Debian's "
                    "libsodium23)" % (e,))
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


def test_chamber_is_a_heater_moonraker_records(moonraker, sim):
    heaters = moonraker.query("heaters")["heaters"]
    assert HEATER in heaters["available_heaters"]
    assert HEATER in heaters["available_sensors"]
    deadline = time.monotonic() + 15
    while True:
        chamber = moonraker.query(HEATER)[HEATER]
        if abs(chamber["temperature"] - sim.state()["sensor_temp"]) <= 1.5:
            break
        assert time.monotonic() < deadline, chamber
        time.sleep(0.2)
    assert chamber["target"] == 0 and chamber["power"] == 0
    # the temperature graph of Fluidd and Mainsail: Moonraker records the
    # heater once it has subscribed to Klipper's sensors
    deadline = time.monotonic() + 15
    while HEATER not in moonraker.get("/server/temperature_store"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    store = moonraker.get("/server/temperature_store")[HEATER]
    assert set(store) == {"temperatures", "targets", "powers"}
    assert store["targets"][-1] == 0
    assert abs(store["temperatures"][-1] - sim.state()["sensor_temp"]) < 2


def test_panda_breath_object_is_queryable(moonraker):
    status = moonraker.query("panda_breath")["panda_breath"]
    assert status["connected"] is True
    assert status["firmware"] == "V1.0.3"
    assert status["target"] == 0 and status["stale"] is False
    assert {"work_on", "work_mode", "set_temp", "temperature",
            "reading_age", "last_error", "reconnects", "session",
            "binding"} <= set(status)


def test_target_sent_through_moonraker_reaches_the_device(moonraker, sim):
    moonraker.post("/printer/gcode/script",
                   script="SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 45)
    assert moonraker.query(HEATER)[HEATER]["target"] == 45
    moonraker.post("/printer/gcode/script",
                   script="SET_HEATER_TEMPERATURE HEATER=chamber TARGET=0")
    sim.wait_for(lambda s: not s["work_on"])


def cli_restart(moonraker, marker):
    return subprocess.run(
        [sys.executable, str(CLI), "restart", "--restart-cmd",
         "touch %s" % (marker,), "--moonraker", moonraker.url,
         "--klipper-socket", "/nonexistent/klippy.sock"],
        capture_output=True, text=True, timeout=60)


def test_cli_asks_moonraker_before_restarting_klipper(moonraker, tmp_path):
    marker = tmp_path / "restarted"
    idle = cli_restart(moonraker, marker)
    assert idle.returncode == 0, idle.stdout + idle.stderr
    assert "Klipper is not printing (Moonraker: standby)" in idle.stdout
    assert marker.exists()
    marker.unlink()
    moonraker.post("/printer/print/start", filename="long.gcode")
    deadline = time.monotonic() + 15
    while moonraker.query("print_stats")["print_stats"]["state"] \
            != "printing":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    busy = cli_restart(moonraker, marker)
    assert busy.returncode == 1
    assert "a print is printing (Moonraker)" in busy.stderr
    assert not marker.exists()
