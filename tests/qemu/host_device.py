"""The scenario's Panda Breath, on the host side of QEMU's network.

Runs the simulator on loopback and a control service beside it, through
which the guest's scenario reads the device's real state and reboots it.
The guest reaches both only through QEMU's restricted user network
(guestfwd to relay.py).  Prints "ports DEVICE CONTROL" once listening and
runs until stdin closes or SIGTERM.

Control: one JSON object per line, answered by one JSON line:
    {"op": "state"}            the device's state, with its client count
    {"op": "reboot"}           reboot the device
    {"op": "clear_frames"}     forget the frames received so far
    {"op": "settings_writes"}  [[key, value], ...] written since then
Anything else is answered with {"error": "..."}.
"""
import json
import signal
import socketserver
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from simulator import Simulator  # noqa: E402

SPEED = 20.0


def answer(sim, request):
    op = request.get("op") if isinstance(request, dict) else None
    if op == "state":
        return sim.state()
    if op == "reboot":
        sim.reboot()
        return {"ok": True}
    if op == "clear_frames":
        sim.clear_frames()
        return {"ok": True}
    if op == "settings_writes":
        return [[key, value] for _, key, value in sim.settings_writes()]
    return {"error": f"unknown op {op!r}"}


def control_server(sim):
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                try:
                    reply = answer(sim, json.loads(line))
                except ValueError as e:
                    reply = {"error": str(e)}
                self.wfile.write(json.dumps(reply).encode() + b"\n")
                self.wfile.flush()

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True

    return Server(("127.0.0.1", 0), Handler)


def main():
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    with Simulator(host="127.0.0.1", port=0, speed=SPEED,
                   push_interval=0.3, reboot_delay=2.0) as sim:
        server = control_server(sim)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"ports {sim.port} {server.server_address[1]}", flush=True)
        try:
            sys.stdin.read()
        finally:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
