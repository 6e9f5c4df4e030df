"""A U1 owner's Panda Breath setup from the Extended Firmware, in real
Klipper (upstream and the U1 fork): the firmware's template (ours), an
owner's migrated panda_breath.cfg, and the community module's commands.

The files are used as they are; only the device's address changes (and
the include's path, which names the firmware's folder on the printer).
The simulated device listens on port 80 of a loopback address of its own,
as `port: 80` in the owner's file says, where this machine lets the tests
bind that port."""
import json
import pathlib
import random

import pytest
import websocket
from moonraker_endpoint import MoonrakerEndpoint

from realklipper.api import APIError
from realklipper.printer import StartupError
from simulator import Simulator

ROOT = pathlib.Path(__file__).resolve().parents[2]
TWEAKS = (ROOT / "overlay/firmware-extended/37-feature-chamber-heater/root"
          "/usr/local/share/firmware-config/tweaks/klipper")
ON_PRINTER = "/usr/local/share/firmware-config/tweaks/klipper"
HEATER = "heater_generic panda_breath"

# An owner's extended/klipper/panda_breath.cfg from the community module's
# days (../shared/u1-platform.md); the firmware's cp -n never replaces it.
OWNER_CFG = """\
[panda_breath]
firmware: stock
host: PandaBreath.local
port: 80
# [include /usr/local/share/firmware-config/tweaks/klipper/\
panda_breath_heater_auto.cfg]
"""


@pytest.fixture
def device():
    """The simulated Panda Breath, off, at port 80 when allowed."""
    host = "127.%d.%d.%d" % (random.randint(1, 254), random.randint(0, 255),
                             random.randint(1, 254))
    try:
        sim = Simulator(host=host, port=80, push_interval=0.1,
                        reboot_delay=0.3, speed=20.0).start()
    except PermissionError:
        sim = Simulator(host=host, push_interval=0.1, reboot_delay=0.3,
                        speed=20.0).start()
    sim.press(work_on=False)
    yield sim
    sim.stop()


def pointed_at(text, sim, include=None):
    """The file with the device's address (and port, when the simulator
    could not have 80) and the include active or not, as given."""
    text = text.replace("host: PandaBreath.local\n", "host: %s\n" % sim.host)
    text = text.replace("port: 80\n", "port: %d\n" % sim.port)
    line = "[include %s/panda_breath_heater_auto.cfg]" % ON_PRINTER
    assert line in text
    here = "[include %s]" % (TWEAKS / "panda_breath_heater_auto.cfg")
    if include:
        text = text.replace("# " + line, here)
    text = text.replace(line, here)
    return text


def extended(tmp_path, cfg):
    """printer.cfg's line of the Extended Firmware, with the file in
    extended/klipper/."""
    folder = tmp_path / "config" / "extended" / "klipper"
    folder.mkdir(parents=True)
    (folder / "panda_breath.cfg").write_text(cfg)
    return "[include %s/*.cfg]\n" % (folder,)


def writes(sim):
    return [(key, value) for _, key, value in sim.settings_writes()]


def start(printer, tmp_path, cfg):
    p = printer(config=extended(tmp_path, cfg), check=False)
    p.checked = True
    p.wait_for(lambda: p.status("panda_breath")["connected"])
    return p


def test_firmware_template_heats_with_m141_and_m191(printer, device,
                                                     tmp_path):
    cfg = pointed_at((TWEAKS / "panda_breath.cfg").read_text(), device,
                     include=True)
    p = start(printer, tmp_path, cfg)
    heaters = p.status("heaters")
    assert "heater_generic panda_breath" in heaters["available_heaters"]
    p.gcode("M141 S35")
    device.wait_for(lambda s: s["work_on"] and s["work_mode"] == 2
                    and s["set_temp"] == 35)
    assert p.status(HEATER)["target"] == 35
    p.gcode("M191 S30", timeout=60)
    assert device.state()["sensor_temp"] >= 29
    p.gcode("M141 S0")
    device.wait_for(lambda s: not s["work_on"])


