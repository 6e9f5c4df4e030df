"""The policy, decide(), on its own: every state of its small world, and
one example per row of its table.

The world: Klipper's wish (target 0 or 45, the setpoint, shutdown, pin
expiry), the device's report (or no link), what the module remembers,
and each event.  Every combination is walked; each decision must follow
the TABLE row it names, send only frames the device accepts, and keep
the safety rule."""
import itertools
import json

import policy_table
import pytest

FW = "V1.0.3"
AUTO, ALWAYS_ON, DRYING, UNKNOWN = 1, 2, 3, 7
DRY_PARAMS = {"temp": 45, "hours": 2, "preset": None, "heater": "chamber",
              "link_error": None}
AUTO_PARAMS = {"target": 40, "heat_at": 60, "fan_at": 40,
               "heater": "chamber", "link_error": None}
# What the device accepts (docs/protocol.md): whole numbers in range,
# work_on only as a JSON bool, and never printer_type, reset or
# factory_reset.
ACCEPTED = {"work_mode": (1, 3), "set_temp": (0, 60), "temp": (0, 60),
            "filament_drying_mode": (1, 3), "filament_temp": (40, 60),
            "filament_timer": (1, 99), "isrunning": (0, 1),
            "hotbedtemp": (40, 120), "filtertemp": (0, 120)}


def wishes(pb):
    """Each target with nothing in the way, Klipper shut down, its heater
    pin expired, or a guard holding the device off."""
    for target, setpoint in ((0., 0), (45., 45), (45., 52)):
        yield pb.Wish(target, setpoint)
        yield pb.Wish(target, setpoint, shutdown=True)
        yield pb.Wish(target, setpoint, expired=True)
        yield pb.Wish(target, setpoint, hold="guard g at 71C")


def reports(fw=FW):
    """No link, then every work_on, mode and drying state; the set_temp
    and the binding vary where a rule reads them."""
    yield None
    key = "temp" if fw == "V1.0.0" else "set_temp"   # V1.0.0's name
    base = {"fw_version": fw, key: 45, "printer_type": 1, "printer": {}}
    for on, mode, running in itertools.product(
            (False, True), (AUTO, ALWAYS_ON, DRYING, UNKNOWN), (0, 1)):
        yield dict(base, work_on=on, work_mode=mode, isrunning=running,
                   remaining_seconds=600 * running)
    yield dict(base, work_on=True, work_mode=ALWAYS_ON, isrunning=0,
               **{key: 30})
    for on in (False, True):
        yield dict(base, work_on=on, work_mode=AUTO, isrunning=0,
                   printer_type=2, printer={"state": 3})


SENT = ({}, {"work_mode": ALWAYS_ON, "set_temp": 45, "work_on": True},
        {"work_on": False})


def memories(pb, fw=FW):
    key = "temp" if fw == "V1.0.0" else "set_temp"
    sent = [{key if k == "set_temp" else k: v for k, v in s.items()}
            for s in SENT]
    for control, session, inherited, off_due, drying, writes in \
            itertools.product((None, "heat", "yielded"),
                              (None, "drying", "auto"), (False, True),
                              (False, True), (False, True), sent):
        yield pb.Memory(control, session, inherited, off_due, drying,
                        writes)


def events(pb, report):
    for kind in ("set", "wish", "down", "shutdown", "stop", "dry_stop",
                 "auto_off", "release", "unbind"):
        yield pb.Event(kind)
    yield pb.Event("dry", params=DRY_PARAMS)
    yield pb.Event("auto", params=AUTO_PARAMS)
    if report is not None:
        yield pb.Event("snapshot", dict(report))
        yield pb.Event("push", dict(report))
        # the end of a drying cycle: only these two keys
        yield pb.Event("push", {"isrunning": 0, "remaining_seconds": 0})


def view_of(report, sent):
    view = dict(report)
    view.update(sent)
    return view


def applied(view, frames):
    after = dict(view)
    for frame in frames:
        after.update(json.loads(frame)["settings"])
    return after


def frame_problem(frame):
    data = json.loads(frame)
    if list(data) != ["settings"] or len(data["settings"]) != 1:
        return "one setting per frame, in the settings root"
    (key, value), = data["settings"].items()
    if key == "work_on":
        return None if type(value) is bool else "work_on not a JSON bool"
    if key not in ACCEPTED:
        return "a write of %s" % (key,)
    low, high = ACCEPTED[key]
    if type(value) is not int or not low <= value <= high:
        return "%s=%r outside %d..%d" % (key, value, low, high)
    return None


