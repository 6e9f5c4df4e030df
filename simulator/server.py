"""The device's HTTP/WebSocket front end on asyncio, plus its clocks.

Runs inside one asyncio loop: a websockets server for ws://HOST:PORT/ws,
a ticker that drives the device model in device time, and a pusher that
sends the temperature to every client every push_interval (wall) seconds.
"""

import asyncio
import collections
import http
import json
import logging
import time

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from .moonraker import MoonrakerClient

log = logging.getLogger("simulator")
# websockets reports handshake failures we cause on purpose
logging.getLogger("simulator.websockets").setLevel(logging.CRITICAL)

Frame = collections.namedtuple("Frame", "time client text data")

TICK = 0.05  # wall seconds between device-model updates
OUTGOING_LIMIT = 64
SENT_LOG = 10000  # frames kept in DeviceServer.sent
CLOSE = object()  # queued after the last frame of a session that must end
WIFI = {
    "ssid": "HomeNetwork",
    "password": "correct-horse-battery",
    "hostname": "PandaBreath",
    "ap_ssid": "Panda_Breath_3F2A",
    "ap_password": "12345678",
}
STATUS_PAGE = """<!doctype html>
<title>Panda Breath simulator</title>
<h1>Panda Breath simulator</h1>
<p>Firmware {fw}. WebSocket at <code>/ws</code>; {clients} client(s).</p>
<p>Flash writes: {flash_writes}.</p>
"""


_ERROR_STATUSES = {int(s) for s in http.HTTPStatus if s >= 400}


