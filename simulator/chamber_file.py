"""The chamber air temperature as a /sys-style thermal file.

A thermometer in the chamber, apart from the device: it reads the model's
true chamber air (not the device's outlet sensor), whether the device is
on, off or rebooting. Klipper reads it with

    [temperature_sensor chamber_air]
    sensor_type: temperature_host
    sensor_path: <the file>

temperature_host (upstream and the U1 fork alike) opens the file once at
start-up and, once a second, does seek(0), read() and float(text) / 1000.
So the file holds millidegrees as an integer, right-aligned in WIDTH
characters, then a newline ("  49550\\n"); float() takes the spaces and
the newline, and negatives fit ("  -5000\\n"). Every write is a single
os.pwrite of those SIZE bytes at offset 0 of a file kept open: never a
rename (Klipper would keep reading the old file) and never a truncate, so
a reader never sees an empty or partial value.
"""

import io
import logging
import os

log = logging.getLogger("simulator")

WIDTH = 7  # characters of the number: -999999 .. 9999999 millidegrees
SIZE = WIDTH + 1  # bytes in the file, with the newline
PERIOD = 0.25  # wall seconds between writes (Klipper reads once a second)
GARBAGE = "garbage".rjust(WIDTH) + "\n"  # not a number, same width
FAULTS = (None, "freeze", "garbage")


def render(celsius):
    """The file's text for a temperature: always SIZE characters."""
    milli = min(max(round(celsius * 1000), -10**(WIDTH - 1) + 1),
                10**WIDTH - 1)
    return f"{milli:>{WIDTH}d}\n"


class ChamberFile:
    """Writes the chamber temperature to path; update() is called on
    every model tick and writes at most every PERIOD wall seconds."""

    def __init__(self, path, celsius):
        self.path = str(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise ValueError(f"{self.path}: no such directory")
        if os.path.isdir(self.path):
            raise ValueError(f"{self.path}: is a directory")
        self.fault = None
        self.writes = 0
        self._file = None
        self._last = None  # wall time of the last write
        self._failed = False
        self.open(celsius)

    def open(self, celsius):
        """Open (creating, never truncating first) and write the value."""
        if self._file is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o644)
        except OSError as e:
            raise ValueError(f"{self.path}: cannot open the chamber file "
                             f"({e.strerror or e})") from e
        self._file = io.FileIO(fd, "r+", closefd=True)
        self._write(GARBAGE if self.fault == "garbage" else render(celsius))
        # a longer file left by something else: cut it to our width
        os.ftruncate(fd, SIZE)

    def close(self):
        file, self._file = self._file, None
        if file is not None:
            file.close()

    @property
    def closed(self):
        return self._file is None

    def update(self, celsius, now, force=False):
        """Write celsius unless frozen, or written less than PERIOD ago."""
        if self._file is None or self.fault is not None:
            return
        if not force and self._last is not None \
                and now - self._last < PERIOD:
            return
        self._last = now
        self._write(render(celsius))

    def set_fault(self, kind, celsius, now):
        """"freeze": no more writes; "garbage": one write of a non-number,
        then none; None: write the value now and carry on."""
        if kind not in FAULTS:
            raise ValueError("chamber file fault is 'freeze', 'garbage' "
                             "or None")
        self.fault = kind
        log.info("chamber file fault = %s", kind)
        if kind == "garbage":
            self._write(GARBAGE)
        elif kind is None:
            self.update(celsius, now, force=True)

    def _write(self, text):
        if self._file is None:
            return
        data = text.encode("ascii")
        assert len(data) == SIZE
        try:
            os.pwrite(self._file.fileno(), data, 0)
        except OSError as e:
            if not self._failed:
                log.warning("cannot write chamber file %s: %s", self.path, e)
            self._failed = True
            return
        self._failed = False
        self.writes += 1

