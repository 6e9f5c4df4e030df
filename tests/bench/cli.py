"""`./build.sh bench [--quick] [--out DIR]`, `--soak MINUTES`, `--safety N`.

Exit status: 0 every judged target met; 1 a timing target missed (a
verdict on this machine's speed and load); 3 a correctness target missed
(one that must hold on any machine: the module holding the reactor, a
leaked fd or thread); 2 a usage error or no Klipper tree."""
import argparse
import logging
import os
import random
import sys
import time

from realklipper import trees

from . import chamber, figures, report
from .procs import ROOT

DEFAULT_OUT = os.path.join(ROOT, "dist", "bench")
DOC = os.path.join(ROOT, "docs", "performance.md")
PLOT = os.path.join(ROOT, "docs", "img", "chamber-warmup.svg")


class Plan:
    """Sample counts of a run."""

    def __init__(self, quick, reconnects=None):
        self.quick = quick
        self.commands = 10 if quick else 300
        self.steps = 1 if quick else 20
        self.fault_seconds = 0.5 if quick else 6.
        # Reboots of 1 to 6.5 s, each at a random point of its half
        # second: multiples of the module's 0.5 s first retry would all
        # meet a retry just in time.
        rng = random.Random(7)
        self.reboot_delays = [round(1. + 0.5 * i + rng.uniform(.05, .45), 2)
                              for i in range(1 if quick else 11)]
        self.silent_samples = 1 if quick else 3
        self.idle_seconds = 1. if quick else 60.
        self.cycles = reconnects or (20 if quick else 10000)
        self.warmup = 5 if quick else max(20, self.cycles // 10)
        # Device minutes of a chamber warm-up and hold (at chamber.SPEED):
        # a quick run is too short to judge the chamber or the loop's CPU.
        self.chamber_minutes = 20 if quick else 120
        self.judge = not quick


STEPS = (
    ("normal operation",
     lambda t, p: figures.normal_operation(t, p.commands, p.steps)),
    ("faults", lambda t, p: figures.fault_stalls(t, p.fault_seconds)),
    ("reconnect", lambda t, p: figures.reconnects(t, p.reboot_delays,
                                                  p.silent_samples)),
    ("cpu", lambda t, p: figures.cpu_cost(t, p.idle_seconds)),
    ("reconnect cycles", lambda t, p: figures.reconnect_cycles(
        t, p.cycles, p.warmup)),
    ("chamber", lambda t, p: chamber.regulation(
        t, p.chamber_minutes, p.judge)),
    ("chamber cpu", lambda t, p: chamber.cpu_with_loop(
        t, p.idle_seconds, p.judge)),
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
    p.add_argument("--tree", action="append", choices=trees.TREES,
                   help="measure only this Klipper tree (repeatable;"
                   " default both)")
    p.add_argument("--reconnects", type=int, metavar="N",
                   help="reconnects for the memory figures (default"
                   " 10,000; --quick 20)")
    p.add_argument("--doc", action="store_true",
                   help="also write the report into docs/performance.md")
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
        if args.reconnects is not None and args.reconnects < 1:
            raise UsageError("--reconnects wants a count of at least 1")
    except UsageError as e:
        print("bench: error: %s" % (e,), file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, filename=os.path.join(args.out, "bench.log"),
        filemode="w", format="%(asctime)s %(threadName)s %(message)s")
    try:
        if args.safety is not None:
            from tests.safety import runner
            return runner.main(args.safety, out=args.out)
        if args.soak is not None:
            from . import soak
            return soak.main(args.soak, args.out)
        status = bench(args.quick, args.out, args.reconnects, args.tree)
    except trees.TreeMissing as e:
        # A real Klipper tree none of its sources has: one line.
        print("bench: error: %s" % (e.short,), file=sys.stderr)
        return 2
    if args.doc and status in (0, 1):
        with open(os.path.join(args.out, "report.md")) as f:
            report.update_doc(DOC, f.read())
        print("wrote %s" % (DOC,))
        plot = os.path.join(args.out, "chamber-warmup.svg")
        if os.path.exists(plot):
            os.makedirs(os.path.dirname(PLOT), exist_ok=True)
            with open(plot) as f, open(PLOT, "w") as doc:
                doc.write(f.read())
            print("wrote %s" % (PLOT,))
    return status


def bench(quick, out, reconnects=None, only=None):
    plan = Plan(quick, reconnects)
    mode = "quick" if quick else "full"
    started = time.monotonic()
    built = {}
    for name in only or trees.TREES:
        built[name] = trees.prepare(name)   # TreeMissing: see main()
    results = {name: [] for name in built}
    for step, measure in STEPS:
        for name, path in built.items():
            print("bench: %s (%s) ..." % (step, name), file=sys.stderr,
                  flush=True)
            measured = measure((name, path), plan)
            if step == "chamber":
                measured, trace = measured
                if name == next(iter(built)):
                    chamber.write_plot(out, trace, name)
            results[name].extend(measured)
    elapsed = time.monotonic() - started
    report.write(out, results, mode, elapsed,
                 {name: str(trees.source(name)) for name in built})
    print(report.text_table(report.table(results)))
    def named(figures):
        return ", ".join("%s (%s)" % (f.title, name)
                         for name, f in figures)
    everything = [(name, f) for name, figs in results.items() for f in figs]
    missed = [(n, f) for n, f in everything if f.met() is False]
    wrong = [(n, f) for n, f in missed if f.kind == "correctness"]
    unjudged = [(n, f) for n, f in everything if f.unjudged]
    print("\nreport: %s (%.0f s)" % (os.path.join(out, "report.md"),
                                     elapsed))
    if unjudged:
        print("not judged (too short a run to measure them): %s"
              % (named(unjudged),))
    if wrong:
        print("FAILED, on any machine: %s" % (named(wrong),))
    if missed:
        print("targets missed: %s" % (named(missed),))
        return 3 if wrong else 1
    print("all judged targets met" if unjudged else "all targets met")
    return 0
