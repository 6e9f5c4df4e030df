"""setup, disable and restart never restart Klipper in the middle of a
print: they ask Moonraker, then Klipper's own API socket, and refuse
unless they know nothing prints (or --force says so).

Moonraker and Klipper are played here by canned replies in the shape of
their real ones (/printer/objects/query, objects/query); the run against
real Klipper is in tests/realklipper/."""
import http.server
import json
import socket
import threading

import pytest
from pkgtools import run_cli

from simulator import Simulator


@pytest.fixture(scope="module")
def sim():
    with Simulator(push_interval=0.1) as device:
        yield device


class FakeMoonraker(http.server.ThreadingHTTPServer):
    """Answers print_stats queries with a given state or HTTP status."""

    def __init__(self, state="standby", status=200):
        self.state, self.status, self.queries = state, status, []
        super().__init__(("127.0.0.1", 0), MoonrakerReply)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.shutdown()
        self.server_close()


class MoonrakerReply(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.queries.append(self.path)
        if self.server.status != 200:
            self.send_error(self.server.status)
            return
        body = json.dumps({"result": {"eventtime": 1.0, "status": {
            "print_stats": {"state": self.server.state}}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def moonraker():
    servers = []

    def start(state="standby", status=200):
        servers.append(FakeMoonraker(state, status))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


def closed_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def klipper_socket(path, state=None):
    """A Unix socket at path answering objects/query with print_stats
    state, or accepting and never answering when state is None."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve():
        conn, _ = server.accept()
        with conn:
            request = b""
            while not request.endswith(b"\x03"):
                request += conn.recv(4096)
            if state is None:
                conn.recv(4096)         # until the client gives up
                return
            reply = {"id": json.loads(request[:-1])["id"], "result": {
                "eventtime": 1.0, "status": {"print_stats": {
                    "state": state}}}}
            conn.sendall(json.dumps(reply).encode() + b"\x03")
    threading.Thread(target=serve, daemon=True).start()
    return server


@pytest.fixture
def config_dir(tmp_path):
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "printer.cfg").write_text("[printer]\nkinematics: none\n")
    return folder


def setup(sim, config_dir, marker, url, *extra):
    return run_cli("setup", "--host", "127.0.0.1", "--port", sim.port,
                   "--config-dir", config_dir, "--timeout", 2,
                   "--restart-cmd", f"touch {marker}", "--moonraker", url,
                   *extra)


@pytest.mark.parametrize("state", ["printing", "paused"])
def test_setup_does_not_restart_klipper_during_a_print(
        sim, config_dir, tmp_path, moonraker, state):
    marker = tmp_path / "restarted"
    server = moonraker(state)
    result = setup(sim, config_dir, marker, server.url)
    assert result.returncode == 1
    assert f"Klipper not restarted: a print is {state} (Moonraker)" \
        in result.stderr
    assert "--force" in result.stderr
    assert not marker.exists()
    assert (config_dir / "panda_breath.cfg").exists()
    assert server.queries == ["/printer/objects/query?print_stats"]


def test_setup_restarts_an_idle_klipper(sim, config_dir, tmp_path,
                                        moonraker):
    marker = tmp_path / "restarted"
    result = setup(sim, config_dir, marker, moonraker("complete").url)
    assert result.returncode == 0, result.stderr
    assert "Klipper is not printing (Moonraker: complete)" in result.stdout
    assert marker.exists()


def test_force_restarts_during_a_print_without_asking(
        sim, config_dir, tmp_path, moonraker):
    marker = tmp_path / "restarted"
    server = moonraker("printing")
    result = setup(sim, config_dir, marker, server.url, "--force")
    assert result.returncode == 0, result.stderr
    assert marker.exists() and server.queries == []


def test_disable_during_a_print_removes_but_does_not_restart(
        sim, config_dir, tmp_path, moonraker):
    marker = tmp_path / "restarted"
    idle = moonraker("standby")
    assert setup(sim, config_dir, marker, idle.url).returncode == 0
    marker.unlink()
    result = run_cli("disable", "--config-dir", config_dir, "--restart-cmd",
                     f"touch {marker}", "--moonraker",
                     moonraker("printing").url)
    assert result.returncode == 1
    assert "a print is printing" in result.stderr
    assert not marker.exists()
    assert not (config_dir / "panda_breath.cfg").exists()
    assert "include" not in (config_dir / "printer.cfg").read_text()


def restart(tmp_path, url, sock, *extra):
    marker = tmp_path / "restarted"
    result = run_cli("restart", "--restart-cmd", f"touch {marker}",
                     "--moonraker", url, "--klipper-socket", sock,
                     "--config-dir", tmp_path, *extra)
    return result, marker.exists()


def test_without_moonraker_klippers_socket_is_asked(tmp_path):
    path = tmp_path / "klippy.sock"
    server = klipper_socket(path, "printing")
    try:
        result, restarted = restart(tmp_path, closed_url(), path)
    finally:
        server.close()
    assert result.returncode == 1 and not restarted
    assert f"a print is printing (Klipper's API socket {path})" \
        in result.stderr


def test_without_moonraker_an_idle_klipper_is_restarted(tmp_path):
    path = tmp_path / "klippy.sock"
    server = klipper_socket(path, "standby")
    try:
        result, restarted = restart(tmp_path, closed_url(), path)
    finally:
        server.close()
    assert result.returncode == 0 and restarted, result.stderr


def test_a_klipper_that_does_not_run_is_started(tmp_path, moonraker):
    stale = tmp_path / "klippy.sock"        # left behind, nobody listens
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(stale))
    server.close()
    # Moonraker is up but has no Klipper: HTTP 503
    result, restarted = restart(tmp_path, moonraker(status=503).url, stale)
    assert result.returncode == 0 and restarted, result.stderr
    assert "Klipper is not running" in result.stdout
    result, restarted = restart(tmp_path, closed_url(), tmp_path / "none")
    assert result.returncode == 0 and restarted, result.stderr


def test_when_it_cannot_be_told_klipper_is_not_restarted(tmp_path):
    path = tmp_path / "klippy.sock"
    server = klipper_socket(path, None)     # accepts, never answers
    try:
        result, restarted = restart(tmp_path, closed_url(), path)
    finally:
        server.close()
    assert result.returncode == 1 and not restarted
    assert "cannot tell whether it is printing" in result.stderr
    assert "is unreachable" in result.stderr
    assert "or pass --force" in result.stderr
