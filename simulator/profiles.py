"""Firmware profiles: which settings keys a firmware knows, in what order."""

from dataclasses import dataclass

AUTO, ALWAYS_ON, DRYING = "auto", "always_on", "drying"

# The V1.0.3 settings table, in the order the firmware applies it.
V103_ORDER = (
    "language", "factory_reset", "reset", "printer_type", "work_on",
    "work_mode", "set_temp", "filtertemp", "hotbedtemp", "filament_temp",
    "filament_timer", "filament_drying_mode", "isrunning",
)

# Keys the V1.0.4 Home Assistant MQTT client accepts, mapped to the
# WebSocket key they stand for (read-only aliases are left out).
MQTT_ALIASES = {
    "target_temp": "set_temp",
    "filter_temp": "filtertemp",
    "heater_temp": "hotbedtemp",
    "drying_running": "isrunning",
}


@dataclass(frozen=True)
class Profile:
    name: str
    fw_version: str
    order: tuple
    target_key: str = "set_temp"
    klipper: bool = True  # printer_type, Klipper binding and scan_port
    modes: tuple = ((1, AUTO), (2, ALWAYS_ON), (3, DRYING))
    aliases_possible: bool = False

    def has(self, key):
        return key in self.order

    def mode(self, number):
        return dict(self.modes).get(number)

    def mode_number(self, meaning):
        return {m: n for n, m in self.modes}[meaning]


def _without(*keys):
    return tuple(k for k in V103_ORDER if k not in keys)


PROFILES = {
    "1.0.3": Profile("1.0.3", "V1.0.3", V103_ORDER),
    "1.0.4": Profile("1.0.4", "V1.0.4", V103_ORDER, aliases_possible=True),
    "1.0.2": Profile("1.0.2", "V1.0.2", _without("printer_type"),
                     klipper=False),
    "1.0.1": Profile("1.0.1", "V1.0.1", _without("printer_type"),
                     klipper=False),
    "0.0.0": Profile(
        "0.0.0", "V1.0.0",
        tuple("temp" if k == "set_temp" else k for k in _without(
            "printer_type", "filtertemp", "filament_drying_mode")),
        target_key="temp", klipper=False,
        modes=((3, AUTO), (2, ALWAYS_ON), (1, DRYING))),
}
DEFAULT_FIRMWARE = "1.0.3"


def get_profile(name):
    """The profile for a firmware name such as "1.0.3" (ValueError if none)."""
    key = str(name).removeprefix("V").removeprefix("v")
    if key not in PROFILES:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown firmware {name!r} (known: {known})")
    return PROFILES[key]
