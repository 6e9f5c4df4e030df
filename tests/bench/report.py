"""Figures, their targets, and the report files."""
import datetime
import json
import operator
import os
import platform
import sys

from tests.testrun import put_between

OPS = {"<=": operator.le, "<": operator.lt, "==": operator.eq}


def percentile(values, fraction):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


# A p99 needs this many samples to be one; fewer give no verdict.
P99_SAMPLES = 100


class Figure:
    """One measured figure: its samples and, optionally, a target.

    The target applies to one statistic of the samples: 'p99', 'max' or
    'total' (the value measured over the whole run, given as total).
    kind is 'timing' (depends on the machine's speed and load) or
    'correctness' (must hold on any machine: a leaked fd or thread).
    unjudged, when given, says why the run cannot judge the target (too
    short to measure it); such a figure is reported without a verdict,
    as is a p99 of fewer than P99_SAMPLES samples."""

    def __init__(self, key, title, unit, samples, stat=None, op=None,
                 limit=None, total=None, note="", kind="timing",
                 unjudged=None):
        self.key = key
        self.title = title
        self.unit = unit
        self.samples = list(samples)
        self.stat, self.op, self.limit = stat, op, limit
        self.total = total
        self.note = note
        self.kind = kind
        if unjudged is None and stat == "p99" \
                and len(self.samples) < P99_SAMPLES:
            unjudged = "a p99 of %d samples (judged from %d)" % (
                len(self.samples), P99_SAMPLES)
        self.unjudged = unjudged if stat is not None else None

    def stats(self):
        if not self.samples:
            return {"p50": None, "p99": None, "max": None}
        return {"p50": percentile(self.samples, 0.5),
                "p99": percentile(self.samples, 0.99),
                "max": max(self.samples)}

    def value(self):
        if self.stat == "total":
            return self.total
        return self.stats().get(self.stat)

    def target_text(self):
        if self.stat is None:
            return ""
        return "%s %s %s" % (self.stat, self.op, fmt(self.limit))

    def met(self):
        """True or False against the target; None without a target or
        when the run cannot judge it (unjudged)."""
        if self.stat is None or self.unjudged:
            return None
        value = self.value()
        return value is not None and OPS[self.op](value, self.limit)

    def as_dict(self):
        return dict(key=self.key, title=self.title, unit=self.unit,
                    samples=len(self.samples), **self.stats(),
                    total=self.total, target=self.target_text() or None,
                    met=self.met(), kind=self.kind,
                    not_judged=self.unjudged, note=self.note or None)


def fmt(value):
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return "%.0f" % value
    if abs(value) >= 1:
        return "%.2f" % value
    return "%.3g" % value


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "load": os.getloadavg()[0]}


def cell(f):
    """A figure's value in the table: its total, else p50 / p99 / max."""
    if f is None:
        return "-"
    s = f.stats()
    if f.stat == "total" or (f.stat is None and f.total is not None):
        return fmt(f.total)
    return "%s / %s / %s" % (fmt(s["p50"]), fmt(s["p99"]), fmt(s["max"]))


def table(results):
    """results: {tree: [Figure]} -> rows, one column of values a tree."""
    trees = list(results)
    rows = [("figure", "unit", "target") + tuple(trees) + ("met",)]
    keys, first = [], {}
    for figures in results.values():
        for f in figures:
            if f.key not in first:
                keys.append(f.key)
                first[f.key] = f
    for key in keys:
        f = first[key]
        mine = {t: next((g for g in results[t] if g.key == key), None)
                for t in trees}
        verdicts = {t: g.met() for t, g in mine.items() if g is not None}
        missed = [t for t, ok in verdicts.items() if ok is False]
        unjudged = [t for t, g in mine.items()
                    if g is not None and g.unjudged]
        if missed:
            met = "MISSED (%s)" % (", ".join(missed),)
        elif unjudged:
            met = "not judged"
        elif any(ok for ok in verdicts.values()):
            met = "yes"
        else:
            met = ""
        rows.append((f.title, f.unit, f.target_text())
                    + tuple(cell(mine[t]) for t in trees) + (met,))
    return rows


def markdown(rows):
    lines = ["| " + " | ".join(rows[0]) + " |",
             "|" + "|".join("---" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def text_table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths,
                                                           strict=True))
                     .rstrip() for r in rows)


DOC_BEGIN = "<!-- bench report: written by ./build.sh bench --doc -->"
DOC_END = "<!-- end of bench report -->"


def update_doc(path, report_md):
    """Put a report.md's text between the markers in the doc at path."""
    body = report_md.split("\n", 2)[2]  # without its heading
    put_between(path, DOC_BEGIN, DOC_END, body)


def write(out_dir, results, mode, seconds, trees_info=None):
    """results: {tree: [Figure]}."""
    os.makedirs(out_dir, exist_ok=True)
    info = machine()
    date = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC")
    everything = [f for figures in results.values() for f in figures]
    data = {"date": date, "mode": mode, "seconds": round(seconds, 1),
            "machine": info, "trees": {
                t: [f.as_dict() for f in figures]
                for t, figures in results.items()},
            "klipper": trees_info or {},
            "all_met": all(f.met() is not False for f in everything),
            "correct": all(f.met() is not False for f in everything
                           if f.kind == "correctness"),
            "not_judged": sorted({f.key for f in everything
                                  if f.unjudged})}
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    notes = ["- %s (%s): %s" % (f.title, t, "; ".join(
        n for n in (f.note, f.unjudged and "not judged: " + f.unjudged)
        if n)) for t, figures in results.items() for f in figures
        if f.note or f.unjudged]
    md = ["# Panda Breath module benchmark", "",
          "%s, %s run in %.0f s on %s (%d cores, %s), Python %s, load %.2f;"
          " real Klipper: %s" % (
              date, mode, seconds, info["cpu"], info["cores"],
              info["platform"], info["python"], info["load"],
              ", ".join(results)), "",
          "Cells: p50 / p99 / max of the samples, or the run's total.", "",
          markdown(table(results)), ""]
    if notes:
        md += ["Notes:", ""] + notes + [""]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(md))
    return data
