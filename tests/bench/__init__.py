"""Benchmarks and endurance runs for the Panda Breath module.

`./build.sh bench` runs `python -m tests.bench`: the module in real
Klipper (upstream and the Snapmaker U1 fork, tests/realklipper) against
the simulator on loopback, each figure measured for each tree, printed,
written to dist/bench/ and checked against its target (see
docs/performance.md).  `--soak MINUTES` runs a simulated long print.
"""
import os
import sys

# The real-Klipper platform and the shared chamber config live in tests/,
# which pytest puts on sys.path (pyproject.toml); do the same when run as a
# program.
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS not in sys.path:
    sys.path.append(TESTS)
