"""The end-to-end scenario, run inside the aarch64 guest on its Python 3.11.

The U1's own Klipper (its fork, cross-built for aarch64, started by
/etc/init.d/S60klipper) with the module the packages installed under
/home/lava/klipper, driven only through Klipper's API socket.  The device
is the simulator on the host, reached like a Panda Breath on the LAN at
10.0.2.100:80 through QEMU's restricted network; its real state is read
(and its reboot asked for) through a control service beside it.

    python3 guest_scenario.py heater    # install checked: the whole scenario
    python3 guest_scenario.py removed   # packages removed: Klipper starts
                                        # cleanly without the module's config
Exit 0 when every step passed.
"""
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "lib")]

from klippy_api import APIError, KlippyAPI  # noqa: E402

DEVICE = ("10.0.2.100", 80)
CONTROL = ("10.0.2.100", 81)
API_SOCKET = "/tmp/klippy_uds"
KLIPPER_SERVICE = "/etc/init.d/S60klipper"
KLIPPER_SERVICE_LOG = "/var/log/S60klipper.log"
CONFIG_DIR = "/home/lava/printer_data/config"
MODULE_CONFIG = CONFIG_DIR + "/extended/klipper/panda_breath.cfg"
KLIPPY_LOG = "/home/lava/printer_data/logs/klippy.log"
TARGET = 40
# Short enough that a device that does not heat trips verify_heater within
# the scenario; the simulator heats far faster.  The shipped 360 s suits a
# real chamber.
CHECK_GAIN_TIME = 8
# The U1's printer.cfg in miniature: the Linux host MCU for its boards, the
# fork's required [printer] options, and the Extended Firmware's include of
# the features' configs.
PRINTER_CFG = """\
[mcu]
serial: /run/klipper/mcu_tty

[printer]
kinematics: none
max_velocity: 1
max_accel: 1
max_logical_extruder_num: 32
max_physical_extruder_num: 4

[include extended/klipper/*.cfg]
"""
OVERRIDES = """
[include scenario.cfg]
"""
SCENARIO_CFG = f"""\
[verify_heater chamber]
check_gain_time: {CHECK_GAIN_TIME}
"""
# Klipper's start-up in the emulated CPU takes tens of seconds.
STARTUP = 180


STARTED = time.monotonic()


class ScenarioError(Exception):
    pass


def step(text):
    print(f"scenario: [{time.monotonic() - STARTED:5.1f} s] {text}",
          flush=True)


def check(condition, message):
    if not condition:
        raise ScenarioError(message)


