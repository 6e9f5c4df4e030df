"""The Panda Breath itself: settings, NVS, regulation and clocks.

No networking here. The server feeds decoded frames to receive(), drives
device time with advance(), and sends whatever the device put in outbox:
("broadcast", message) to every client, ("reboot", None) to restart.
"""

import copy

from .nvs import Nvs
from .profiles import ALWAYS_ON, AUTO, DRYING, MQTT_ALIASES
from .thermal import ThermalModel

PTC_CUTOFF = 104  # C, the firmware cuts the heater above this
STEP_MS = 100  # device-time grid the firmware timers run on
MODE_PERIOD_MS = 200
RELAY_PERIOD_MS = 500
DRYING_PRESETS = {1: (55, 12), 2: (60, 12)}  # filament_drying_mode
OPEN_READING = -40.0  # an open NTC reads the cold end of the table
SHORT_READING = 150.0  # a shorted NTC reads the hot end
SWAP_OVER_READ = 40.0  # the PTC's NTC read through the chamber curve
SENSOR_STATUS = {None: 0, "short": 1, "open": 2}

# Klipper-binding printer states (protocol.md)
UNBOUND, INVALID_INFO, CONNECTING = 0, 1, 2

INT_MAX, INT_MIN = 2**31 - 1, -(2**31)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def stored(value, bits=8):
    """A JSON number as cJSON's valueint, kept in a uint8_t/uint16_t."""
    value = min(max(value, INT_MIN), INT_MAX)
    return int(value) & ((1 << bits) - 1)


def factory_settings(profile):
    return {
        "language": "en",
        "printer_type": 1,
        "work_on": True,
        "work_mode": profile.mode_number(AUTO),
        "set_temp": 60,
        "filtertemp": 30,
        "hotbedtemp": 80,
        "filament_temp": 60,
        "filament_timer": 12,
        "printer": {},
    }


class PrinterLink:
    """What the device knows of the printer it is bound to.

    The device's Moonraker client (moonraker.py) calls report() with the
    link state and the bed target; a Bambu binding has no client here, so
    it stays "connecting" and auto mode never heats on it.
    """

    def __init__(self):
        self.state = UNBOUND
        self.up = False
        self.bed_target = 0.0

    def bind(self, binding):
        self.state = CONNECTING if binding else UNBOUND
        self.up = False
        self.bed_target = 0.0

    def report(self, state, up, bed_target=0.0):
        self.state, self.up, self.bed_target = state, bool(up), bed_target


