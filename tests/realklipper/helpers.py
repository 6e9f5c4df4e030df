"""Small helpers shared by the real-Klipper tests."""
import json

import pytest
import websocket
from chamber import FAST, chamber_config

from realklipper.api import APIError

HEATER = "heater_generic chamber"
HEAT_45 = [("work_mode", 2), ("set_temp", 45), ("work_on", True)]


def writes(sim):
    """(key, value) of every setting the device received, in order."""
    return [(key, value) for _, key, value in sim.settings_writes()]


def set_target(p, target):
    p.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=%s" % (target,))


def link(p):
    return p.status("panda_breath")


def wait_reconnect(p, count=1, timeout=10.0):
    """Wait until the link came back after its count-th loss."""
    p.wait_for(lambda: (lambda s: s["reconnects"] >= count
                        and s["connected"])(link(p)), timeout)


def blink(p, sim, timeout=10.0):
    """Drop the device's connections; wait until the module is back."""
    count = link(p)["reconnects"]
    sim.drop_all()
    wait_reconnect(p, count + 1, timeout)


def quick_verify_heater(sim, options=FAST, max_error=30):
    """The chamber config with a verify_heater that trips within seconds
    of a chamber that does not warm (check_gain_time 1 s)."""
    return chamber_config(sim.port, options=options, check_gain_time=1) \
        .replace("heating_gain: 1\n",
                 "heating_gain: 1\nmax_error: %d\n" % (max_error,))


def refused(p, sim, script, words):
    sim.clear_frames()
    with pytest.raises(APIError, match=words):
        p.gcode(script)
    assert writes(sim) == [], writes(sim)


def bind(sim, port):
    """Bind the device to a Klipper printer at 127.0.0.1:port, as the
    panda-breath CLI does (printer_type 2 reboots it)."""
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
    sim.wait_for(lambda s: s["printer"].get("port") == port)
    ws.close()
