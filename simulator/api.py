"""Simulator: the device and its server on an asyncio loop in a thread.

Every method is thread-safe: it runs on the loop and returns once done.
"""

import asyncio
import math
import threading
import time

from .chamber_file import ChamberFile
from .device import Device
from .nvs import Nvs
from .profiles import DEFAULT_FIRMWARE, get_profile
from .server import DeviceServer, TextBytes, pretty

MAX_SPEED = 20000.0  # beyond this the model cannot keep up in real time
WRONG_TYPES = (
    '{"settings":{"warehouse_temper":"45"}}',
    '{"settings":{"warehouse_temper":NaN}}',
    '{"settings":{"warehouse_temper":Infinity}}',
    '{"settings":{"warehouse_temper":-Infinity}}',
    '{"settings":{"warehouse_temper":null}}',
    '{"settings":{"warehouse_temper":true}}',
    '{"settings":{"warehouse_temper":[45]}}',
    '{"settings":{"warehouse_temper":1e999}}',
    '{"settings":"warehouse_temper"}',
    '{"settings":{"work_on":"1","isrunning":"yes","set_temp":{}}}',
)
MALFORMED = '{"settings":{"warehouse_temper":4'
CHAMBER_RANGE = (-40.0, 200.0)  # C, set_chamber()
HEAT_RANGE = (-1000.0, 1000.0)  # W, set_chamber_heat()


def check_options(firmware, port, speed, ambient, max_clients, reboot_delay,
                  push_interval):
    """ValueError with a one-line message for any bad option."""
    get_profile(firmware)
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be 0..65535, not {port!r}")
    if not 0 < speed <= MAX_SPEED:
        raise ValueError(f"speed must be > 0 and <= {MAX_SPEED:g}")
    if not -40 <= ambient <= 80:
        raise ValueError("ambient must be between -40 and 80 C")
    if not isinstance(max_clients, int) or max_clients < 1:
        raise ValueError("max_clients must be a whole number >= 1")
    if reboot_delay < 0:
        raise ValueError("reboot_delay must be >= 0 seconds")
    if not 0.01 <= push_interval <= 60:
        raise ValueError("push_interval must be 0.01..60 seconds")


