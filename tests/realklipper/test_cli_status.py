"""`panda-breath status` beside real Klipper: the chamber as Klipper's
chamber sensor reads it next to the device's own reading, the guards and
a hold, from Klipper's API socket; and the device alone when Klipper
cannot be asked."""
import re
import socket
import subprocess
import sys

import pytest
from chamber import FAST, chamber_config

from realklipper.helpers import set_target
from realklipper.trees import ROOT
from simulator import Simulator

CLI = ROOT / "package" / "panda-breath" / "panda-breath"
AIR = "temperature_sensor chamber_air"
SOC = "temperature_sensor soc"
SENSORS = """
[temperature_sensor chamber_air]
sensor_type: temperature_host
sensor_path: {air}
min_temp: -40
max_temp: 120

[temperature_sensor soc]
sensor_type: temperature_host
sensor_path: {soc}
min_temp: -40
max_temp: 150
"""


@pytest.fixture
def sim(tmp_path):
    """The simulator with its chamber air written to a file."""
    with Simulator(push_interval=0.1, reboot_delay=0.3, speed=10.0,
                   chamber_file=str(tmp_path / "chamber_air")) as device:
        device.press(work_on=False)
        yield device


def write_millidegrees(path, celsius):
    with open(path, "w") as f:
        f.write("%d\n" % (int(celsius * 1000),))


def closed_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "http://127.0.0.1:%d" % (s.getsockname()[1],)


def status(config_dir, sim, sock, moonraker=None):
    return subprocess.run(
        [sys.executable, str(CLI), "status", "--config-dir", str(config_dir),
         "--port", str(sim.port), "--timeout", "2",
         "--klipper-socket", str(sock), "--moonraker",
         moonraker or closed_url()],
        capture_output=True, text=True, timeout=60)


def test_status_shows_the_chamber_and_the_device_side_by_side(
        printer, sim, tmp_path):
    soc = tmp_path / "soc"
    write_millidegrees(soc, 50)
    heater = chamber_config(sim.port, options=dict(
        FAST, chamber_sensor=AIR, guard="\n  %s, 80" % (SOC,)))
    # what the command reads: the same [panda_breath] Klipper runs
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "panda_breath.cfg").write_text(heater)
    p = printer(config=SENSORS.format(air=tmp_path / "chamber_air",
                                      soc=soc) + heater)
    set_target(p, 40)
    sim.wait_for(lambda s: s["work_on"])
    p.wait_for(lambda: p.status("panda_breath")["chamber_temperature"]
               is not None)
    result = status(config_dir, sim, p.sock)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    device = re.search(r"^temperature: (-?\d+) °C$", out, re.M)
    assert device, out
    chamber = re.search(
        r"^chamber:     (-?\d+\.\d) °C, target 40 °C "
        r"\(temperature_sensor chamber_air, from Klipper\)$", out, re.M)
    assert chamber, out
    assert abs(float(chamber.group(1)) - sim.state()["chamber_temp"]) < 1.5
    assert "guard:       temperature_sensor soc 50.0 °C, limit 80 °C\n" \
        in out
    assert "held:" not in out
    # a guard over its limit holds the device off: status says so
    write_millidegrees(soc, 85)
    sim.wait_for(lambda s: not s["work_on"], timeout=5)
    out = status(config_dir, sim, p.sock).stdout
    assert ("guard:       temperature_sensor soc 85.0 °C, limit 80 °C: over "
            "it, the device is off\n") in out
    held = p.status("panda_breath")["held"]
    assert f"held:        {held}\n" in out and "soc" in held
    # Klipper gone: the chamber is unknown, the device still shown
    p.stop()
    result = status(config_dir, sim, p.sock)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"^temperature: -?\d+ °C$", out, re.M), out
    assert (f"chamber:     unknown (temperature_sensor chamber_air; cannot "
            f"ask Klipper: nothing listens on {p.sock}; Moonraker at ") \
        in out
    assert "guards:      unknown (temperature_sensor soc; cannot ask " \
        "Klipper:" in out


def test_status_says_when_klipper_runs_without_the_module(printer, sim,
                                                          tmp_path):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "panda_breath.cfg").write_text(chamber_config(
        sim.port, options=dict(FAST, chamber_sensor=AIR)))
    p = printer(config="", connect=False)
    out = status(config_dir, sim, p.sock).stdout
    assert ("chamber:     unknown (temperature_sensor chamber_air; cannot "
            "ask Klipper: Klipper runs without the panda_breath module: "
            "restart it to load the config)") in out
