"""What a chamber sensor buys, measured in real Klipper: the chamber's
time to target, its steady error and the device's setpoint writes, with
and without `chamber_sensor`, and the idle CPU of the chamber loop.

The simulator's chamber air (simulator/thermal.py: several degrees
under the device's outlet-air reading, far more while warming) is
written to a file that Klipper reads as a temperature_host sensor.  The
device runs SPEED times faster than real time and the module's
setpoint_interval is shortened by as much, so the loop runs at its real
pace in device time; the figures are in device minutes and hours."""
import os
import tempfile
import time

from chamber import FAST, chamber_config

from simulator import Simulator

from .figures import connected, klipper, klippy_cpu, wait_until
from .procs import SimProcess
from .report import Figure

SPEED = 30.0
TARGET = 45
BAND = 1.5              # the chamber holds within this of the target
AIR = "temperature_sensor chamber_air"
AIR_SECTION = """
[temperature_sensor chamber_air]
sensor_type: temperature_host
sensor_path: %s
min_temp: -40
max_temp: 120
"""
SAMPLE = 0.25           # s between samples of the simulator's state


def config(port, path, loop, speed=SPEED, fast=True):
    # fast: the tests' quick fault detection (pings every 0.5 s among
    # it); the CPU figures take the defaults owners run
    options = dict(FAST) if fast else {}
    if loop:
        options.update(chamber_sensor=AIR, setpoint_interval=60. / speed)
    return AIR_SECTION % (path,) + chamber_config(port, options=options)


def warm_up(tree, loop, minutes):
    """Warm the chamber from the room to TARGET and hold it: a trace of
    (device minute, chamber, device reading, setpoint) and the device's
    set_temp writes."""
    workdir = tempfile.mkdtemp(prefix="bench-chamber-")
    path = os.path.join(workdir, "chamber_air")
    sim = Simulator(speed=SPEED, push_interval=0.1, chamber_file=path)
    sim.start()
    try:
        sim.press(work_on=False)
        with klipper(tree, config(sim.port, path, loop), probe=False) as p:
            wait_until(lambda: connected(p), 30)
            before = sim.state()["flash_writes_by_key"].get("set_temp", 0)
            p.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=%d"
                    % (TARGET,))
            trace, writes = [], []
            start = time.monotonic()
            while True:
                minute = (time.monotonic() - start) * SPEED / 60.
                if minute > minutes:
                    break
                s = sim.state()
                trace.append((minute, s["chamber_temp"], s["sensor_temp"],
                              s["set_temp"]))
                writes.append((minute, s["flash_writes_by_key"].get(
                    "set_temp", 0) - before))
                time.sleep(SAMPLE)
    finally:
        sim.stop()
    return trace, writes


def arrival(trace):
    """The device minute the chamber first came within BAND under the
    target, or None."""
    return next((m for m, c, _, _ in trace if c >= TARGET - BAND), None)


def regulation(tree, minutes, judge):
    """Figures with and without chamber_sensor, and the loop's trace."""
    figures, traces = [], {}
    for loop, label in ((False, "the device's reading"),
                        (True, "chamber_sensor")):
        trace, writes = warm_up(tree, loop, minutes)
        traces[loop] = trace
        came = arrival(trace)
        # holding: from 20 device minutes after arrival to the end, or
        # the last third when that is sooner (or it never arrived)
        hold_from = minutes * 2 / 3
        if came is not None:
            hold_from = min(hold_from, came + 20.)
        held = [c for m, c, _, _ in trace if m >= hold_from]
        error = [c - TARGET for c in held]
        span = [w for m, w in writes if m >= hold_from]
        per_hour = None
        hold_minutes = trace[-1][0] - hold_from
        if span and hold_minutes > 5:
            per_hour = (span[-1] - span[0]) * 60. / hold_minutes
        key = "loop" if loop else "plain"
        on_target = judge and loop
        figures += [
            Figure("chamber_time_" + key,
                   "chamber: minutes to %g C, %s" % (TARGET - BAND, label),
                   "device min", [] if came is None else [came],
                   "total" if on_target else None,
                   "<=", 30., total=came,
                   note="" if came is not None else
                   "never: the chamber settles at %.1f C" % (
                       sum(held) / len(held) if held else float("nan"),)),
            Figure("chamber_error_" + key,
                   "chamber: steady error, %s" % (label,), "C",
                   [abs(e) for e in error],
                   "max" if on_target else None, "<=", BAND,
                   note="mean %+.2f C over %.0f device minutes" % (
                       sum(error) / len(error), hold_minutes)
                   if error else ""),
            Figure("setpoint_writes_" + key,
                   "setpoint writes per device hour holding, %s" % (label,),
                   "/h", [] if per_hour is None else [per_hour],
                   "total" if on_target else None, "<=", 60.,
                   total=per_hour,
                   note="each one saved to the device's flash"),
        ]
    return figures, traces[True]


