"""Helpers for talking to the simulator over the wire in tests."""
import time

import websocket


def is_temperature(frame):
    return list(frame) == ["settings"] and list(
        frame["settings"]) == ["warehouse_temper"]


def deliver(sim, client, message, timeout=3.0):
    """Send a frame and wait until the device has read it."""
    count = len(sim.frames)
    client.send(message)
    deadline = time.monotonic() + timeout
    while len(sim.frames) <= count:
        if time.monotonic() > deadline:
            raise TimeoutError("the device never read the frame")
        time.sleep(0.005)
    return sim.state()


def closed(client, timeout=2.0):
    """True once the connection ends (frames before that are skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.ws.settimeout(deadline - time.monotonic())
            client.ws.recv()
        except websocket.WebSocketTimeoutException:
            return False
        except (websocket.WebSocketConnectionClosedException, OSError):
            return True
    return False