class Device:
    def __init__(self, profile, ambient=25.0, nvs=None, mqtt_aliases=False):
        self.profile = profile
        self.aliases = MQTT_ALIASES if (
            mqtt_aliases and profile.aliases_possible) else {}
        self.nvs = nvs if nvs is not None else Nvs()
        self.thermal = ThermalModel(ambient)
        self.link = PrinterLink()
        self.outbox = []
        self.clock_ms = 0  # device RTC, milliseconds of device time
        self._carry = 0.0
        self.boot_count = 0
        self.online = False
        self.sensor_fault = None
        self.swapped = False
        self.settings = factory_settings(profile)
        self.boot()

    # -- power -----------------------------------------------------------

    def boot(self):
        saved = self.nvs.load()
        self.settings = factory_settings(self.profile)
        if saved:
            self.settings.update(
                {k: v for k, v in saved.items() if k in self.settings
                 and type(v) is type(self.settings[k])})
        self.isrunning = 0
        self.drying_mode = 3
        self.drying_temp = self.settings["filament_temp"]
        self.drying_hours = self.settings["filament_timer"]
        self.remaining_ms = self.drying_hours * 3600 * 1000
        self.heat_request = False
        self.target = 0
        self.relay = False
        self.fan = False
        self.link.bind(self.settings["printer"])
        self.boot_count += 1
        self.online = True

    def shut_down(self):
        """Power gone or CPU resetting: everything stops, RAM is lost."""
        self.online = False
        self.relay = self.fan = self.heat_request = False
        self.isrunning = 0

    def _save(self, key):
        """One NVS write (a flash write), as the firmware makes for every
        saved key it is given, changed or not."""
        self.nvs.save(self.settings, key)

    # -- time ------------------------------------------------------------

    def advance(self, seconds):
        """Run seconds of device time: physics plus the firmware timers."""
        self._carry += seconds * 1000.0
        while self._carry >= STEP_MS:
            self._carry -= STEP_MS
            self.thermal.step(STEP_MS / 1000.0, self.relay, self.fan)
            self.clock_ms += STEP_MS
            if not self.online:
                continue
            if self.clock_ms % MODE_PERIOD_MS == 0:
                self._mode_rule()
            if self.clock_ms % RELAY_PERIOD_MS == 0:
                self._relay_rule()

    def set_sensor_fault(self, kind):
        """The chamber thermistor goes open/short (or is mended: None).
        The firmware sees it on the read that returns the bad value."""
        self.sensor_fault = kind
        if kind and self.online:
            self._fault_off()

    def _fault_off(self):
        self.settings["work_on"] = False
        self._save("work_on")
        self.relay = self.fan = self.heat_request = False
        self.outbox.append(("broadcast", {"settings": dict(
            self.settings_block(),
            warehouse_sensor_status=self.warehouse_sensor_status,
            ptc_sensor_status=0)}))

    def _mode_rule(self):
        s = self.settings
        if self.sensor_fault and s["work_on"]:
            self._fault_off()
        mode = self.profile.mode(s["work_mode"])
        heat = fan = False
        if not s["work_on"]:
            self.isrunning = 0
            self.remaining_ms = self.drying_hours * 3600 * 1000
        elif mode == ALWAYS_ON:
            heat = fan = True
            self.target = s["set_temp"]
        elif mode == DRYING and self.isrunning:
            self.remaining_ms = max(0, self.remaining_ms - MODE_PERIOD_MS)
            if self.remaining_ms == 0:
                self.isrunning = 0
                self.outbox.append(("broadcast", {"settings": {
                    "isrunning": 0, "remaining_seconds": 0}}))
            else:
                heat = fan = True
                self.target = self.drying_temp
        elif mode == AUTO and self.link.up:
            bed = self.link.bed_target
            fan = bed >= s["filtertemp"]
            heat = bed >= s["hotbedtemp"]
            self.target = s["set_temp"]
        self.heat_request, self.fan = heat, fan or heat
        if not heat:
            self.relay = False

    def _relay_rule(self):
        self.relay = (self.heat_request
                      and int(self.chamber_reading()) < self.target
                      and self.ptc_reading() <= PTC_CUTOFF)

    # -- sensors ---------------------------------------------------------

    @property
    def warehouse_sensor_status(self):
        return SENSOR_STATUS[self.sensor_fault]

    def chamber_reading(self):
        if self.sensor_fault == "open":
            return OPEN_READING
        if self.sensor_fault == "short":
            return SHORT_READING
        if self.swapped:
            return self.thermal.ptc + SWAP_OVER_READ
        return self.thermal.sensor

    def ptc_reading(self):
        return self.thermal.sensor if self.swapped else self.thermal.ptc

    def temperature_message(self):
        return {"settings": {"warehouse_temper": int(self.chamber_reading())}}

    # -- what the device reports -------------------------------------------

    def settings_block(self):
        s, p = self.settings, self.profile
        block = {"fw_version": p.fw_version, "language": s["language"]}
        if p.klipper:
            block["printer_type"] = s["printer_type"]
        block["work_on"] = int(s["work_on"])
        block["work_mode"] = s["work_mode"]
        block[p.target_key] = s["set_temp"]
        if p.has("filtertemp"):
            block["filtertemp"] = s["filtertemp"]
        block.update(
            hotbedtemp=s["hotbedtemp"],
            custom_temp=s["filament_temp"],
            custom_timer=s["filament_timer"],
            isrunning=self.isrunning,
            remaining_seconds=self.remaining_ms // 1000)
        return block

    def printer_block(self):
        binding = self.settings["printer"]
        if self._klipper_bound():
            block = {"name": binding.get("name", ""),
                     "host": binding.get("ip", ""),
                     "port": binding.get("port", 0)}
        else:
            block = {k: binding.get(k, "")
                     for k in ("name", "sn", "access_code", "ip")}
        block.update(state=self.link.state, scan=0, list=[])
        return block

    def snapshot(self, wifi):
        return {
            "wifi": {"ssid": wifi["ssid"], "password": wifi["password"],
                     "scan": 0, "list": []},
            "sta": {"hostname": wifi["hostname"]},
            "ap": {"ssid": wifi["ap_ssid"], "password": wifi["ap_password"],
                   "ip": "192.168.254.1"},
            "settings": self.settings_block(),
            "printer": self.printer_block(),
        }

    def state(self):
        s = self.settings
        return {
            "firmware": self.profile.name,
            "fw_version": self.profile.fw_version,
            "work_on": bool(s["work_on"]),
            "work_mode": s["work_mode"],
            "set_temp": s["set_temp"],
            "filtertemp": s["filtertemp"],
            "hotbedtemp": s["hotbedtemp"],
            "filament_temp": s["filament_temp"],
            "filament_timer": s["filament_timer"],
            "filament_drying_mode": self.drying_mode,
            "drying_temp": self.drying_temp,
            "isrunning": self.isrunning,
            "remaining_seconds": self.remaining_ms // 1000,
            "printer_type": s["printer_type"],
            "printer": dict(copy.deepcopy(s["printer"]),
                            state=self.link.state),
            "language": s["language"],
            "relay": self.relay,
            "fan": self.fan,
            "heat_request": self.heat_request,
            "target": self.target,
            "sensor_temp": self.thermal.sensor,
            "chamber_temp": self.thermal.chamber,
            "chamber_heat": self.thermal.extra_watts,
            "ptc_temp": self.thermal.ptc,
            "reading": int(self.chamber_reading()),
            "ambient": self.thermal.ambient,
            "warehouse_sensor_status": self.warehouse_sensor_status,
            "ptc_sensor_status": 0,
            "swapped_leads": self.swapped,
            "online": self.online,
            "boot_count": self.boot_count,
            "clock": self.clock_ms / 1000.0,
            "flash_writes": self.nvs.writes,
            "flash_writes_by_key": dict(self.nvs.writes_by_key),
        }

    # -- writes ----------------------------------------------------------

    def receive(self, message):
        """Apply one decoded frame from a client, as the firmware does."""
        if not isinstance(message, dict) or not self.online:
            return
        settings = message.get("settings")
        if isinstance(settings, dict) and self._apply_settings(settings):
            return  # rebooting: the rest of the frame is never read
        printer = message.get("printer")
        if isinstance(printer, dict):
            self._apply_printer(printer)

    def press(self, **changes):
        """The device's own panel or web UI changes settings."""
        if not self.online:
            raise ValueError("the device is off or rebooting")
        for key in changes:
            if key not in self.profile.order or key in (
                    "factory_reset", "reset"):
                raise ValueError(f"the panel has no setting {key!r}")
        if "work_on" in changes:
            changes["work_on"] = bool(changes["work_on"])
        if not self._apply_settings(changes):
            self.outbox.append(
                ("broadcast", {"settings": self.settings_block()}))

    def _apply_settings(self, frame):
        """Apply keys in firmware order; True once a key reboots."""
        for key in self.profile.order:
            for alias, canonical in self.aliases.items():
                if canonical == key and alias in frame:
                    self._apply_key(key, frame[alias])
            if key in frame and self._apply_key(key, frame[key]):
                return True
        return False

    def _apply_key(self, key, value):
        s = self.settings
        if key == "work_on":
            if isinstance(value, bool):
                s["work_on"] = value
                self._save(key)
            return False
        if key == "language":
            if value in ("en", "zh"):
                s["language"] = value
                self._save(key)
            return False
        if not is_number(value):
            return False
        if key == "factory_reset":
            if value == 0:
                return False
            self.nvs.erase(key)
            self.settings = factory_settings(self.profile)
            return self._respond_and_reboot("factory_reset")
        if key == "reset":
            if value == 0:
                return False
            self.outbox.append(("reboot", None))
            return True
        if key == "printer_type":
            if value not in (1, 2):
                return False
            s["printer_type"] = int(value)
            s["printer"] = {}
            self._save(key)
            return self._respond_and_reboot("printer_type")
        if key == "isrunning":
            self._set_running(value != 0)
            return False
        byte = stored(value)
        if key == "work_mode":
            if byte != 0:
                s["work_mode"] = byte
                self._save(key)
        elif key in ("set_temp", "temp"):
            s["set_temp"] = byte
            self._save(key)
        elif key == "filtertemp":
            s["filtertemp"] = byte
            self._save(key)
        elif key == "hotbedtemp":
            if value != 0:
                s["hotbedtemp"] = byte
                self._save(key)
        elif key == "filament_temp":
            s["filament_temp"] = byte
            self._save(key)
            if not self.profile.has("filament_drying_mode"):
                self.drying_temp = byte  # V1.0.0 dries at the custom values
        elif key == "filament_timer":
            s["filament_timer"] = byte
            self._save(key)
            if not self.profile.has("filament_drying_mode"):
                self.drying_hours = byte
            self.remaining_ms = byte * 3600 * 1000
        elif key == "filament_drying_mode":
            self._select_drying(byte)
        return False

    def _respond_and_reboot(self, what):
        self.outbox.append(
            ("broadcast", {"response": {"type": what, "ok": 1}}))
        self.outbox.append(("reboot", None))
        return True

    def _select_drying(self, mode):
        if mode == 3:
            preset = (self.settings["filament_temp"],
                      self.settings["filament_timer"])
        elif mode in DRYING_PRESETS:
            preset = DRYING_PRESETS[mode]
        else:
            return
        self.drying_mode = mode
        self.drying_temp, self.drying_hours = preset
        self.remaining_ms = self.drying_hours * 3600 * 1000

    def _set_running(self, running):
        if running and not self.isrunning and self.remaining_ms == 0:
            self.remaining_ms = self.drying_hours * 3600 * 1000
        self.isrunning = int(running)

    def _klipper_bound(self):
        return self.profile.klipper and self.settings["printer_type"] == 2

    def _apply_printer(self, frame):
        s = self.settings
        if self.profile.klipper and is_number(
                frame.get("disconnect")) and frame["disconnect"] != 0:
            s["printer"] = {}
            self._save("printer")
            self._printer_state(UNBOUND)
            return
        name = frame.get("name")
        if not isinstance(name, str) or not name:
            return  # an empty name makes the frame ignored
        if self._klipper_bound():
            fields = {"ip": str, "port": int}
        else:
            fields = {"sn": str, "access_code": str, "ip": str}
        binding = {"name": name}
        for key, kind in fields.items():
            value = frame.get(key)
            ok = is_number(value) if kind is int else isinstance(value, str)
            if not ok:
                self._printer_state(INVALID_INFO)
                return
            binding[key] = stored(value, 16) if kind is int else value
        s["printer"] = binding
        self._save("printer")
        self.link.bind(binding)
        self._printer_state(self.link.state)

    def _printer_state(self, state):
        self.link.state = state
        if state != CONNECTING:
            self.link.up = False
        self.outbox.append(("broadcast", {"printer": {"state": state}}))
