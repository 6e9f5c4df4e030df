"""A Klipper stand-in host for testing klipper/extras modules.

    with Klippy(PRINTER_CFG) as k:          # start() ... stop()
        k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
        k.run_until(lambda: k.status("heater_generic chamber")["power"])
        assert k.stall.max < 0.005, k.stall.worst

Stdlib only (it also runs inside the QEMU guest).  Every behaviour it
imitates, the Klipper file it mirrors, and the known differences are listed
in MIRRORS.md.
"""
from .configfile import ConfigError
from .gcode import CommandError
from .klippy import GCodeError, HarnessTimeout, Klippy
from .pins import PinError
from .reactor import NEVER, NOW, Reactor, ReactorError, ReactorExit
from .stall import StallMeter

__all__ = ['Klippy', 'ConfigError', 'GCodeError', 'CommandError',
           'HarnessTimeout', 'PinError', 'Reactor', 'ReactorError',
           'ReactorExit', 'StallMeter', 'NOW', 'NEVER']
