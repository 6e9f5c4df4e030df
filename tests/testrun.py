"""The figures of a `./build.sh test` run, from what measured them.

build.sh passes pytest's JUnit XML and the seconds each stage took; this
writes dist/test-run.md and, with --doc, puts its table into
docs/development.md between the markers, so no test count or duration
in the docs is typed by hand.  Below the table: the layers skipped on
purpose (PANDA_SKIP), and the real parts the run used with their
versions, as tests/realparts.py finds them and as the QEMU stage
recorded them (dist/qemu/parts.json)."""
import argparse
import collections
import datetime
import json
import os
import sys
import xml.etree.ElementTree as ET

from tests import realparts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "development.md")
BEGIN = "<!-- test run: written by PANDA_DOC=1 ./build.sh test -->"
END = "<!-- end of test run -->"


def layers(xml_path):
    """{layer: [tests, skipped, failed, seconds]} by tests/<layer>/."""
    counts = collections.defaultdict(lambda: [0, 0, 0, 0.])
    for case in ET.parse(xml_path).iter("testcase"):
        parts = case.get("classname", "").split(".")
        layer = "tests/%s" % (parts[1],) if len(parts) > 2 \
            and parts[0] == "tests" else "tests/*.py"
        row = counts[layer]
        row[0] += 1
        row[1] += case.find("skipped") is not None
        row[2] += (case.find("failure") is not None
                   or case.find("error") is not None)
        row[3] += float(case.get("time", 0))
    return dict(sorted(counts.items()))


def render(xml_path, pytest_seconds, qemu_seconds):
    rows = layers(xml_path)
    total = [sum(r[i] for r in rows.values()) for i in range(3)]
    suite = ET.parse(xml_path).find(".//testsuite")
    date = datetime.datetime.fromisoformat(suite.get("timestamp")) \
        .astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["Measured by `./build.sh test` on %s, %d cores:" % (
        date, os.cpu_count()), "",
        "| Stage | Tests | Skipped | Failed | Time (pytest: summed over"
        " its workers) |",
        "|---|---|---|---|---|"]
    for layer, (tests, skipped, failed, seconds) in rows.items():
        lines.append("| pytest `%s` | %d | %d | %d | %.0f s |" % (
            layer, tests, skipped, failed, seconds))
    lines.append("| pytest in total (wall) | %d | %d | %d | %.1f min |" % (
        total[0], total[1], total[2], pytest_seconds / 60.))
    if qemu_seconds is not None:
        lines.append("| QEMU stage (`./build.sh qemu`) | | | | %.1f min |"
                     % (qemu_seconds / 60.))
        lines.append("| `./build.sh test` in total | | | | %.1f min |"
                     % ((pytest_seconds + qemu_seconds) / 60.))
    return "\n".join(lines) + "\n"


def parts_used(parts, qemu):
    """The run's skips and real parts as markdown: parts is a
    realparts.Parts, qemu what the QEMU stage recorded (or None)."""
    skipped = ", ".join("`%s`" % (s,) for s in parts.skip) or "none"
    lines = ["Layers skipped on purpose (`PANDA_SKIP`): %s." % (skipped,),
             "", "Real parts the run used:", "",
             "| Part | Version | From |", "|---|---|---|"]
    described = {d["part"]: d for d in map(parts.describe, parts.needed())
                 if d}
    for d in (qemu or {}).get("parts", ()):
        described[d["part"]] = d    # what the stage itself ran
    for d in described.values():
        lines.append("| %s | %s | %s |" % (
            d["title"][0].upper() + d["title"][1:], d["version"],
            d["origin"]))
    if qemu and "kernel" in qemu:
        lines.append("| Guest kernel (QEMU stage) | %s %s | Debian"
                     " bookworm arm64 |" % (qemu["kernel"]["package"],
                                            qemu["kernel"]["version"]))
        lines.append("| Debian arm64 packages (QEMU stage) | %s | Debian"
                     " bookworm arm64 |" % (", ".join(
                         "%s %s" % kv for kv in sorted(
                             qemu["debian_arm64"].items())),))
    elif qemu and "qemu" in qemu.get("skipped", ()):
        lines.append("| QEMU stage | skipped on purpose | |")
    return "\n".join(lines) + "\n"


def read_qemu(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def put_between(path, begin, end, body):
    """Replace the text between two marker lines of the file at path."""
    with open(path) as f:
        text = f.read()
    start, stop = text.index(begin) + len(begin), text.index(end)
    with open(path, "w") as f:
        f.write(text[:start] + "\n\n" + body.strip() + "\n\n" + text[stop:])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--junit", required=True)
    p.add_argument("--pytest-seconds", type=float, required=True)
    p.add_argument("--qemu-seconds", type=float)
    p.add_argument("--out", default=os.path.join(ROOT, "dist",
                                                 "test-run.md"))
    p.add_argument("--doc", action="store_true")
    p.add_argument("--qemu-parts", default=os.path.join(
        ROOT, "dist", "qemu", "parts.json"),
        help="what the QEMU stage recorded it ran")
    args = p.parse_args(argv)
    try:
        parts = realparts.Parts()
    except realparts.BadSkip as e:
        print(e, file=sys.stderr)
        return 2
    used = parts_used(parts, read_qemu(args.qemu_parts))
    body = render(args.junit, args.pytest_seconds, args.qemu_seconds) \
        + "\n" + used
    print(used, file=sys.stderr)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("# Test run\n\n" + body)
    if args.doc:
        put_between(DOC, BEGIN, END, body)
        print("wrote the test run into %s" % (DOC,), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
