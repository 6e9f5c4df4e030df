"""A small Moonraker-like JSON-RPC WebSocket endpoint on loopback, for tests.

It answers printer.objects.query at /websocket the way Moonraker does
(result.status with the requested objects), with a bed target the test
sets, and records every request so a test can check what the device asked.
"""
import json
import threading
import time

from websockets.sync.server import serve


class MoonrakerEndpoint:
    def __init__(self, host="127.0.0.1", port=0):
        self.host, self.port = host, port
        self.bed_target = 0.0
        self.requests = []          # (time.monotonic(), decoded request)
        self.lock = threading.Lock()
        self.server = self.thread = None

    def start(self):
        self.server = serve(self._handler, self.host, self.port,
                            process_request=self._check_path,
                            compression=None, ping_interval=None)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       name="moonraker endpoint", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Close the listener and every connection (the printer is gone)."""
        if self.server is not None:
            self.server.shutdown()
            self.thread.join(5)
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def queries(self):
        with self.lock:
            return [r for _, r in self.requests]

    def wait_for_queries(self, count, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.queries()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.queries())} of {count} "
                                   "queries arrived")
            time.sleep(0.01)
        return self.queries()

    def _check_path(self, conn, request):
        if request.path.split("?", 1)[0] != "/websocket":
            return conn.respond(404, "Not Found\n")
        return None

    def _handler(self, conn):
        for text in conn:
            request = json.loads(text)
            with self.lock:
                self.requests.append((time.monotonic(), request))
            conn.send(json.dumps(self._answer(request)))

    def _answer(self, request):
        if request.get("method") != "printer.objects.query":
            return {"jsonrpc": "2.0", "id": request.get("id"),
                    "error": {"code": -32601, "message": "Method not found"}}
        values = {
            "webhooks": {"state": "ready"},
            "virtual_sdcard": {"progress": 0.0},
            "print_stats": {"state": "standby"},
            "extruder": {"temperature": 25.0, "target": 0.0},
            "heater_bed": {"temperature": 25.0, "target": self.bed_target},
        }
        wanted = request.get("params", {}).get("objects", {})
        status = {name: {field: values[name][field] for field in fields
                         if field in values.get(name, {})}
                  for name, fields in wanted.items() if name in values}
        return {"jsonrpc": "2.0", "id": request.get("id"),
                "result": {"eventtime": time.monotonic(), "status": status}}