def rows(pb):
    return {rule: (events.replace(" ", "").split(","), told)
            for rule, events, _, told in pb.TABLE}


_ROWS = {}


def safety_problem(pb, wish, report, memory, event, d):
    """What is wrong with decision d, or None."""
    table = _ROWS.get(id(pb)) or _ROWS.setdefault(id(pb), rows(pb))
    if d.rule not in table:
        return "rule %r is not in TABLE" % (d.rule,)
    kinds, told = table[d.rule]
    if event.kind not in kinds:
        return "rule %r is not a row for event %r" % (d.rule, event.kind)
    if d.told != told:
        return "row %r tells %r, the decision told %r" % (
            d.rule, told, d.told)
    for frame in d.frames:
        problem = frame_problem(frame)
        if problem:
            return problem
    if report is None:
        return "frames with the link down" if d.frames else None
    if d.told in ("heat", "setpoint") and not wish.heat:
        return "heat without Klipper's wish"
    if d.refused is not None and d.frames:
        return "frames sent with a refusal"
    # d.memory.sent holds the writes told now on top of the unconfirmed
    after = view_of(report, d.memory.sent)
    if event.kind == "shutdown" and after.get("work_on"):
        return "on after a shutdown"
    if event.kind in ("snapshot", "push") and wish.off and \
            after.get("work_on"):
        return "on while Klipper is shut down or a guard holds it off"
    if event.kind == "wish" and wish.hold and after.get("work_on"):
        return "on while a guard holds it off"
    if event.kind == "snapshot" and memory.off_due and not wish.heat \
            and after.get("work_on"):
        return "on with a shutdown's off unconfirmed"
    if event.kind in ("snapshot", "push", "set") and not wish.heat and \
            pb.heats_for_klipper(after):
        return "on in always-on mode without Klipper's target"
    if event.kind == "set" and wish.heat and d.told != "heat":
        return "a SET of the target did not re-assert it"
    if d.told == "heat" and not (
            after.get("work_on") and after.get("work_mode") == ALWAYS_ON
            and pb.set_temp_of(after) == wish.setpoint):
        return "heat frames that do not heat at the setpoint"
    return None


def undone(pb, wish, report, event, d):
    """The snapshot that would confirm d: is its heat or off undone?
    (Only what the module decides by itself: after a stop, or from the
    CLI, Klipper's wish is gone, and a mode command is the owner's.)"""
    if d.told not in ("heat", "off") or event.kind not in (
            "set", "wish", "snapshot", "push", "shutdown"):
        return False
    after = view_of(report, d.memory.sent)
    again = pb.decide(wish, after, d.memory, pb.Event("snapshot", after))
    return again.told == {"heat": "off", "off": "heat"}[d.told]


def walk(pb, fw=FW, memory_step=1):
    """Every (wish, report, memory, event) and its decision."""
    all_memories = list(memories(pb, fw))[::memory_step]
    for wish in wishes(pb):
        for report in reports(fw):
            for event in events(pb, report):
                if (event.kind == "shutdown") != wish.shutdown and \
                        event.kind == "shutdown":
                    continue    # Klipper is shut down when it says so
                for memory in all_memories:
                    yield wish, report, memory, event, pb.decide(
                        wish, report, memory, event)


def test_every_state_follows_its_row_and_the_safety_rule(pb):
    """The whole world, not a sample: about 700,000 decisions.  A
    decision is never undone by the snapshot that confirms it."""
    seen = set()
    count = 0
    for wish, report, memory, event, d in walk(pb):
        count += 1
        seen.add(d.rule)
        problem = safety_problem(pb, wish, report, memory, event, d)
        if problem is None and report is not None and undone(
                pb, wish, report, event, d):
            problem = "undone by the next snapshot"
        assert problem is None, (problem, d.rule, wish, report, memory,
                                 event, d)
    assert count > 600000
    assert seen == set(rows(pb)), set(rows(pb)) - seen


