"""One plain example per part of the safety rule, plus the oracle's own
checks (so a rule the state machine relies on can be seen to fail)."""
import collections
import time

import pytest
from realklipper.conftest import STALL_LIMIT

from .world import BOUND, SafetyViolation, World, wait_until

Frame = collections.namedtuple("Frame", "time client text data")


@pytest.fixture
def world(tree):
    w = World(tree=tree)
    yield w
    w.close()


def writes(world):
    return [(key, value) for _, key, value in world.sim.settings_writes()]


# Rule 1: while the link is up, the device heats only for Klipper's target
# or a session the user started on the device.

def test_rule1_always_on_switched_on_at_panel_without_target_is_undone(
        world):
    world.start("off")
    world.step("press", "always_on")
    assert not world.sim.state()["work_on"]
    assert writes(world)[-1] == ("work_on", False)


def test_rule1_drying_started_on_device_keeps_running(world):
    world.start("off")
    world.step("press", "drying")
    world.step("wait", 0.3)
    state = world.sim.state()
    assert state["work_on"] and state["isrunning"] and state["heat_request"]
    assert ("work_on", False) not in writes(world)


def test_rule1_klipper_target_heats_and_target_zero_stops(world):
    world.start("off")
    world.step("set_target", 45)
    world.step("set_target", 0)
    assert writes(world) == [("work_mode", 2), ("set_temp", 45),
                             ("work_on", True), ("work_on", False)]
    assert not world.sim.state()["heat_request"]


def test_rule1_drying_klipper_started_runs_and_ends_with_a_restart(world):
    world.start("off")
    world.step("dry", "pla")
    world.sim.wait_for(lambda s: s["work_on"] and s["isrunning"])
    world.step("restart")
    world.step("wait", 0.3)
    assert not world.sim.state()["work_on"]


def test_rule1_auto_off_ends_an_auto_session_started_on_device(world):
    world.start("auto")
    world.step("auto", "on")        # refused: the device is not bound
    assert world.sim.state()["work_on"]
    world.step("auto", "off")
    world.sim.wait_for(lambda s: not s["work_on"])


# Rule 2: convergence within the reconnect back-off plus one second once
# the link is back.

def test_rule2_power_cycle_resuming_heat_is_off_within_backoff_plus_1s(
        world):
    world.start("off")
    world.step("set_target", 45)
    world.step("power_cycle", 0.5)
    world.step("set_target", 0)  # while the device is off
    world.sim.wait_for(lambda s: s["online"], timeout=2)
    # The device resumes heating by itself; the module, running all the
    # while in real Klipper, may have turned it off already.
    back = time.monotonic()
    wait_until(lambda: not world.sim.state()["work_on"], timeout=BOUND)
    assert time.monotonic() - back <= BOUND
    assert writes(world)[-1] == ("work_on", False)


def test_rule2_refused_connections_then_target_reaches_device(world):
    world.start("off")
    world.step("fault", "refuse", True)
    world.step("bad_frame", "oversized")  # drops the link
    world.step("set_target", 50)
    world.step("wait", 0.3)
    assert not world.sim.state()["work_on"]
    world.step("fault", "refuse", False)
    state = world.sim.state()
    assert state["work_on"] and state["set_temp"] == 50


# Rule 3: a Klipper shutdown turns the device off whatever its mode; only
# a new target after Klipper is ready again undoes it.

def test_rule3_emergency_stop_ends_drying_and_restart_does_not_undo_it(
        world):
    world.start("drying")
    world.step("emergency_stop")
    assert not world.sim.state()["work_on"]
    # RESTART alone leaves real Klipper in its error state (the MCU is
    # shut down); FIRMWARE_RESTART brings it back.
    world.step("restart")
    assert world.klipper_error
    world.step("firmware_restart")
    world.step("wait", 0.3)
    assert not world.sim.state()["work_on"]
    world.step("set_target", 40)
    # after FIRMWARE_RESTART the link may still be coming up
    world.sim.wait_for(lambda s: s["work_on"], timeout=10)


def test_rule3_panel_switch_on_while_shut_down_is_undone(world):
    world.start("off")
    world.step("emergency_stop")
    world.step("press", "drying")
    assert not world.sim.state()["work_on"]


