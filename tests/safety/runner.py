"""The long safety run: ``./build.sh bench --safety N`` calls main(N).

Each example starts real Klipper (klippy and its Linux host MCU) and is
mostly waiting on loopback sockets, so the N examples are split over a
few worker processes, taking the Klipper trees (upstream, the U1 fork) in
turn (each its own simulators and printers, with fresh random examples).  A
failure prints the shrunk event script to replay; one that hypothesis
could not make happen again on replay (timing) is reported as not
reproducible, with every violation seen on the way.  Any failure makes
the exit status 1.  Workers default to 2 (one per tree);
PANDA_SAFETY_WORKERS overrides it.  With out=DIR the summary is also
written to DIR/safety.md and DIR/safety.json (`--out` of the bench).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEFAULT_WORKERS = 2


MAX_FAILURES = 5  # per worker; after a failure the search goes on


def _describe(e, depth=0):
    text = "%s: %s" % (type(e).__name__, e)
    for sub in getattr(e, "exceptions", ()):  # e.g. a Flaky failure
        text += "\n  " + _describe(sub).replace("\n", "\n  ")
    cause = e.__cause__ or e.__context__
    if cause is not None and depth < 3:  # what a Flaky error hides
        text += "\n  after: " + _describe(cause, depth + 1).replace(
            "\n", "\n  ")
    return text


def _worker(n_examples, result_path, label):
    """Run n_examples in this process; write a JSON result."""
    import logging
    import threading

    from hypothesis import settings
    from hypothesis.stateful import run_state_machine_as_test
    from realklipper.trees import TREES

    from safety.machine import SafetyMachine
    from safety.world import SafetyViolation, World

    SafetyMachine.tree = TREES[int(label) % len(TREES)]

    seen = []

    def report(text):
        seen.append(text)
        print("safety: worker %s saw: %s" % (label, text), flush=True)
    World.report = report

    # The module's warnings about injected faults would drown the summary.
    logging.getLogger().setLevel(logging.ERROR)
    started = time.monotonic()
    failures = []
    while (SafetyMachine.examples < n_examples
           and len(failures) < MAX_FAILURES):
        profile = settings(settings.get_profile("safety-long"),
                           max_examples=n_examples - SafetyMachine.examples)
        try:
            run_state_machine_as_test(SafetyMachine, settings=profile)
            break
        except Exception as e:  # the shrunk counterexample
            # A violation hypothesis could not make happen again on
            # replay ends as one of its Flaky errors instead.
            failures.append({"text": _describe(e), "reproduced":
                             isinstance(e, SafetyViolation)})
            print("safety: worker %s: %s" % (label, failures[-1]["text"]),
                  flush=True)
    result = {"worker": "%s (%s)" % (label, SafetyMachine.tree),
              "examples": SafetyMachine.examples,
              "steps": SafetyMachine.steps, "failures": failures,
              "violations_seen": len(seen),
              "wall": time.monotonic() - started,
              "threads_left": threading.active_count()}
    with open(result_path, "w") as f:
        json.dump(result, f)
    return 1 if failures else 0


def _split(n, parts):
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def main(n_examples, workers=None, out=None):
    """Run n_examples of the safety state machine; 0 when none failed.
    A Klipper tree none of its sources has raises trees.TreeMissing
    (one line) before any worker starts."""
    try:
        n_examples = int(n_examples)
    except (TypeError, ValueError):
        print("safety: the number of examples must be a whole number")
        return 2
    if n_examples < 1:
        print("safety: the number of examples must be at least 1")
        return 2
    if workers is None:
        workers = int(os.environ.get("PANDA_SAFETY_WORKERS",
                                     DEFAULT_WORKERS))
    shares = [n for n in _split(n_examples, max(1, workers)) if n]
    # Fetched and built once, here, rather than by each worker at once.
    from realklipper import trees
    for name in trees.TREES[:len(shares)]:
        trees.prepare(name)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, os.path.join(ROOT, "tests")]))
    started = time.monotonic()
    print("safety: %d examples in %d workers" % (n_examples, len(shares)),
          flush=True)
    with tempfile.TemporaryDirectory(prefix="safety-") as tmp:
        procs = []
        for i, share in enumerate(shares):
            path = os.path.join(tmp, "w%d.json" % (i,))
            cmd = [sys.executable, "-m", "safety.runner", "--worker",
                   str(share), path, str(i)]
            procs.append((path, subprocess.Popen(cmd, env=env, cwd=ROOT,
                                                 stdin=subprocess.DEVNULL)))
        results = []
        for path, proc in procs:
            proc.wait()
            try:
                with open(path) as f:
                    results.append(json.load(f))
            except (OSError, ValueError):
                results.append({"worker": path, "examples": 0, "steps": 0,
                                "wall": 0., "threads_left": 0,
                                "failures": [{
                                    "text": "worker exited with status %d"
                                    % (proc.returncode,),
                                    "reproduced": True}]})
    wall = time.monotonic() - started
    examples = sum(r["examples"] for r in results)
    steps = sum(r["steps"] for r in results)
    failures = [(r["worker"], f) for r in results for f in r["failures"]]
    seen = sum(r.get("violations_seen", 0) for r in results)
    for worker, failure in failures:
        print("\nsafety: worker %s failed (%s):\n%s" % (
            worker, "reproduced" if failure["reproduced"]
            else "not reproducible on replay", failure["text"]))
    reproduced = sum(1 for _, f in failures if f["reproduced"])
    summary = ("safety: %d examples asked, %d run (%d steps) in %.0f s wall,"
               " %d workers, %d failures (%d reproduced, %d not"
               " reproducible), %d violations seen (shrinking included)"
               % (n_examples, examples, steps, wall, len(shares),
                  len(failures), reproduced, len(failures) - reproduced,
                  seen))
    print(summary, flush=True)
    if out is not None:
        write_report(out, summary, results, failures)
    return 1 if failures else 0


def write_report(out, summary, results, failures):
    """DIR/safety.json (every worker's result) and DIR/safety.md."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "safety.json"), "w") as f:
        json.dump({"summary": summary, "workers": results}, f, indent=1)
    lines = ["# Safety state machine (`./build.sh bench --safety N`)", "",
             summary.replace("safety: ", "", 1) + ".", "",
             "| Worker | Examples | Steps | Wall | Failures |",
             "|---|---|---|---|---|"]
    for r in results:
        lines.append("| %s | %d | %d | %.0f s | %d |" % (
            r["worker"], r["examples"], r["steps"], r["wall"],
            len(r["failures"])))
    for worker, failure in failures:
        lines += ["", "## Worker %s: %s" % (
            worker, "reproduced" if failure["reproduced"]
            else "not reproducible on replay"), "", "```",
            failure["text"], "```"]
    with open(os.path.join(out, "safety.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("safety: report in %s" % (os.path.join(out, "safety.md"),),
          flush=True)


if __name__ == "__main__":
    TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if TESTS not in sys.path:
        sys.path.append(TESTS)
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        sys.exit(_worker(int(sys.argv[2]), sys.argv[3], sys.argv[4]))
    if len(sys.argv) == 2:
        import realparts
        try:
            sys.exit(main(sys.argv[1]))
        except realparts.Unavailable as e:
            print("safety: error: %s" % (e.short,), file=sys.stderr)
            sys.exit(2)
    print("usage: python -m tests.safety.runner N_EXAMPLES")
    sys.exit(2)
