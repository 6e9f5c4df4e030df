"""Benchmarks and endurance runs for the Panda Breath module.

`./build.sh bench` runs `python -m tests.bench`: the module in the Klipper
harness against the simulator on loopback, each figure measured, printed,
written to dist/bench/ and checked against its target (see
docs/performance.md).  `--soak MINUTES` runs a simulated long print.
"""
import os
import sys

# The harness and the shared chamber fixtures live in tests/, which pytest
# puts on sys.path (pyproject.toml); do the same when run as a program.
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS not in sys.path:
    sys.path.append(TESTS)