def test_rule3_shutdown_while_pushes_stopped_turns_the_device_off(world):
    world.start("off")
    world.step("set_target", 45)
    world.step("fault", "mute", True)
    world.step("wait", 2.5)         # the link is dropped and retried
    world.step("emergency_stop")
    world.step("fault", "mute", False)
    world.step("wait", 0.3)
    assert not world.sim.state()["work_on"]


def test_rule3_shutdown_during_silent_link_then_restart_ends_off(world):
    world.start("drying")
    world.step("fault", "half_open", True)
    world.step("emergency_stop")
    world.step("firmware_restart")
    world.step("fault", "half_open", False)
    world.step("wait", 0.3)
    assert not world.sim.state()["work_on"]


# Rule 4: only values the device accepts; work_on only as a JSON bool.

def test_rule4_target_above_device_maximum_is_sent_as_60(world):
    world.start("off")
    world.step("set_target", 70)
    assert ("set_temp", 60) in writes(world)
    texts = [f.text for f in world.sim.frames]
    assert '{"settings": {"work_on": true}}' in texts


def test_rule4_target_above_klipper_max_temp_sends_nothing(world):
    world.start("off")
    world.step("set_target", 80)
    assert writes(world) == []


@pytest.mark.parametrize("text,data,problem", [
    ('{"settings":{"work_on":1}}', {"settings": {"work_on": 1}},
     "JSON bool"),
    ('{"settings":{"set_temp":61}}', {"settings": {"set_temp": 61}},
     "set_temp outside"),
    ('{"settings":{"work_mode":0}}', {"settings": {"work_mode": 0}},
     "work_mode outside"),
    ('{"settings":{"printer_type":2}}', {"settings": {"printer_type": 2}},
     "printer_type"),
    ('{"settings":{"reset":1}}', {"settings": {"reset": 1}}, "reset"),
    ('{"printer":{"disconnect":1}}', {"printer": {"disconnect": 1}},
     "roots"),
    ('{"settings":{', None, "not a JSON object"),
])
def test_rule4_checker_rejects_what_the_device_must_never_get(text, data,
                                                                problem):
    found = World._frame_problem(Frame(0., 1, text, data))
    assert found is not None and problem in found


# Rule 5: no module callback holds the reactor for the stall limit.

def test_rule5_faults_and_restarts_stay_under_the_stall_limit(world):
    world.start("off")
    for event in [("set_target", 45), ("bad_frame", "malformed"),
                  ("bad_frame", "wrong_types"), ("fault", "no_upgrade", True),
                  ("reboot", 0.05), ("wait", 0.3),
                  ("fault", "no_upgrade", False), ("restart",),
                  ("bad_frame", "oversized"), ("wait", 0.3)]:
        world.step(*event)
    probe = world.k.status("reactor_probe")
    # the module's own time in its callbacks, measured and below the limit
    assert probe["instrumented"] and probe["module_calls"] > 0
    assert 0. < probe["module_hold_max"] < STALL_LIMIT, \
        probe["module_hold_worst"]
    assert probe["samples"] > 100


# The oracle fails when it should.

@pytest.mark.parametrize("change,user,rule", [
    (dict(work_on=True, work_mode=2, heat_request=True), False, "rule 1"),
    (dict(work_on=True, work_mode=3, heat_request=True), False, "rule 1"),
    (dict(work_on=True, work_mode=3, heat_request=True), True, None),
    (dict(work_on=False), False, None),
])
def test_oracle_judges_the_real_device_state(world, change, user, rule):
    world.start("off")
    world.user_session = user
    problem = world._rule_problem(dict(world.sim.state(), **change))
    assert (problem or "").startswith(rule or "")
    assert (problem is None) == (rule is None)


def test_oracle_failure_ends_with_the_script_to_replay(world):
    world.start("off")
    world.step("wait", 0.05)
    with pytest.raises(SafetyViolation) as failure:
        world._fail("rule 1: example")
    assert str(failure.value).endswith(
        "replay([\n    ('initial', 'off'),\n    ('wait', 0.05),\n])")
