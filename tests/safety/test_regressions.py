"""Counterexamples the state machine found, replayed as event scripts.

Each one failed before the fix named in its docstring."""
from .replay import replay


def test_panel_switch_on_during_silent_link_is_undone_after_it():
    """The press's push was lost while the device was silent; the module
    re-reads the snapshot after a silence, so it sees the device heating
    in always-on mode with no target and turns it off."""
    replay([
        ("initial", "off"),
        ("fault", "half_open", True),
        ("press", "always_on"),
        ("fault", "half_open", False),
    ])