def test_decide_changes_nothing_it_is_given(pb):
    report = next(r for r in reports() if r)
    memory = pb.Memory(sent={"work_on": True})
    event = pb.Event("push", {"work_on": False})
    before = (dict(report), dict(memory.sent), dict(event.settings))
    for kind in ("push", "snapshot", "set", "stop"):
        pb.decide(pb.Wish(45., 45), report, memory,
                  pb.Event(kind, event.settings))
    assert before == (report, memory.sent, event.settings)


def test_the_first_firmware_numbers_modes_its_own_way(pb):
    """V1.0.0 swaps auto and drying; the rules read mode names."""
    for wish, report, memory, event, d in walk(pb, "V1.0.0", 7):
        problem = safety_problem(pb, wish, report, memory, event, d)
        assert problem is None, (problem, d.rule, wish, report, memory,
                                 event, d)


# One example per row: each row of TABLE, as a maintainer reads it.

OFF = {"fw_version": FW, "work_on": False, "work_mode": ALWAYS_ON,
       "set_temp": 45, "isrunning": 0, "printer_type": 1, "printer": {}}


def device(**changes):
    report = dict(OFF)
    report.update(changes)
    return report


HEATING = device(work_on=True)
DRYING_NOW = device(work_on=True, work_mode=DRYING, isrunning=1,
                    remaining_seconds=3600)
AUTO_NOW = device(work_on=True, work_mode=AUTO)
BOUND = device(printer_type=2, printer={"state": 3})


def examples(pb):
    W, M, E = pb.Wish, pb.Memory, pb.Event
    target = W(45., 45)
    down = E("down")
    return {
        "shutdown": (W(shutdown=True), HEATING, M(), E("shutdown")),
        "shutdown-later": (W(shutdown=True), None, M(), E("shutdown")),
        "set-later": (target, None, M(), E("set")),
        "set-heat": (target, DRYING_NOW, M(control="yielded"), E("set")),
        "set-off": (W(), HEATING, M(control="heat"), E("set")),
        "set-leave": (W(), DRYING_NOW, M(), E("set")),
        "wish-hold": (W(hold="guard g at 71C"), DRYING_NOW, M(),
                      E("wish")),
        "wish-setpoint": (W(45., 52), HEATING, M(control="heat"),
                          E("wish")),
        "wish-heat": (target, OFF, M(control="heat"), E("wish")),
        "wish-off": (W(45., 45, expired=True), HEATING,
                     M(control="heat"), E("wish")),
        "wish-same": (target, HEATING, M(control="heat"), E("wish")),
        "snapshot-off-due": (W(), DRYING_NOW, M(off_due=True),
                             E("snapshot", DRYING_NOW)),
        "snapshot-heat": (target, OFF, M(control="heat"),
                          E("snapshot", OFF)),
        "snapshot-yielded": (target, DRYING_NOW, M(control="yielded"),
                             E("snapshot", DRYING_NOW)),
        "snapshot-no-target": (W(), HEATING, M(), E("snapshot", HEATING)),
        "snapshot-outlived": (W(), AUTO_NOW, M(inherited=True),
                              E("snapshot", AUTO_NOW)),
        "snapshot-leave": (W(), DRYING_NOW, M(), E("snapshot", DRYING_NOW)),
        "push-shutdown": (W(shutdown=True), HEATING, M(),
                          E("push", HEATING)),
        "push-no-target": (W(), HEATING, M(), E("push", HEATING)),
        "push-yield": (target, OFF, M(control="heat"), E("push", OFF)),
        "push-leave": (W(), DRYING_NOW, M(), E("push", DRYING_NOW)),
        "down": (target, HEATING, M(control="heat"), down),
        "stop-off": (target, HEATING, M(control="heat"), E("stop")),
        "stop-leave": (W(), DRYING_NOW, M(), E("stop")),
        "refused": (target, OFF, M(), E("dry", params=DRY_PARAMS)),
        "dry": (W(), OFF, M(), E("dry", params=DRY_PARAMS)),
        "auto": (W(), BOUND, M(), E("auto", params=AUTO_PARAMS)),
        "dry-stop": (W(), DRYING_NOW, M(session="drying"), E("dry_stop")),
        "auto-off": (W(), AUTO_NOW, M(session="auto"), E("auto_off")),
        "mode-idle": (W(), OFF, M(), E("auto_off")),
        "release": (W(), HEATING, M(), E("release")),
        "unbind": (W(), AUTO_NOW, M(), E("unbind")),
        "release-leave": (W(), AUTO_NOW, M(), E("release")),
    }