def cpu_with_loop(tree, seconds, judge):
    """klippy with the same chamber sensor, without and with the module
    regulating by it (device at speed 1, Klipper's target 45)."""
    workdir = tempfile.mkdtemp(prefix="bench-chamber-cpu-")
    path = os.path.join(workdir, "chamber_air")
    with SimProcess("--push-interval", "0.5", "--no-console",
                    "--chamber-file", path) as sim:
        wait_until(lambda: os.path.exists(path), 10)
        with klipper(tree, AIR_SECTION % (path,), probe=False) as p:
            alone = klippy_cpu(p, seconds)
        with klipper(tree, config(sim.port, path, True, speed=1.,
                                  fast=False), probe=False) as p:
            wait_until(lambda: connected(p), 30)
            p.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=%d"
                    % (TARGET,))
            looping = klippy_cpu(p, seconds)
    ratio = looping[0] / alone[0] if alone[0] else float("inf")
    return [
        Figure("cpu_chamber_ratio",
               "CPU, with the module regulating by chamber_sensor / alone",
               "x", [ratio], "total" if judge else None, "<=", 2.,
               total=ratio,
               note="%.0f s of each: klippy with the chamber's"
               " temperature_sensor, %.3f %% of a core alone, %.3f %% with"
               " the module heating to %d by it" % (
                   seconds, alone[0], looping[0], TARGET)),
    ]


# The warm-up plot

def svg(trace, title):
    """Chamber, device reading and setpoint over device minutes, as a
    small SVG line chart."""
    width, height, left, bottom, top, right = 680, 320, 48, 36, 30, 130
    minutes = trace[-1][0]
    low, high = 20., 65.

    def x(m):
        return left + (width - left - right) * m / minutes

    def y(t):
        return top + (height - top - bottom) * (high - t) / (high - low)
    series = (("chamber", 1, "#1f77b4"),
              ("device reading", 2, "#d62728"),
              ("setpoint sent", 3, "#2ca02c"))
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d"'
           ' font-family="sans-serif" font-size="11">' % (width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="16">%s</text>' % (left, title)]
    for t in range(int(low), int(high) + 1, 5):
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"'
                   '/><text x="%d" y="%.1f" text-anchor="end">%d</text>'
                   % (left, width - right, y(t), y(t), left - 4, y(t) + 4,
                      t))
    for m in range(0, int(minutes) + 1, 10):
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>'
                   % (x(m), height - bottom + 14, m))
    out.append('<text x="%d" y="%d" text-anchor="middle">device minutes'
               '</text>' % ((left + width - right) // 2, height - 6))
    out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#888"'
               ' stroke-dasharray="4 3"/>' % (left, width - right,
                                              y(TARGET), y(TARGET)))
    for i, (name, column, colour) in enumerate(series):
        points = " ".join("%.1f,%.1f" % (x(row[0]), y(row[column]))
                          for row in trace)
        out.append('<polyline fill="none" stroke="%s" stroke-width="1.5"'
                   ' points="%s"/>' % (colour, points))
        out.append('<text x="%d" y="%d" fill="%s">%s</text>'
                   % (width - right + 6, top + 14 * (i + 1), colour, name))
    out.append('<text x="%d" y="%d" fill="#888">target %d</text>'
               % (width - right + 6, top + 14 * 5, TARGET))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_plot(out, trace, tree):
    path = os.path.join(out, "chamber-warmup.svg")
    with open(path, "w") as f:
        f.write(svg(trace, "Warm-up to a %d C chamber with chamber_sensor"
                    " (%s Klipper, the simulator's chamber)" % (TARGET,
                                                                tree)))
    return path
