"""The hypothesis state machine: its rules are the events of world.py.

Hypothesis draws sequences of Klipper events, device faults, panel presses
and waits; after each the world settles and checks the safety rule
against the simulator's real device state.  A failure is shrunk and its
message ends with the event script to hand to replay.replay()."""
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
)

from .world import AUTO, BAD_FRAMES, DRY, INITIAL, LINK_FAULTS, PRESSES, World

# 0, in range (whole and fractional), above the device's 60 but within
# Klipper's max_temp 70, and above max_temp (Klipper refuses it).
TARGETS = st.sampled_from([0, 45, 0.4, 30, 44.6, 60, 65, 70, 80])
OFF_FOR = st.sampled_from([0.05, 0.5])
# Long enough to see the link timeout (2 s) fire, or not.
WAITS = st.sampled_from([0.05, 0.3, 1.0, 2.5])

COMMON = dict(deadline=None, database=None, stateful_step_count=12,
              suppress_health_check=list(HealthCheck),
              report_multiple_bugs=False)
# The README's test command: a bounded, repeatable profile, a few
# examples in each real Klipper tree (each example starts Klipper).
settings.register_profile("safety-bounded", max_examples=10,
                          derandomize=True, **COMMON)
# The long run (./build.sh bench --safety N): fresh random examples.
settings.register_profile("safety-long", max_examples=10000, **COMMON)


class SafetyMachine(RuleBasedStateMachine):
    examples = steps = 0  # counted for the long run's summary
    tree = "upstream"  # the Klipper tree the examples run in

    def __init__(self):
        super().__init__()
        self.world = World(tree=self.tree)
        SafetyMachine.examples += 1

    @initialize(initial=st.sampled_from(sorted(INITIAL)))
    def start(self, initial):
        self.world.start(initial)

    # Klipper
    @rule(degrees=TARGETS)
    def set_target(self, degrees):
        self.world.step("set_target", degrees)

    @rule()
    def turn_off_heaters(self):
        self.world.step("turn_off_heaters")

    @rule()
    def emergency_stop(self):
        self.world.step("emergency_stop")

    @rule()
    def restart(self):
        self.world.step("restart")

    @rule()
    def firmware_restart(self):
        self.world.step("firmware_restart")

    @rule()
    def idle_timeout(self):
        self.world.step("idle_timeout")

    @rule(kind=st.sampled_from(sorted(DRY)))
    def dry(self, kind):
        self.world.step("dry", kind)

    @rule(kind=st.sampled_from(sorted(AUTO)))
    def auto(self, kind):
        self.world.step("auto", kind)

    # Device
    @rule(off_for=OFF_FOR)
    def reboot(self, off_for):
        self.world.step("reboot", off_for)

    @rule(off_for=OFF_FOR)
    def power_cycle(self, off_for):
        self.world.step("power_cycle", off_for)

    @rule(kind=st.sampled_from(sorted(PRESSES)))
    def press(self, kind):
        self.world.step("press", kind)

    @precondition(lambda self: len(self.world.faults) < len(LINK_FAULTS))
    @rule(name=st.sampled_from(LINK_FAULTS))
    def fault_on(self, name):
        self.world.step("fault", name, True)

    @precondition(lambda self: self.world.faults)
    @rule(data=st.data())
    def fault_off(self, data):
        name = data.draw(st.sampled_from(sorted(self.world.faults)))
        self.world.step("fault", name, False)

    @rule(kind=st.sampled_from(sorted(BAD_FRAMES)))
    def bad_frame(self, kind):
        self.world.step("bad_frame", kind)

    @rule(kind=st.sampled_from(["open", "short", None]))
    def sensor(self, kind):
        self.world.step("sensor", kind)

    # Time
    @rule(seconds=WAITS)
    def wait(self, seconds):
        self.world.step("wait", seconds)

    def teardown(self):
        try:
            if self.world.k is not None and not self.world.broken:
                self.world.finish()
        finally:
            SafetyMachine.steps += self.world.steps
            self.world.close()