class Simulator:
    def __init__(self, firmware=DEFAULT_FIRMWARE, host="127.0.0.1", port=0,
                 speed=1.0, ambient=25.0, max_clients=7, reboot_delay=3.0,
                 push_interval=0.5, snapshot_with_handshake=False,
                 nvs_path=None, mqtt_aliases=False, chamber_file=None):
        check_options(firmware, port, speed, ambient, max_clients,
                      reboot_delay, push_interval)
        self.device = Device(get_profile(firmware), ambient=ambient,
                             nvs=Nvs(nvs_path), mqtt_aliases=mqtt_aliases)
        # written (at ambient) from here on, so Klipper can open it early
        self.chamber_file = None if chamber_file is None else ChamberFile(
            chamber_file, self.device.thermal.chamber)
        self.server = DeviceServer(
            self.device, host=host, port=port, speed=speed,
            max_clients=max_clients, reboot_delay=reboot_delay,
            push_interval=push_interval,
            snapshot_with_handshake=snapshot_with_handshake,
            chamber_file=self.chamber_file)
        self.host = host
        self._loop = None
        self._thread = None

    # -- lifecycle -------------------------------------------------------

    def start(self):
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=loop.run_forever, name="panda-breath-sim", daemon=True)
        self._thread.start()
        self._loop = loop
        if self.chamber_file is not None:
            self.chamber_file.open(self.device.thermal.chamber)
        try:
            self._run(self.server.start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        loop, self._loop = self._loop, None
        try:
            if loop is not None:
                try:
                    asyncio.run_coroutine_threadsafe(
                        self.server.stop(), loop).result(10)
                finally:
                    loop.call_soon_threadsafe(loop.stop)
                    self._thread.join(10)
                    loop.close()
        finally:
            if self.chamber_file is not None:
                self.chamber_file.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _run(self, coro, timeout=30):
        if self._loop is None:
            coro.close()
            raise RuntimeError("the simulator is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(
            timeout)

    def _call(self, fn, *args, **kwargs):
        async def call():
            return fn(*args, **kwargs)
        return self._run(call())

    @property
    def port(self):
        return self.server.port

    @property
    def url(self):
        return f"ws://{self.host}:{self.port}/ws"

    # -- observation -----------------------------------------------------

    def state(self):
        def read():
            state = self.device.state()
            state["clients"] = self.server.client_count()
            state["faults"] = dict(self.server.faults)
            cf = self.chamber_file
            state["chamber_file"] = None if cf is None else cf.path
            state["chamber_file_fault"] = None if cf is None else cf.fault
            return state
        return self._call(read)

    @property
    def frames(self):
        return list(self.server.frames)

    def clear_frames(self):
        self._call(self.server.frames.clear)

    def settings_writes(self):
        writes = []
        for frame in self.frames:
            data = frame.data
            if isinstance(data, dict) and isinstance(
                    data.get("settings"), dict):
                writes.extend((frame.time, key, value)
                              for key, value in data["settings"].items())
        return writes

    def wait_for(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if predicate(state):
                return state
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met in {timeout} s; "
                                   f"state: {state}")
            time.sleep(0.02)

    # -- faults and actions ----------------------------------------------

    def set_fault(self, name, value):
        self._run(self.server.set_fault(name, value))

    def drop_all(self):
        self._call(self.server.drop_all)

    def send_malformed(self):
        self._send([MALFORMED])

    def send_binary(self):
        self._send([pretty(self.device.temperature_message()).encode()])

    def send_oversized(self, size=1 << 20):
        head = '{"settings":{"warehouse_temper":25},"pad":"'
        pad = max(0, size - len(head) - 2)
        self._send([head + "x" * pad + '"}'])

    def send_fragmented(self, parts=3):
        text = pretty({"settings": {"warehouse_temper": 25}})
        step = -(-len(text) // parts)
        self._send([[text[i:i + step] for i in range(0, len(text), step)]])

    def send_wrong_types(self):
        self._send(list(WRONG_TYPES))

    def send(self, *payloads):
        """Write raw payloads (str text frames, bytes binary frames) to
        every client, as a misbehaving device would."""
        self._send(list(payloads))

    def send_text_bytes(self, data):
        """One text frame holding data as is, even if not UTF-8."""
        self._send([TextBytes(data)])

    def _send(self, payloads):
        self._run(self.server.send_to_all(payloads))

    def sensor_fault(self, kind):
        if kind not in (None, "open", "short"):
            raise ValueError("sensor fault is 'open', 'short' or None")

        def apply():
            self.device.set_sensor_fault(kind)
            self.server.flush()
        self._call(apply)

    def swap_leads(self, swapped=True):
        def apply():
            self.device.swapped = bool(swapped)
        self._call(apply)

    def reboot(self, delay=None):
        self._call(self.server.reboot, delay)

    def power_cycle(self, off_for=None):
        self._call(self.server.reboot, off_for, True)

    def press(self, **settings):
        def apply():
            self.device.press(**settings)
            self.server.flush()
        self._call(apply)

    def set_ambient(self, celsius):
        def apply():
            self.device.thermal.ambient = float(celsius)
        self._call(apply)

    # -- the chamber -------------------------------------------------------

    def set_chamber(self, celsius):
        """Put the chamber air at celsius now (the model carries on from
        there); the chamber file shows it at once unless faulted."""
        value = _number(celsius, *CHAMBER_RANGE, "chamber temperature", "C")

        def apply():
            self.device.thermal.chamber = value
            self._write_chamber_file(force=True)
        self._call(apply)

    def set_chamber_heat(self, watts):
        """Extra heat into the chamber air (the printer's bed, a hot
        neighbour; negative: an open door), on top of the device's."""
        value = _number(watts, *HEAT_RANGE, "chamber heat", "W")

        def apply():
            self.device.thermal.extra_watts = value
        self._call(apply)

    def chamber_file_fault(self, kind):
        """"freeze": the file stops changing; "garbage": a non-number is
        written once (Klipper's temperature_host then stops for good);
        None: numbers again."""
        if self.chamber_file is None:
            raise ValueError("no chamber file (chamber_file=, "
                             "--chamber-file)")

        def apply():
            self.chamber_file.set_fault(
                kind, self.device.thermal.chamber, time.monotonic())
        self._call(apply)

    def _write_chamber_file(self, force=False):
        if self.chamber_file is not None:
            self.chamber_file.update(self.device.thermal.chamber,
                                     time.monotonic(), force=force)


def _number(value, low, high, what, unit):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{what} must be a number {low:g}..{high:g} {unit}")
    return float(value)
