"""The bounded profile of the safety state machine (README test command),
in each real Klipper tree.

Derandomized, so every run draws the same examples; the long random run
is `./build.sh bench --safety N` (runner.py)."""
import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from .machine import SafetyMachine


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_safety_rule_holds_under_generated_interleavings(tree,
                                                          monkeypatch):
    monkeypatch.setattr(SafetyMachine, "tree", tree)
    run_state_machine_as_test(SafetyMachine,
                              settings=settings.get_profile("safety-bounded"))
