"""The device's own Moonraker client, as V1.0.3 runs it when bound to Klipper.

Bound to Klipper (printer_type 2 plus a name/ip/port binding), the device
opens ws://<ip>:<port>/websocket and sends the JSON-RPC
printer.objects.query every second (every 3 s after a failure).  The bed
target in the answers feeds the auto-mode rule (device.py); while the link
is down auto mode neither heats nor runs the fan.  The printer root's
state follows the link: 2 connecting, 3 connected, 4 failed.

Intervals are device seconds, so the simulator's speed factor shortens
them.  Like everything in the simulator, it talks to loopback only: a
binding to any other address fails without a packet being sent.
"""

import asyncio
import ipaddress
import json
import logging

from websockets.asyncio.client import connect
from websockets.exceptions import (
    InvalidHandshake,
    InvalidURI,
    WebSocketException,
)

from .device import CONNECTING, is_number

log = logging.getLogger("simulator")

CONNECTED, FAILED = 3, 4
POLL = 1.0  # device seconds between queries
RETRY = 3.0  # device seconds before a new attempt after a failure
ANSWER_TIMEOUT = 2.0  # device seconds to wait for an answer
MIN_POLL = 0.05  # wall seconds: the fastest the simulator polls
MIN_ANSWER_TIMEOUT = 0.5  # wall seconds: loopback still needs some time
IDLE = 0.05  # wall seconds between checks for a binding
# The objects and fields the firmware asks for, exactly (protocol.md).
QUERY_OBJECTS = {
    "webhooks": ["state"],
    "virtual_sdcard": ["progress"],
    "print_stats": ["state"],
    "extruder": ["temperature", "target"],
    "heater_bed": ["temperature", "target"],
}
FAILURES = (OSError, asyncio.TimeoutError, WebSocketException,
            InvalidHandshake, InvalidURI, ValueError)


class LinkFailed(Exception):
    pass


def is_loopback(ip):
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def bed_target(answer):
    """heater_bed.target from a query answer (0 when absent or bad)."""
    result = answer.get("result")
    status = result.get("status") if isinstance(result, dict) else None
    bed = status.get("heater_bed") if isinstance(status, dict) else None
    target = bed.get("target") if isinstance(bed, dict) else None
    return float(target) if is_number(target) else 0.0


class MoonrakerClient:
    def __init__(self, server):
        self.server = server
        self.device = server.device
        self.queries = 0

    def _wall(self, device_seconds, least):
        return max(least, device_seconds / self.server.speed)

    def binding(self):
        """(boot, ip, port) while the device is up and bound to Klipper."""
        d = self.device
        if not d.online or not d._klipper_bound():
            return None
        b = d.settings["printer"]
        if not isinstance(b.get("ip"), str) or not is_number(b.get("port")):
            return None
        return d.boot_count, b["ip"], b["port"]

    async def run(self):
        while True:
            binding = self.binding()
            if binding is None:
                await asyncio.sleep(IDLE)
                continue
            await self._session(binding)
            await self._wait(binding, self._wall(RETRY, MIN_POLL))

    async def _wait(self, binding, seconds):
        """Sleep, waking early once the binding changed."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while self.binding() == binding:
            left = end - loop.time()
            if left <= 0:
                return True
            await asyncio.sleep(min(left, IDLE))
        return False

    async def _session(self, binding):
        _, ip, port = binding
        if not is_loopback(ip):
            log.info("binding to %s refused: the simulator only talks to "
                     "loopback addresses", ip)
            self._report(binding, FAILED)
            return
        url = f"ws://{ip}:{port}/websocket"
        try:
            async with connect(
                    url, open_timeout=self._wall(ANSWER_TIMEOUT,
                                                 MIN_ANSWER_TIMEOUT),
                    ping_interval=None, close_timeout=0.2,
                    compression=None, max_size=1 << 20,
                    logger=logging.getLogger("simulator.moonraker")) as ws:
                log.info("Moonraker link up: %s", url)
                while self.binding() == binding:
                    target = await self._query(ws)
                    self._report(binding, CONNECTED, target)
                    await self._wait(binding, self._wall(POLL, MIN_POLL))
        except FAILURES as err:
            log.info("Moonraker link to %s failed: %s", url,
                     type(err).__name__)
            self._report(binding, FAILED)

    async def _query(self, ws):
        self.queries += 1
        ident = self.queries
        await ws.send(json.dumps({
            "jsonrpc": "2.0", "method": "printer.objects.query",
            "params": {"objects": QUERY_OBJECTS}, "id": ident}))
        timeout = self._wall(ANSWER_TIMEOUT, MIN_ANSWER_TIMEOUT)
        async with asyncio.timeout(timeout):
            while True:
                answer = json.loads(await ws.recv())
                # Moonraker also sends notifications; skip them.
                if isinstance(answer, dict) and answer.get("id") == ident:
                    return bed_target(answer)

    def _report(self, binding, state, target=0.0):
        if self.binding() != binding:
            return  # unbound or rebooted meanwhile: not ours to report
        link = self.device.link
        changed = link.state != state
        link.report(state, state == CONNECTED, target)
        if changed:
            self.device.outbox.append(
                ("broadcast", {"printer": {"state": state}}))
            self.server.flush()


__all__ = ["MoonrakerClient", "QUERY_OBJECTS", "CONNECTING", "CONNECTED",
           "FAILED"]
