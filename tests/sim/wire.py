"""Helpers for talking to the simulator over the wire in tests."""
import time


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