def pretty(message):
    """JSON as cJSON_Print writes it: tabs, newlines, a tab after ':'."""
    return json.dumps(message, indent="\t", separators=(",", ":\t"))


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def decode(text):
    """Parse a frame like cJSON: strict JSON, first duplicate key wins."""
    def first_wins(pairs):
        obj = {}
        for key, value in pairs:
            obj.setdefault(key, value)
        return obj
    try:
        return json.loads(text, object_pairs_hook=first_wins,
                          parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None


class TextBytes(bytes):
    """Bytes sent as a text frame as they are, valid UTF-8 or not."""


class Session:
    """One TCP connection to the device's HTTP server."""

    def __init__(self, number, conn, sent):
        self.number = number
        self.conn = conn
        self.sent = sent
        self.peer = None
        self.upgraded = False
        # frames waiting for the socket; a client that stops reading
        # loses frames once this is full, as on the device
        self.outgoing = asyncio.Queue(maxsize=OUTGOING_LIMIT)

    def queue(self, payload, done=None):
        try:
            self.outgoing.put_nowait((payload, done))
        except asyncio.QueueFull:
            if payload is CLOSE:
                self.conn.transport.close()
            elif done is not None:
                done.set_result(False)

    def end(self):
        """Close after the frames already queued (a reboot's last words)."""
        if self.upgraded:
            self.queue(CLOSE)
        else:
            self.conn.transport.close()

    async def write(self):
        try:
            while True:
                payload, done = await self.outgoing.get()
                if payload is CLOSE:
                    self.conn.transport.close()  # flushes, then FIN
                    return
                self.sent.append(Frame(time.monotonic(), self.number,
                                       payload, None))
                try:
                    await self.conn.send(
                        payload, text=isinstance(payload, TextBytes) or None)
                finally:
                    if done is not None:
                        done.set_result(True)
        except ConnectionClosed:
            pass
        finally:
            while not self.outgoing.empty():
                _, done = self.outgoing.get_nowait()
                if done is not None:
                    done.set_result(False)


class DeviceConnection(ServerConnection):
    """A websockets connection that reports to the DeviceServer and can
    write the snapshot in the same transport write as the 101 response."""

    owner = None
    first_frame = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self.owner.session_opened(self)

    def connection_lost(self, exc):
        super().connection_lost(exc)
        self.owner.session_closed(self)

    def send_data(self):
        if self.first_frame is not None and self.protocol.state is State.OPEN:
            frame, self.first_frame = self.first_frame, None
            self.protocol.send_text(frame.encode())
            self.transport.write(b"".join(self.protocol.data_to_send()))
            return
        super().send_data()


class DeviceServer:
    def __init__(self, device, host="127.0.0.1", port=0, speed=1.0,
                 max_clients=7, reboot_delay=3.0, push_interval=0.5,
                 snapshot_with_handshake=False, chamber_file=None):
        self.device = device
        self.chamber_file = chamber_file  # a ChamberFile, or None
        self.host = host
        self.port = port
        self.speed = speed
        self.max_clients = max_clients
        self.reboot_delay = reboot_delay
        self.push_interval = push_interval
        self.snapshot_with_handshake = snapshot_with_handshake
        self.faults = {"half_open": False, "mute": False, "refuse": False,
                       "no_upgrade": False, "http_status": None,
                       "slow_handshake": 0.0}
        self.sessions = {}
        self.frames = []
        # (time, client, payload, None) of each frame the writer hands to
        # the socket, newest last: when a reading left the device
        self.sent = collections.deque(maxlen=SENT_LOG)
        self._numbers = 0
        self._listener = None
        self._tasks = []
        self._rebooting = None

    # -- lifecycle -------------------------------------------------------

    async def start(self):
        await self._listen()
        self._tasks = [asyncio.create_task(self._tick()),
                       asyncio.create_task(self._push()),
                       asyncio.create_task(MoonrakerClient(self).run())]
        return self

    async def stop(self):
        for task in self._tasks + [self._rebooting]:
            if task is not None:
                task.cancel()
        self._unlisten()
        for conn in list(self.sessions):
            conn.transport.abort()
        others = [t for t in asyncio.all_tasks()
                  if t is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=1)
        for task in others:
            task.cancel()

    async def _listen(self):
        if self._listener is not None:
            return
        self._listener = await serve(
            self._handler, self.host, self.port,
            process_request=self._process_request,
            process_response=self._process_response,
            create_connection=self._new_connection,
            compression=None, ping_interval=None, open_timeout=None,
            server_header=None,
            logger=logging.getLogger("simulator.websockets"))
        self.port = self._listener.sockets[0].getsockname()[1]
        log.info("listening on ws://%s:%d/ws", self.host, self.port)

    def _unlisten(self):
        if self._listener is not None:
            self._listener.server.close()  # stop accepting, keep sessions
            self._listener = None

    def _new_connection(self, *args, **kwargs):
        conn = DeviceConnection(*args, **kwargs)
        conn.owner = self
        return conn

    # -- sessions --------------------------------------------------------

    def session_opened(self, conn):
        if len(self.sessions) >= self.max_clients:
            # Out of sockets: like ESP-IDF's httpd, accept and close.
            log.info("connection refused: %d sockets in use",
                     len(self.sessions))
            conn.transport.close()
            return
        self._numbers += 1
        session = Session(self._numbers, conn, self.sent)
        session.peer = conn.transport.get_extra_info("peername")
        self.sessions[conn] = session
        if self.faults["half_open"]:
            conn.transport.pause_reading()

    def session_closed(self, conn):
        session = self.sessions.pop(conn, None)
        if session is not None and session.upgraded:
            log.info("client %d disconnected (%d connected)",
                     session.number, self.client_count())

    def client_count(self):
        return sum(1 for s in self.sessions.values() if s.upgraded)

    def clients(self):
        return [s for s in self.sessions.values()
                if s.upgraded and s.conn.protocol.state is State.OPEN]

    async def _process_request(self, conn, request):
        if self.faults["no_upgrade"]:
            await asyncio.shield(conn.connection_lost_waiter)
            return conn.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "")
        delay = self.faults["slow_handshake"]
        if delay:
            await asyncio.sleep(delay)
        status = self.faults["http_status"]
        if status:
            return conn.respond(status, http.HTTPStatus(status).phrase + "\n")
        path = request.path.split("?", 1)[0]
        if path == "/":
            response = conn.respond(http.HTTPStatus.OK, STATUS_PAGE.format(
                fw=self.device.profile.fw_version,
                clients=self.client_count(),
                flash_writes=self.device.nvs.writes))
            response.headers["Content-Type"] = "text/html; charset=utf-8"
            return response
        if path != "/ws":
            return conn.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    def _process_response(self, conn, request, response):
        if (self.snapshot_with_handshake and response.status_code == 101
                and not self.faults["mute"]):
            conn.first_frame = self._snapshot_text()
        return None

    def _snapshot_text(self):
        return pretty(self.device.snapshot(WIFI))

    async def _handler(self, conn):
        session = self.sessions.get(conn)
        if session is None:
            return
        session.upgraded = True
        host, port = (session.peer or ("?", 0))[:2]
        log.info("client %d connected from %s:%s (%d connected)",
                 session.number, host, port, self.client_count())
        writer = None
        try:
            if self.faults["mute"]:
                pass  # a hung push task says nothing, not even hello
            elif (conn.first_frame is not None
                  or not self.snapshot_with_handshake):
                conn.first_frame = None
                await conn.send(self._snapshot_text())
            writer = asyncio.create_task(session.write())
            while True:
                message = await conn.recv()
                if self.faults["half_open"]:
                    conn.transport.pause_reading()
                    await self._half_open_over()
                self._receive(session, message)
        except ConnectionClosed:
            pass
        finally:
            if writer is not None:
                writer.cancel()

    async def _half_open_over(self):
        while self.faults["half_open"]:
            await asyncio.sleep(TICK)

    def _receive(self, session, message):
        if isinstance(message, bytes):
            text, data = message.decode("utf-8", "replace"), None
        else:
            text, data = message, decode(message)
        self.frames.append(Frame(time.monotonic(), session.number, text, data))
        if data is not None:
            try:
                self.device.receive(data)
            except Exception:  # a simulator bug: say so, keep the link
                log.exception("device model failed on %r", text[:200])
            self.flush()

    # -- clocks ----------------------------------------------------------

    async def _tick(self):
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(TICK)
            now = loop.time()
            try:
                self.device.advance((now - last) * self.speed)
            except Exception:  # a simulator bug: say so, keep time going
                log.exception("device model failed")
            last = now
            if self.chamber_file is not None:
                self.chamber_file.update(self.device.thermal.chamber, now)
            self.flush()

    async def _push(self):
        while True:
            await asyncio.sleep(self.push_interval)
            if self.device.online:
                self.broadcast(self.device.temperature_message())

    # -- output ----------------------------------------------------------

    def flush(self):
        """Carry out what the device model asked for."""
        outbox, self.device.outbox = self.device.outbox, []
        for kind, message in outbox:
            if kind == "broadcast":
                self.broadcast(message)
            elif kind == "reboot":
                self.reboot()

    def broadcast(self, message):
        if self.faults["half_open"] or self.faults["mute"]:
            return  # a silent device says nothing
        text = pretty(message)
        for session in self.clients():
            session.queue(text)

    async def send_to_all(self, payloads):
        """Queue each payload (str, bytes or an iterable of str fragments)
        to every client, in order, and wait until they are written."""
        loop = asyncio.get_running_loop()
        pending = []
        for session in self.clients():
            for payload in payloads:
                done = loop.create_future()
                session.queue(payload, done)
                pending.append(done)
        if pending:
            await asyncio.wait(pending, timeout=10)

    # -- faults and power --------------------------------------------------

    async def set_fault(self, name, value):
        if name not in self.faults:
            raise ValueError(f"unknown fault {name!r}")
        if name == "http_status" and value not in (None, 0, False):
            if value not in _ERROR_STATUSES:
                raise ValueError(f"http_status must be an HTTP error "
                                 f"status such as 404 or 500, not {value!r}")
            value = int(value)
        elif name == "slow_handshake":
            value = float(value or 0)
            if value < 0:
                raise ValueError("slow_handshake must be >= 0 seconds")
        elif name != "http_status":
            value = bool(value)
        self.faults[name] = value or (None if name == "http_status" else value)
        if name == "half_open":
            for conn in self.sessions:
                if value:
                    conn.transport.pause_reading()
                else:
                    conn.transport.resume_reading()
        elif name == "refuse":
            if value:
                self._unlisten()
            elif self.device.online:
                await self._listen()
        log.info("fault %s = %s", name, self.faults[name])

    def drop_all(self):
        for conn in list(self.sessions):
            conn.transport.abort()

    def reboot(self, delay=None, power_cycle=False):
        """Go offline now; come back (in a task) after delay seconds."""
        if not self.device.online:
            return
        delay = self.reboot_delay if delay is None else delay
        log.info("%s (back in %.1f s)",
                 "power cycle" if power_cycle else "rebooting", delay)
        self.device.shut_down()
        self._unlisten()
        for session in list(self.sessions.values()):
            if power_cycle:
                session.conn.transport.abort()
            else:
                session.end()
        self._rebooting = asyncio.create_task(self._come_back(delay))

    async def _come_back(self, delay):
        await asyncio.sleep(delay)
        # Listening first: a device seen online takes connections.
        if not self.faults["refuse"]:
            await self._listen()
        self.device.boot()
        log.info("device up (boot %d)", self.device.boot_count)