def test_every_row_has_an_example(pb):
    assert set(examples(pb)) == set(rows(pb))


@pytest.mark.parametrize("rule", [
    "shutdown", "shutdown-later", "set-later", "set-heat", "set-off",
    "set-leave", "wish-hold", "wish-setpoint", "wish-heat", "wish-off",
    "wish-same",
    "snapshot-off-due", "snapshot-heat", "snapshot-yielded",
    "snapshot-no-target", "snapshot-outlived", "snapshot-leave",
    "push-shutdown", "push-no-target", "push-yield", "push-leave", "down",
    "stop-off", "stop-leave", "refused", "dry", "auto", "dry-stop",
    "auto-off", "mode-idle", "release", "unbind", "release-leave"])
def test_row(pb, rule):
    wish, report, memory, event = examples(pb)[rule]
    d = pb.decide(wish, report, memory, event)
    assert d.rule == rule
    assert d.told == rows(pb)[rule][1]
    assert safety_problem(pb, wish, report, memory, event, d) is None


def test_a_set_of_the_same_target_takes_the_device_back(pb):
    """The owner switched the device to drying at its panel while
    Klipper heated: the module let go, and M141 S45 again takes it
    back, with a line saying the drying ends."""
    target = pb.Wish(45., 45)
    d = pb.decide(target, DRYING_NOW, pb.Memory(control="heat"),
                  pb.Event("push", DRYING_NOW))
    assert d.rule == "push-yield" and d.memory.control == "yielded"
    assert any("set the chamber target again" in m for m in d.messages)
    again = pb.decide(target, DRYING_NOW, d.memory, pb.Event("set"))
    assert again.rule == "set-heat"
    assert [json.loads(f)["settings"] for f in again.frames] == [
        {"work_mode": 2}, {"set_temp": 45}, {"work_on": True}]
    assert any("replaces the drying session" in m for m in again.messages)


def test_a_reconnect_leaves_a_device_its_owner_took(pb):
    d = pb.decide(pb.Wish(45., 45), DRYING_NOW,
                  pb.Memory(control="yielded"),
                  pb.Event("snapshot", DRYING_NOW))
    assert d.frames == [] and d.memory.control == "yielded"


def test_a_shutdown_off_outlives_the_link_until_confirmed(pb):
    d = pb.decide(pb.Wish(shutdown=True), None, pb.Memory(),
                  pb.Event("shutdown"))
    assert d.memory.off_due and d.frames == []
    # after a RESTART: a fresh wish, the remembered duty
    later = pb.decide(pb.Wish(), DRYING_NOW, d.memory,
                      pb.Event("snapshot", DRYING_NOW))
    assert later.told == "off"
    seen_off = pb.decide(pb.Wish(), OFF, later.memory,
                         pb.Event("snapshot", OFF))
    assert not seen_off.memory.off_due


def test_status_keeps_report_and_writes_apart(pb):
    d = pb.decide(pb.Wish(45., 45), OFF, pb.Memory(), pb.Event("set"))
    assert d.memory.sent == {"work_mode": 2, "set_temp": 45,
                             "work_on": True}
    pushed = pb.decide(pb.Wish(45., 45), dict(OFF, isrunning=0), d.memory,
                       pb.Event("push", {"isrunning": 0}))
    assert pushed.memory.sent == d.memory.sent
    snap = pb.decide(pb.Wish(45., 45), HEATING, d.memory,
                     pb.Event("snapshot", HEATING))
    assert snap.told == "heat"          # a reconnect re-asserts
    assert pb.decide(pb.Wish(45., 45), HEATING, snap.memory,
                     pb.Event("down")).memory.sent == {}


def test_table_rows_are_unique_and_name_known_events(pb):
    ids = [row[0] for row in pb.TABLE]
    assert len(ids) == len(set(ids))
    for _, kinds, when, told in pb.TABLE:
        for kind in kinds.replace(" ", "").split(","):
            assert kind in pb.EVENTS
        assert told in pb.TOLD and when


def test_docs_show_the_table_the_code_follows(pb):
    with open(policy_table.DOC) as f:
        shown = policy_table.block(f.read())
    assert shown == policy_table.render(pb), (
        "docs/safety.md differs from TABLE: run"
        " `.venv/bin/python -m tests.policy_table --write`")
