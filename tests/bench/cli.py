"""`./build.sh bench [--quick] [--out DIR]`, `--soak MINUTES`, `--safety N`."""
import argparse
import logging
import os
import random
import sys
import time

from . import figures, report
from .procs import ROOT

DEFAULT_OUT = os.path.join(ROOT, "dist", "bench")


class Plan:
    """Sample counts of a run."""

    def __init__(self, quick):
        self.quick = quick
        self.commands = 20 if quick else 500
        self.readings = 40 if quick else 1500
        self.fault_seconds = 2. if quick else 8.
        # Reboots of 1 to 6.5 s, each at a random point of its half
        # second: multiples of the module's 0.5 s first retry would all
        # meet a retry just in time.
        rng = random.Random(7)
        self.reboot_delays = [round(1. + 0.5 * i + rng.uniform(.05, .45), 2)
                              for i in range(1 if quick else 11)]
        self.silent_samples = 1 if quick else 3
        self.idle_seconds = 4. if quick else 60.
        self.busy_seconds = 3. if quick else 20.
        self.cycles = 200 if quick else 10000
        self.warmup = 50 if quick else 1000


STEPS = (
    ("normal operation",
     lambda p: figures.normal_operation(p.commands, p.readings)),
    ("faults", lambda p: figures.fault_stalls(p.fault_seconds)),
    ("reconnect", lambda p: figures.reconnects(p.reboot_delays,
                                               p.silent_samples)),
    ("cpu", lambda p: figures.cpu_cost(p.idle_seconds, p.busy_seconds)),
    ("reconnect cycles", lambda p: figures.reconnect_cycles(p.cycles,
                                                            p.warmup)),
)


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser():
    p = Parser(prog="./build.sh bench",
               description="Measure what the Panda Breath module costs"
               " Klipper and how fast it reacts (see docs/performance.md).")
    p.add_argument("--quick", action="store_true",
                   help="small sample counts: a short run, for smoke tests")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="where report.json and report.md go"
                   " (default dist/bench)")
    p.add_argument("--soak", type=float, metavar="MINUTES",
                   help="run a simulated long print for MINUTES instead")
    p.add_argument("--safety", metavar="N",
                   help="run N examples of the safety state machine"
                   " instead (tests/safety)")
    return p


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        if args.soak is not None and not 0 < args.soak <= 7 * 24 * 60:
            raise UsageError("--soak wants a number of minutes above 0")
    except UsageError as e:
        print("bench: error: %s" % (e,), file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, filename=os.path.join(args.out, "bench.log"),
        filemode="w", format="%(asctime)s %(threadName)s %(message)s")
    if args.safety is not None:
        from tests.safety import runner
        return runner.main(args.safety)
    if args.soak is not None:
        from . import soak
        return soak.main(args.soak, args.out)
    return bench(args.quick, args.out)


def bench(quick, out):
    plan = Plan(quick)
    mode = "quick" if quick else "full"
    started = time.monotonic()
    results = []
    for name, step in STEPS:
        print("bench: %s ..." % (name,), file=sys.stderr, flush=True)
        results.extend(step(plan))
    elapsed = time.monotonic() - started
    report.write(out, results, mode, elapsed)
    print(report.text_table(report.table(results)))
    missed = [f.title for f in results if f.met() is False]
    print("\nreport: %s" % (os.path.join(out, "report.md"),))
    if missed:
        print("targets missed: %s" % (", ".join(missed),))
        return 1
    print("all targets met")
    return 0