def test_owner_config_with_the_include_active_heats(printer, device,
                                                    tmp_path):
    p = start(printer, tmp_path, pointed_at(OWNER_CFG, device,
                                            include=True))
    p.gcode("SET_HEATER_TEMPERATURE HEATER=panda_breath TARGET=40")
    device.wait_for(lambda s: s["work_on"] and s["set_temp"] == 40)
    p.gcode("M141 S0")
    device.wait_for(lambda s: not s["work_on"])


def test_owner_config_without_a_heater_starts_and_takes_the_commands(
        printer, device, tmp_path):
    device.press(work_on=True, work_mode=2, set_temp=50)
    p = start(printer, tmp_path, pointed_at(OWNER_CFG, device))
    assert p.status("heaters")["available_heaters"] == []
    device.wait_for(lambda s: not s["work_on"])   # left-over heat is off
    p.gcode("PANDA_BREATH_DRY_START TEMP=50 HOURS=2")
    device.wait_for(lambda s: s["isrunning"] and s["work_mode"] == 3
                    and s["filament_temp"] == 50 and s["filament_timer"] == 2)
    p.gcode("PANDA_BREATH_DRY_STOP")
    device.wait_for(lambda s: not s["work_on"])
    with pytest.raises(APIError, match="not bound to a Klipper printer"):
        p.gcode("PANDA_BREATH_AUTO ENABLE=1 TARGET=45 FILTERTEMP=30"
                " HOTBEDTEMP=80")


def bind(sim, port):
    """Bind the device to a Klipper printer's Moonraker at 127.0.0.1:port
    the way `panda-breath bind` does (the printer type reboots it)."""
    ws = websocket.create_connection(sim.url, timeout=3)
    ws.recv()
    ws.send(json.dumps({"settings": {"printer_type": 2}}))
    sim.wait_for(lambda s: s["online"] and s["printer_type"] == 2
                 and s["boot_count"] == 2)
    ws.close()
    ws = websocket.create_connection(sim.url, timeout=3)
    ws.recv()
    ws.send(json.dumps({"printer": {"name": "Klipper", "ip": "127.0.0.1",
                                    "port": port}}))
    sim.wait_for(lambda s: s["printer"].get("state") == 3)
    ws.close()


def test_community_auto_command_reaches_a_bound_device(printer, device,
                                                       tmp_path):
    with MoonrakerEndpoint() as moonraker:
        bind(device, moonraker.port)
        device.press(work_on=False)
        p = start(printer, tmp_path, pointed_at(OWNER_CFG, device,
                                                include=True))
        p.wait_for(lambda: p.status("panda_breath")["binding"]
                   == "connected")
        device.clear_frames()
        p.gcode("PANDA_BREATH_AUTO ENABLE=1 TARGET=45.0 FILTERTEMP=30"
                " HOTBEDTEMP=80")
        device.wait_for(lambda s: s["work_on"] and s["work_mode"] == 1)
        assert writes(device) == [("set_temp", 45), ("hotbedtemp", 80),
                                  ("filtertemp", 30), ("work_mode", 1),
                                  ("work_on", True)]
        moonraker.bed_target = 90.0
        device.wait_for(lambda s: s["heat_request"] and s["fan"])
        p.gcode("PANDA_BREATH_AUTO ENABLE=0")
        device.wait_for(lambda s: not s["work_on"])


@pytest.mark.parametrize("firmware", ["esphome", "stock-mqtt"])
def test_other_firmware_stops_klipper_naming_the_option(
        printer, device, tmp_path, firmware):
    cfg = pointed_at(OWNER_CFG, device).replace(
        "firmware: stock", "firmware: " + firmware)
    p = printer(config=extended(tmp_path, cfg), ready=False, check=False)
    with pytest.raises(StartupError) as e:
        p.wait_ready()
    message = str(e.value)
    assert "Option 'firmware' in section 'panda_breath'" in message
    assert "[dragonbreath]" in message
    assert writes(device) == []
