"""What Fluidd and Mainsail see: the chamber through real Moonraker.

Moonraker (from PyPI, in .cache/moonraker, made by build.sh) connects to
real Klipper's API socket; the test talks to Moonraker's HTTP API and its
JSON-RPC WebSocket as the web UIs do."""
import json
import time

import pytest
import websocket

from realklipper.moonraker_server import Moonraker

HEATER = "heater_generic chamber"


@pytest.fixture
def moonraker(printer, tmp_path):
    p = printer()
    m = Moonraker(p.sock, tmp_path / "moonraker-data")
    try:
        m.start()
        m.wait_ready()
        yield p, m
    finally:
        m.stop()


def gcode(m, script):
    m.post("/printer/gcode/script", script=script)


def test_chamber_is_a_heater_for_the_web_uis(moonraker, sim):
    p, m = moonraker
    status = m.query("heaters")
    assert HEATER in status["heaters"]["available_heaters"]
    assert HEATER in status["heaters"]["available_sensors"]
    chamber = m.get("/printer/objects/query",
                    **{HEATER: "temperature,target,power"})["status"][HEATER]
    assert set(chamber) == {"temperature", "target", "power"}
    assert chamber["target"] == 0


def test_panda_breath_object_is_queryable(moonraker, sim):
    p, m = moonraker
    status = m.query("panda_breath")["panda_breath"]
    assert status["connected"] is True
    for field in ("firmware", "work_on", "temperature", "target",
                  "reading_age", "stale", "last_error", "reconnects"):
        assert field in status


def test_target_from_moonraker_reaches_the_device(moonraker, sim):
    p, m = moonraker
    gcode(m, "SET_HEATER_TEMPERATURE HEATER=chamber TARGET=42")
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 42)
    gcode(m, "SET_HEATER_TEMPERATURE HEATER=chamber TARGET=0")
    sim.wait_for(lambda s: not s["work_on"])


def test_web_ui_subscription_follows_the_chamber(moonraker, sim):
    # Fluidd and Mainsail subscribe over Moonraker's JSON-RPC WebSocket.
    p, m = moonraker
    ws = websocket.create_connection(
        "ws://127.0.0.1:%d/websocket" % (m.port,), timeout=30)
    try:
        ws.send(json.dumps({
            "jsonrpc": "2.0", "id": 1,
            "method": "printer.objects.subscribe",
            "params": {"objects": {HEATER: ["temperature", "target"]}}}))
        reply = json.loads(ws.recv())
        while reply.get("id") != 1:
            reply = json.loads(ws.recv())
        assert reply["result"]["status"][HEATER]["target"] == 0
        gcode(m, "SET_HEATER_TEMPERATURE HEATER=chamber TARGET=35")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("method") == "notify_status_update":
                target = msg["params"][0].get(HEATER, {}).get("target")
                if target == 35:
                    break
        else:
            raise AssertionError("no status update with target 35")
    finally:
        ws.close()
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 35)
