"""A software BIQU Panda Breath: the device's WebSocket API on loopback."""

from .api import Simulator
from .profiles import PROFILES
from .server import Frame

__all__ = ["Simulator", "Frame", "PROFILES"]
