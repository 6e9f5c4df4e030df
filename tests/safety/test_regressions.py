"""Counterexamples the state machine found, replayed as event scripts.

Each one failed before the fix named in its docstring."""
from .replay import replay


def test_panel_switch_on_during_silent_link_is_undone_after_it(tree):
    """The press's push was lost while the device was silent; the module
    re-reads the snapshot after a silence, so it sees the device heating
    in always-on mode with no target and turns it off."""
    replay([
        ("initial", "off"),
        ("fault", "half_open", True),
        ("press", "always_on"),
        ("fault", "half_open", False),
    ], tree=tree)


def test_shutdown_while_link_down_still_turns_device_off_after_restart(tree):
    """M112 with the link down, then RESTART before it is back: the new
    printer must still deliver the shutdown's off, even to a drying
    session."""
    replay([
        ("initial", "drying"),
        ("fault", "refuse", True),
        ("bad_frame", "oversized"),
        ("wait", 0.3),
        ("emergency_stop",),
        ("restart",),
        ("fault", "refuse", False),
    ], tree=tree)


def test_emergency_stop_during_power_cut_then_firmware_restart_ends_auto(tree):
    """The state machine's own shrunk counterexample of the same bug (run
    against the module before the fix): M112 while the device was
    powered off, FIRMWARE_RESTART, and the auto session lived on."""
    replay([
        ("initial", "auto"),
        ("power_cycle", 0.05),
        ("emergency_stop",),
        ("firmware_restart",),
        ("wait", 0.2),
    ], tree=tree)


def test_panel_off_while_heating_resumes_on_the_same_target(tree):
    """The module's message said to set the target again, but it saw
    only target changes: the same target set again did nothing.  Every
    set of the chamber target is now seen, and takes the device back."""
    world = replay([
        ("initial", "off"),
        ("set_target", 45),
        ("press", "off"),
        ("set_target", 45),
    ], tree=tree)
    assert any("set the chamber target again" in line
               for line in world.responses)


def test_frames_written_into_a_silent_link_never_arrive_after_a_restart(tree):
    """Heat frames sent while the device was silent reached it after the
    link came back, when Klipper's target was already 0: the device heated
    in always-on mode with no target.  Fixed by holding writes while the
    link is quiet and resetting a failed link instead of closing it."""
    replay([
        ("initial", "always_on"),
        ("restart",),
        ("fault", "half_open", True),
        ("wait", 2.5),
        ("set_target", 45),
        ("set_target", 70),
        ("wait", 2.5),
        ("firmware_restart",),
        ("fault", "half_open", False),
    ], tree=tree)


def test_frames_written_before_the_silence_was_noticed_die_with_the_link(tree):
    """The same, with the target set before the module could know the
    link had gone quiet: the reset discards what the device never took."""
    replay([
        ("initial", "always_on"),
        ("restart",),
        ("fault", "half_open", True),
        ("set_target", 45),
        ("wait", 2.5),
        ("firmware_restart",),
        ("fault", "half_open", False),
    ], tree=tree)
