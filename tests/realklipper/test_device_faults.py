"""Whatever the device sends, real Klipper sees no exception and no stall.

Known bad frames (malformed, binary, fragmented, wrongly typed with NaN
and Infinity, oversized) and, in the second half, hypothesis-generated
frame sequences: each goes over the simulator's real WebSocket through the
module's whole path (DeviceLink, the reactor, the Klipper glue, the
heater).  A marker frame after each sequence tells when the module has
handled it: it sets the firmware name that panda_breath reports."""
import json
import math

import pytest
from chamber import FAST, chamber_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realklipper.conftest import check_printer
from realklipper.helpers import link, writes
from realklipper.printer import Printer
from simulator import Simulator


def test_bad_frames_are_dropped_and_readings_continue(printer, sim):
    p = printer()
    for inject, error in [("send_malformed", "malformed JSON"),
                          ("send_binary", "binary frame dropped"),
                          ("send_wrong_types", "wrongly typed"),
                          ("send_fragmented", None)]:
        getattr(sim, inject)()
        marker = '{"settings":{"fw_version":"after %s"}}' % (inject,)
        sim.send(marker)
        p.wait_for(lambda m=marker: link(p)["firmware"] in m)
        if error is not None:
            assert error in link(p)["last_error"], inject
        # readings go on: the next push arrives and is read
        p.wait_for(lambda: link(p)["reading_age"] < 0.2)
    status = link(p)
    assert status["connected"] and status["reconnects"] == 0
    assert p.state()[0] == "ready"


def test_oversized_frame_causes_a_clean_reconnect(printer, sim):
    p = printer()
    sim.send_oversized()
    p.wait_for(lambda: link(p)["reconnects"] >= 1 and link(p)["connected"])
    assert "over" in link(p)["last_error"]
    assert p.state()[0] == "ready"


# Generated frames

READING_KEYS = ("warehouse_temper", "chamber_temp")
STATE_KEYS = ("work_on", "work_mode", "set_temp", "temp", "isrunning")
OTHER_KEYS = ("warehouse_sensor_status", "ptc_sensor_status",
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


class Rig:
    """One simulator and one printer for every generated example."""
    def __init__(self, tree, name, workdir):
        self.tree, self.name, self.workdir = tree, name, workdir
        self.sim = self.p = None
        self.started = False
        self.marker = 0

    def start(self):
        self.sim = Simulator(push_interval=0.5).start()
        self.sim.press(work_on=False)
        self.p = Printer(self.tree, self.name, chamber_config(
            self.sim.port, options=FAST), self.workdir)
        self.p.start()
        self.started = True
        self.p.wait_for(lambda: link(self.p)["connected"])

    def send(self, payloads):
        """Send the frames, then a marker; wait until the module handled
        it, the link went down or Klipper shut down.  Return whether the
        link stayed up."""
        self.marker += 1
        name = "marker %d" % (self.marker,)
        reconnects = link(self.p)["reconnects"]
        self.sim.send(*payloads, dumps({"settings": {"fw_version": name}}))

        def handled():
            st = link(self.p)
            return (st["firmware"] == name or st["reconnects"] != reconnects
                    or self.p.state()[0] != "ready")
        self.p.wait_for(handled)
        return link(self.p)["reconnects"] == reconnects

    def close(self):
        """Stop whatever start() got to; check the printer if it was
        ready (a printer that did not start raised already)."""
        try:
            if self.p is not None:
                if self.started:
                    check_printer(self.p)
                else:
                    self.p.stop()
        finally:
            if self.sim is not None:
                self.sim.stop()


@pytest.fixture(scope="module")
def rig(klipper_tree, tmp_path_factory):
    name, tree = klipper_tree
    rig = Rig(tree, name, tmp_path_factory.mktemp("fuzz-" + name))
    try:
        rig.start()
        yield rig
    finally:
        rig.close()


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(sequence=st.lists(frames, min_size=1, max_size=6))
def test_any_device_frames_reach_klipper_without_error(rig, sequence):
    p, sim = rig.p, rig.sim
    sim.clear_frames()
    stayed = rig.send(sequence)
    # Bad input is dropped frame by frame: only a frame that is not text
    # JSON of sane size may cost the connection.
    assert stayed, "link dropped: %s" % (link(p)["last_error"],)
    # Klipper's target is 0: nothing the device says makes the module
    # switch the heater on.
    assert ("work_on", True) not in writes(sim)
    assert ("work_mode", 2) not in writes(sim)
    status = link(p)
    temp = status["temperature"]
    assert temp is None or math.isfinite(temp)
    state, message = p.state()
    if state != "ready":
        # a reading out of range or a sensor fault, as Klipper would
        assert state == "shutdown" and message.startswith("Panda Breath"), \
            message
        p.restart("FIRMWARE_RESTART")
        p.wait_for(lambda: link(p)["connected"])
    else:
        assert len(p.output("PANDA_BREATH_STATUS")) == 1
