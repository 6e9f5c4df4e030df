"""Whatever the device sends, Klipper sees no exception and no stall.

Hypothesis generates frame contents and sequences; the simulator sends
them over its real WebSocket to the module running in the harness, so each
frame takes the whole path: DeviceLink's frame handling, the reactor,
the Klipper glue and the heater.  After every sequence a known reading
follows, and the test waits until Klipper's heater has it."""
import json
import math

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
        self._watch()

    def _watch(self):
        self.breath = self.k.printer.lookup_object("panda_breath")
        self.delivered = []
        sensor = self.breath.sensor
        inner = sensor.callback

        def callback(read_time, temp):
            self.delivered.append(temp)
            inner(read_time, temp)
        sensor.callback = callback

    def restart(self):
        self.k.firmware_restart()
        self._watch()
        self.k.run_until(lambda: self.breath.connected, timeout=10)

    def send(self, payloads):
        """Send the frames, then a marker reading; run Klipper until the
        marker reached the heater (or the link or Klipper went down)."""
        # pushes carry whole degrees: a half degree marks our reading
        self.marker = self.marker % 60 + 1
        marker = self.marker + 0.5
        start = len(self.delivered)
        reconnects = self.breath.reconnects
        # the same per-client queue every Simulator.send_* helper uses
        self.sim._send(list(payloads)
                       + [dumps({"settings": {"warehouse_temper": marker}})])
        self.k.run_until(
            lambda: (marker in self.delivered[start:] or self.k.is_shutdown()
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
