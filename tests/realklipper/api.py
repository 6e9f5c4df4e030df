"""A client for Klipper's API socket (klippy.py -a <socket>).

Requests and replies are JSON objects, each followed by the byte 0x03.
Standard library only: the aarch64 QEMU guest uses it too."""
import itertools
import json
import queue
import socket
import threading

ETX = b"\x03"


class APIError(Exception):
    """An error reply (a G-code error among them), or a lost socket."""


class KlippyAPI:
    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.sock.settimeout(None)
        self.ids = itertools.count(1)
        self.replies = {}
        self.lock = threading.Lock()
        self.notes = queue.Queue()
        self.output = queue.Queue()
        self.closed = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True,
                                       name="klippy api reader")
        self.reader.start()

    def _read(self):
        buf = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                buf += data
                *messages, buf = buf.split(ETX)
                for raw in messages:
                    self._dispatch(json.loads(raw))
        except OSError:
            pass
        finally:
            self.closed.set()
            with self.lock:
                waiting = list(self.replies.values())
            for slot in waiting:
                slot.put({"error": {"message": "API socket closed"}})

    def _dispatch(self, msg):
        if "id" in msg:
            with self.lock:
                slot = self.replies.get(msg["id"])
            if slot is not None:
                slot.put(msg)
            return
        params = msg.get("params", {})
        if msg.get("method") == "gcode_output":
            self.output.put(params.get("response", ""))
        else:
            self.notes.put(params)

    def call(self, method, params=None, timeout=10.0):
        """Send a request and return its result; raise APIError on an
        error reply, a lost socket or no reply within timeout."""
        if self.closed.is_set():
            raise APIError("API socket closed")
        rid = next(self.ids)
        slot = queue.Queue()
        with self.lock:
            self.replies[rid] = slot
        req = {"id": rid, "method": method, "params": params or {}}
        try:
            self.sock.sendall(json.dumps(req).encode() + ETX)
            reply = slot.get(timeout=timeout)
        except queue.Empty:
            raise APIError("no reply to %s within %.0f s"
                           % (method, timeout)) from None
        except OSError as e:
            raise APIError("API socket: %s" % (e,)) from None
        finally:
            with self.lock:
                self.replies.pop(rid, None)
        if "error" in reply:
            raise APIError(reply["error"].get("message", reply["error"]))
        return reply.get("result")

    def info(self):
        return self.call("info", {"client_info": {"program": "tests"}})

    def gcode(self, script, timeout=30.0):
        return self.call("gcode/script", {"script": script}, timeout)

    def query(self, objects):
        """objects: {name: None (all fields) or [fields]} -> status."""
        return self.call("objects/query", {"objects": objects})["status"]

    def subscribe(self, objects):
        """Status now; later changes arrive in .notes as params dicts
        ({'eventtime': ..., 'status': {...}})."""
        result = self.call("objects/subscribe", {
            "objects": objects,
            "response_template": {"method": "status_update"}})
        return result["status"]

    def subscribe_output(self):
        """Console lines (respond_info, errors) arrive in .output."""
        self.call("gcode/subscribe_output", {
            "response_template": {"method": "gcode_output"}})

    def emergency_stop(self):
        return self.call("emergency_stop")

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.reader.join(timeout=5)