class Bench:
    """The host's control service: the device's real state, its reboot."""

    def __init__(self):
        self.sock = socket.create_connection(CONTROL, timeout=30)
        self.file = self.sock.makefile("rw")

    def ask(self, op):
        self.file.write(json.dumps({"op": op}) + "\n")
        self.file.flush()
        reply = json.loads(self.file.readline())
        if isinstance(reply, dict) and "error" in reply:
            raise ScenarioError(f"control service: {reply['error']}")
        return reply

    def state(self):
        return self.ask("state")

    def wait(self, predicate, what, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise ScenarioError(f"device never {what} within "
                                    f"{timeout:.0f} s (device: "
                                    f"{summary(state)})")
            time.sleep(0.2)


def summary(state):
    keys = ("online", "work_on", "work_mode", "set_temp", "relay",
            "sensor_temp", "boot_count", "clients")
    return {key: state.get(key) for key in keys}


class Klipper:
    """The running Klipper, through its API socket only."""

    def __init__(self):
        self.api = None

    def connect(self, timeout=STARTUP):
        """Wait for the API socket and state ready; on any other end,
        fail with Klipper's message and the log's traceback."""
        deadline = time.monotonic() + timeout
        info = {}
        while time.monotonic() < deadline:
            if self.api is None or self.api.closed.is_set():
                self.api = None
                try:
                    self.api = KlippyAPI(API_SOCKET)
                except OSError:
                    time.sleep(0.5)
                    continue
            try:
                info = self.api.info()
            except APIError:
                time.sleep(0.5)
                continue
            if info["state"] == "ready":
                return info
            if info["state"] in ("error", "shutdown"):
                break
            time.sleep(0.5)
        show_log()
        raise ScenarioError(f"Klipper is not ready (state "
                            f"{info.get('state', 'no API socket')}): "
                            f"{info.get('state_message', '').strip()}")

    def state(self):
        return self.api.info()["state"]

    def gcode(self, script, timeout=30.0):
        return self.api.gcode(script, timeout)

    def status(self, name):
        return self.api.query({name: None})[name]

    def wait(self, predicate, what, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise ScenarioError(f"Klipper never {what} within "
                                    f"{timeout:.0f} s")
            time.sleep(0.2)

    def restart(self, command):
        """FIRMWARE_RESTART or RESTART: klippy builds a new printer and a
        new API socket."""
        old, self.api = self.api, None
        try:
            old.gcode(command, timeout=10)
        except APIError:
            pass          # the reply may be lost with the socket
        old.closed.wait(30)
        old.close()
        return self.connect()

    def close(self):
        if self.api is not None:
            self.api.close()
            self.api = None


def show_log(lines=40):
    """The end of klippy.log, where a start-up error's traceback is."""
    try:
        with open(KLIPPY_LOG, errors="replace") as f:
            text = f.read().splitlines()
    except OSError:
        return
    print(f"scenario: the end of {KLIPPY_LOG}:", flush=True)
    for line in text[-lines:]:
        print(f"  klippy.log| {line}", flush=True)


def check_log_clean():
    """Klipper logged no exception (a module callback that raised is
    logged without stopping Klipper)."""
    with open(KLIPPY_LOG, errors="replace") as f:
        text = f.read()
    if "Traceback (most recent call last)" in text:
        show_log(60)
        raise ScenarioError(f"{KLIPPY_LOG} has a traceback")


def service(action):
    subprocess.run([KLIPPER_SERVICE, action], check=True,
                   stdout=subprocess.DEVNULL)


def service_requests():
    try:
        with open(KLIPPER_SERVICE_LOG) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def cli(*args):
    proc = subprocess.run(["/usr/bin/panda-breath", *args], text=True,
                          capture_output=True, timeout=120)
    for line in (proc.stdout + proc.stderr).splitlines():
        print(f"  | {line}", flush=True)
    check(proc.returncode == 0, f"panda-breath {' '.join(args)} exited "
          f"{proc.returncode}")
    return proc.stdout


def write_printer_cfg(extra=""):
    with open(os.path.join(CONFIG_DIR, "printer.cfg"), "w") as f:
        f.write(PRINTER_CFG + extra)
    with open(os.path.join(CONFIG_DIR, "scenario.cfg"), "w") as f:
        f.write(SCENARIO_CFG)


def heater(k):
    return k.status("heater_generic chamber")


def link(k):
    return k.status("panda_breath")


def setup_with_cli(bench):
    step("panda-breath setup (the packaged CLI) against the device")
    restarts = service_requests()
    bench.ask("clear_frames")
    cli("setup", "--host", DEVICE[0], "--port", str(DEVICE[1]))
    check(os.path.isfile(MODULE_CONFIG), f"setup did not write "
          f"{MODULE_CONFIG}")
    check(service_requests() == restarts + ["restart"],
          f"setup did not restart Klipper once ({KLIPPER_SERVICE_LOG}: "
          f"{service_requests()})")
    written = [key for key, _ in bench.ask("settings_writes")]
    check("printer_type" not in written,
          "setup wrote printer_type (that reboots the device)")
    step(f"setup wrote {MODULE_CONFIG} and restarted Klipper")


def run_heater(k, bench):
    k.connect()
    step(f"Klipper ready (the U1 fork on Python "
         f"{sys.version.split()[0]})")
    k.wait(lambda: link(k)["connected"], "connected to the device")
    check(bench.state()["clients"] == 1,
          f"the device sees {bench.state()['clients']} clients, not 1")

    step("the reading")
    k.wait(lambda: heater(k)["temperature"] > 0, "read a temperature")
    device = bench.state()["sensor_temp"]
    klipper = heater(k)["temperature"]
    # The U1's heaters.py reports whole degrees.
    check(abs(klipper - device) <= 1.5,
          f"Klipper reads {klipper} °C, the device {device:.1f} °C")
    step(f"chamber at {klipper} °C (device {device:.1f} °C)")

    step(f"M141 S{TARGET} (the shipped macro) sets the target")
    start = bench.state()["sensor_temp"]
    k.gcode(f"M141 S{TARGET}")
    state = bench.wait(lambda s: s["work_on"] and s["set_temp"] == TARGET
                       and s["relay"],
                       f"switched on at {TARGET} °C with the relay on")
    step(f"device on: mode {state['work_mode']}, set_temp "
         f"{state['set_temp']}, relay on")

    step(f"the device heats; M191 S{TARGET} (the shipped macro) waits")
    try:
        k.gcode(f"M191 S{TARGET}", timeout=120)
    except APIError as e:
        raise ScenarioError(f"M191 failed: {e}") from None
    check(k.state() == "ready", "Klipper is not ready after M191")
    state = bench.state()
    check(state["sensor_temp"] > start + 5,
          f"the device did not heat ({start:.1f} -> "
          f"{state['sensor_temp']:.1f} °C)")
    step(f"chamber heated {start:.1f} -> {state['sensor_temp']:.1f} °C")

    step(f"hold for longer than verify_heater's {CHECK_GAIN_TIME} s window")
    time.sleep(CHECK_GAIN_TIME + 2)
    info = k.api.info()
    check(info["state"] == "ready", f"Klipper shut down while holding: "
          f"{info.get('state_message', '').strip()}")
    check(bench.state()["work_on"], "the device switched off while holding")
    step("verify_heater satisfied, device still heating as asked")

    step("M112 (emergency stop)")
    try:
        k.gcode("M112", timeout=10)
    except APIError:
        pass
    k.wait(lambda: k.state() == "shutdown", "shut down after M112")
    bench.wait(lambda s: not s["work_on"] and not s["relay"],
               "switched off after M112", timeout=15)
    step("Klipper shut down, device off")

    step("FIRMWARE_RESTART")
    k.restart("FIRMWARE_RESTART")
    k.wait(lambda: link(k)["connected"], "reconnected after the restart")
    # A link the old printer left open would stay: it keeps itself alive.
    bench.wait(lambda s: s["clients"] == 1, "saw one client after "
               "FIRMWARE_RESTART (the old link is still open)", timeout=10)
    check(not bench.state()["work_on"],
          "the device came back on by itself after the restart")
    step("ready again with one connection to the device; device still off")
    k.gcode(f"M141 S{TARGET}")
    bench.wait(lambda s: s["work_on"] and s["set_temp"] == TARGET,
               "switched on again after the restart")

    step("the device reboots")
    boots = bench.state()["boot_count"]
    reconnects = link(k)["reconnects"]
    bench.ask("clear_frames")
    bench.ask("reboot")
    bench.wait(lambda s: s["online"] and s["boot_count"] > boots,
               "came back from the reboot")
    k.wait(lambda: link(k)["reconnects"] > reconnects
           and link(k)["connected"], "reconnected after the reboot")
    step(f"reconnected after the reboot (reconnects: "
         f"{link(k)['reconnects']})")
    # The device may resume from its flash on its own: what proves the
    # re-assert is the frames it received since the reboot.
    deadline = time.monotonic() + 15
    while ["work_on", True] not in bench.ask("settings_writes"):
        check(time.monotonic() < deadline,
              "the module did not re-assert work_on after the reboot "
              f"(writes since: {bench.ask('settings_writes')})")
        time.sleep(0.2)
    bench.wait(lambda s: s["work_on"] and s["set_temp"] == TARGET
               and s["relay"], "heating at the target after the reboot")
    step(f"target re-asserted: {bench.ask('settings_writes')}")

    step("M141 S0 turns the device off")
    k.gcode("M141 S0")
    bench.wait(lambda s: not s["work_on"], "switched off")
    check(k.state() == "ready", "Klipper is not ready after M141 S0")
    check_log_clean()


def heater_phase(bench):
    check(os.path.isfile("/home/lava/klipper/klippy/extras/panda_breath.py"),
          "the module is not installed")
    write_printer_cfg(OVERRIDES)
    setup_with_cli(bench)
    k = Klipper()
    try:
        run_heater(k, bench)
    finally:
        k.close()
        service("stop")


def removed_phase(bench):
    check(not os.path.exists(MODULE_CONFIG),
          f"{MODULE_CONFIG} is still there")
    write_printer_cfg()
    step("Klipper starts without the module and its config")
    service("restart")
    k = Klipper()
    try:
        k.connect()
        names = k.api.call("objects/list")["objects"]
        check(not any("panda_breath" in n or n.endswith(" chamber")
                      for n in names),
              f"Klipper still has the chamber heater: {names}")
        check_log_clean()
        step("Klipper ready, no chamber heater")
        check(bench.state()["clients"] == 0,
              "something still talks to the device")
    finally:
        k.close()
        service("stop")


def main():
    phase = sys.argv[1] if len(sys.argv) > 1 else "heater"
    try:
        bench = Bench()
        if phase == "heater":
            heater_phase(bench)
        elif phase == "removed":
            removed_phase(bench)
        else:
            raise ScenarioError(f"unknown phase {phase!r}")
    except (ScenarioError, APIError, OSError) as e:
        print(f"scenario: FAILED: {type(e).__name__}: {e}", flush=True)
        return 1
    step("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
