import json
import time

import pytest
import websocket

from simulator import Simulator


class Client:
    """A websocket-client connection that reads frames as JSON."""

    def __init__(self, url, timeout=3.0):
        self.ws = websocket.create_connection(url, timeout=timeout)
        self.snapshot = self.recv()

    def recv(self, timeout=None):
        if timeout is not None:
            self.ws.settimeout(timeout)
        text = self.ws.recv()
        return json.loads(text)

    def send(self, message):
        self.ws.send(message if isinstance(message, str)
                     else json.dumps(message))

    def recv_until(self, predicate, timeout=3.0):
        """The first frame that satisfies predicate (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching frame")
            frame = self.recv(timeout=left)
            if predicate(frame):
                return frame

    def frames_for(self, seconds):
        """Every frame received during the next seconds."""
        frames = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                frames.append(self.recv(timeout=left))
            except websocket.WebSocketTimeoutException:
                break
        return frames

    def close(self):
        self.ws.close(timeout=0.5)  # a silent device never answers


@pytest.fixture
def make_sim():
    sims = []

    def make(**options):
        options.setdefault("port", 0)
        options.setdefault("push_interval", 0.1)
        options.setdefault("reboot_delay", 0.2)
        sim = Simulator(**options).start()
        sims.append(sim)
        return sim
    yield make
    for sim in sims:
        sim.stop()


@pytest.fixture
def sim(make_sim):
    return make_sim()


@pytest.fixture
def connect():
    clients = []

    def open_client(sim_or_url, **kwargs):
        url = getattr(sim_or_url, "url", sim_or_url)
        client = Client(url, **kwargs)
        clients.append(client)
        return client
    yield open_client
    for client in clients:
        try:
            client.close()
        except Exception:
            pass
