"""What Fluidd and Mainsail see: the chamber through real Moonraker.

Moonraker (from PyPI, in .cache/moonraker, made by build.sh) connects to
real Klipper's API socket; the test talks to Moonraker's HTTP API and its
JSON-RPC WebSocket as the web UIs do."""
import json
import os
import pathlib
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import websocket

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEATER = "heater_generic chamber"
CONFIG = """\
[server]
host: 127.0.0.1
port: {port}
klippy_uds_address: {sock}

[authorization]
trusted_clients:
  127.0.0.0/8

[announcements]
# no remote announcement feeds: tests reach loopback only
enable_moonlight: False

[machine]
provider: none
validate_service: False
"""


def moonraker_command():
    path = os.environ.get("PANDA_MOONRAKER",
                          str(ROOT / ".cache" / "moonraker" / "bin" /
                              "moonraker"))
    if not os.access(path, os.X_OK):
        pytest.skip("Moonraker check skipped: no moonraker at %s (run"
                    " ./build.sh test, or set PANDA_MOONRAKER)" % (path,))
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moonraker:
    def __init__(self, command, klipper_sock, workdir):
        self.port = free_port()
        data = workdir / "moonraker-data"
        (data / "config").mkdir(parents=True)
        cfg = data / "config" / "moonraker.conf"
        cfg.write_text(CONFIG.format(port=self.port, sock=klipper_sock))
        self.log = workdir / "moonraker.out"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [command, "-d", str(data), "-c", str(cfg), "-n"],
                stdout=out, stderr=subprocess.STDOUT)
        self.base = "http://127.0.0.1:%d" % (self.port,)

    def get(self, path, **query):
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.load(r)["result"]

    def post(self, path, body):
        req = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)["result"]

    def wait_ready(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.get("/server/info")["klippy_state"] == "ready":
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.2)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def moonraker(printer, tmp_path):
    command = moonraker_command()
    p = printer()
    m = Moonraker(command, p.sock, tmp_path)
    try:
        m.wait_ready()
        yield p, m
    finally:
        m.stop()


def test_chamber_is_a_heater_for_the_web_uis(moonraker, sim):
    p, m = moonraker
    status = m.get("/printer/objects/query", heaters="")["status"]
    assert HEATER in status["heaters"]["available_heaters"]
    assert HEATER in status["heaters"]["available_sensors"]
    chamber = m.get("/printer/objects/query",
                    **{HEATER: "temperature,target,power"})["status"][HEATER]
    assert set(chamber) == {"temperature", "target", "power"}
    assert chamber["target"] == 0


def test_panda_breath_object_is_queryable(moonraker, sim):
    p, m = moonraker
    status = m.get("/printer/objects/query",
                   panda_breath="")["status"]["panda_breath"]
    assert status["connected"] is True
    for field in ("firmware", "work_on", "temperature", "target",
                  "reading_age", "stale", "last_error", "reconnects"):
        assert field in status


def test_target_from_moonraker_reaches_the_device(moonraker, sim):
    p, m = moonraker
    m.post("/printer/gcode/script", {
        "script": "SET_HEATER_TEMPERATURE HEATER=chamber TARGET=42"})
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 42)
    m.post("/printer/gcode/script", {
        "script": "SET_HEATER_TEMPERATURE HEATER=chamber TARGET=0"})
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
        m.post("/printer/gcode/script", {
            "script": "SET_HEATER_TEMPERATURE HEATER=chamber TARGET=35"})
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
