"""Whatever the device sends, Klipper sees no exception and no stall.

Hypothesis generates frame contents and sequences; the simulator sends
them over its real WebSocket to the module running in the harness, so each
frame takes the whole path: DeviceLink's frame handling, the reactor,
the Klipper glue and the heater.  After every sequence a marker reading
follows, and the test runs Klipper until the module has handled it."""
import json
import math
import threading

import pytest
from chamber import STALL_LIMIT, start_chamber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import Simulator

READING_KEYS = ("warehouse_temper", "chamber_temp")
STATE_KEYS = ("work_on", "work_mode", "set_temp", "temp", "isrunning")
OTHER_KEYS = ("fw_version", "warehouse_sensor_status", "ptc_sensor_status",
              "filament_temp", "filament_timer", "remaining_seconds",
              "printer_type", "language", "filtertemp", "hotbedtemp",
              "custom_temp", "custom_timer", "unknown")

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70),
    st.integers(-(1 << 70), 1 << 70),
    st.integers(10 ** 300, 10 ** 400),
    st.floats(allow_nan=True, allow_infinity=True), text)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(text, inner, max_size=3), max_leaves=6)
# Readings mostly in the heater's range, so most sequences run to the end
# instead of (correctly) shutting Klipper down.
readings = st.one_of(st.integers(0, 70), st.floats(0, 70), values)
settings_blocks = st.fixed_dictionaries(
    {}, optional={**{k: readings for k in READING_KEYS},
                  **{k: values for k in STATE_KEYS + OTHER_KEYS}})


def dumps(obj):
    return json.dumps(obj, allow_nan=True)


frames = st.one_of(
    settings_blocks.map(lambda s: dumps({"settings": s})),
    st.fixed_dictionaries({"settings": values}).map(dumps),
    st.dictionaries(st.sampled_from(("wifi", "printer", "response", "sta",
                                     "ap", "x")), values,
                    min_size=1, max_size=3).map(dumps),
    values.map(dumps),
    settings_blocks.map(lambda s: dumps({"settings": s})[:-3]),
    text,
    st.binary(max_size=32),
)


@pytest.fixture(scope="module")
def rig():
    with Simulator(push_interval=0.5) as sim:
        sim.press(work_on=False)
        rig = Rig(sim)
        yield rig
        rig.k.stop()
        assert rig.k.stall.max < STALL_LIMIT, (rig.k.stall.worst,
                                               rig.k.stall.max)


class Rig:
    def __init__(self, sim):
        self.sim = sim
        self.k = start_chamber(sim)
        self.marker = 0
        self.marked = threading.Event()
        self._watch()

    def _watch(self):
        """Notice when the link thread has handed the marker reading to
        the module (readings that queue up may be merged before they
        reach the heater, so the heater may never see it)."""
        self.breath = self.k.printer.lookup_object("panda_breath")
        link = self.breath.link
        notify = link.notify

        def link_notify(kind, *args):
            if (kind == "update" and args[0].get("warehouse_temper")
                    == self.marker + 0.5):
                self.marked.set()
            notify(kind, *args)
        link.notify = link_notify

    def restart(self):
        self.k.firmware_restart()
        self._watch()
        self.k.run_until(lambda: self.breath.connected, timeout=10)

    def handled(self):
        # the link has handed the marker over and the reactor has run
        # every callback queued until then
        return self.marked.is_set() and self.k.reactor._async_queue.empty()

    def send(self, payloads):
        """Send the frames, then a marker reading; run Klipper until the
        module has handled them (or the link or Klipper went down)."""
        # pushes carry whole degrees: a half degree marks our reading
        self.marker = self.marker % 60 + 1
        self.marked.clear()
        reconnects = self.breath.reconnects
        marker = {"settings": {"warehouse_temper": self.marker + 0.5}}
        # the same per-client queue every Simulator.send_* helper uses
        self.sim._send(list(payloads) + [dumps(marker)])
        self.k.run_until(
            lambda: (self.handled() or self.k.is_shutdown()
                     or self.breath.reconnects != reconnects), timeout=10)
        return self.breath.reconnects == reconnects


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(sequence=st.lists(frames, min_size=1, max_size=6))
def test_any_device_frames_reach_klipper_without_error_or_stall(rig,
                                                                sequence):
    k, sim = rig.k, rig.sim
    sim.clear_frames()
    k.stall.reset()
    stayed = rig.send(sequence)   # an escaped exception is raised here
    assert k.stall.max < STALL_LIMIT, (k.stall.worst, k.stall.max)
    # Bad input is dropped frame by frame: only a frame that is not text
    # JSON of sane size may cost the connection.
    assert stayed, "link dropped: %s" % (rig.breath.last_error,)
    # Klipper's target is 0: nothing the device says makes the module
    # switch the heater on.
    writes = [(key, value) for _, key, value in sim.settings_writes()]
    assert ("work_on", True) not in writes
    assert ("work_mode", 2) not in writes
    status = k.status("panda_breath")
    json.dumps(status, allow_nan=False)
    temp = status["temperature"]
    assert temp is None or math.isfinite(temp)
    if k.is_shutdown():
        # a reading out of range or a sensor fault, as Klipper would
        assert k.shutdown_message.startswith("Panda Breath"), \
            k.shutdown_message
        rig.restart()
    else:
        k.gcode("PANDA_BREATH_STATUS")
