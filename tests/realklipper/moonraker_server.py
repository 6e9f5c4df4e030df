"""Real Moonraker for the install and CLI checks: the one build.sh puts
in .cache/moonraker (or $PANDA_MOONRAKER; see realparts.py), on a
loopback port, in front
of a Printer's API socket, with a moonraker.conf that install.sh may
extend before it starts."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import realparts

CONF = """\
[server]
host: 127.0.0.1
port: {port}
klippy_uds_address: {sock}

[machine]
provider: none
validate_service: False

[authorization]
trusted_clients:
    127.0.0.0/8

[announcements]
# no remote announcement feeds: tests reach loopback only
enable_moonlight: False
"""


# Moonraker's update manager refreshes its own package with a pip dry-run
# against the package index: tests reach loopback only.
OFFLINE = dict(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")


def command():
    """The moonraker command (realparts.need: set up when missing, a
    skip with PANDA_SKIP=moonraker, a one-line failure otherwise)."""
    return str(realparts.need("moonraker", "moonraker"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moonraker:
    """Moonraker with data in data/ and its config in
    data/config/moonraker.conf (written now: CONF plus extra)."""

    def __init__(self, sock, data, extra=""):
        self.command = command()
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % (self.port,)
        self.data = data
        (self.data / "config").mkdir(parents=True, exist_ok=True)
        self.conf = self.data / "config" / "moonraker.conf"
        self.conf.write_text(CONF.format(port=self.port, sock=sock) + extra)
        self.log = self.data / "moonraker.stderr"
        self.proc = None

    def start(self):
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [self.command, "-d", str(self.data), "-c", str(self.conf),
                 "-n"], env=dict(os.environ, **OFFLINE), stdout=err,
                stderr=subprocess.STDOUT, start_new_session=True)

    def get(self, path, **query):
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=10) as reply:
            return json.load(reply)["result"]

    def post(self, path, **query):
        request = urllib.request.Request(
            self.url + path + "?" + urllib.parse.urlencode(query),
            data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.load(reply)["result"]

    def query(self, *objects):
        return self.get("/printer/objects/query?"
                        + "&".join(urllib.parse.quote(o) for o in objects)
                        )["status"]

    def wait_ready(self, timeout=60.0, klippy_state="ready"):
        """Wait until Moonraker answers and Klipper is in klippy_state
        (any state with None)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("moonraker exited: %s" % (
                    self.log.read_text(errors="replace")[-3000:],))
            try:
                info = self.get("/server/info")
                if klippy_state in (None, info["klippy_state"]):
                    return info
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("moonraker not ready in %.0f s" % (
                    timeout,))
            time.sleep(0.2)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            # it and anything it started, in its own session (its group
            # id stays its own until it is reaped)
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
