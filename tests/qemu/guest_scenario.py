"""The end-to-end scenario, run inside the aarch64 guest on its Python 3.11.

As a U1 owner would: `panda-breath setup` (the packaged CLI) checks the
device and writes the Klipper config from the shipped template; Klipper (the
project's harness, with the guest's Jinja2 as on the printer) loads that
config with the module the packages installed under /home/lava/klipper,
which imports the websocket-client the python3-websocket package installed
under /usr/lib/python3.11/site-packages; the device is the simulator on
loopback.  Every check is made on the simulator's real device state, not on
what the module believes.

    python3 guest_scenario.py        # exit 0 when every step passed
"""
import os
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "lib")]

from harness import GCodeError, Klippy  # noqa: E402

from simulator import Simulator  # noqa: E402

EXTRAS = "/home/lava/klipper/klippy/extras"
CONFIG = "/home/lava/printer_data/config/extended/klipper/panda_breath.cfg"
KLIPPER_SERVICE_LOG = "/var/log/S60klipper.log"
SITE_PACKAGES = "/usr/lib/python3.11/site-packages"
LAVA = 1000
SPEED = 20.0         # device physics and clocks, times real time
TARGET = 40
# Short enough that a device that does not heat trips verify_heater
# within the scenario; the simulator heats far faster than this.  The
# shipped config's 360 s suits a real chamber.
CHECK_GAIN_TIME = 8
OVERRIDES = f"""
[verify_heater chamber]
check_gain_time: {CHECK_GAIN_TIME}
"""


class ScenarioError(Exception):
    pass


def step(text):
    print("scenario: " + text, flush=True)


def check(condition, message):
    if not condition:
        raise ScenarioError(message)


def device_until(k, sim, predicate, what, timeout=20.0):
    """Run Klipper until the device's real state satisfies predicate."""
    try:
        k.run_until(lambda: predicate(sim.state()), timeout=timeout)
    except (AssertionError, TimeoutError) as e:
        raise ScenarioError(f"device never {what} within {timeout:.0f} s "
                            f"(device state: {summary(sim.state())}; "
                            f"module: {k.status('panda_breath')})") from e
    return sim.state()


def summary(state):
    keys = ("online", "work_on", "work_mode", "set_temp", "relay",
            "sensor_temp", "boot_count", "clients")
    return {key: state.get(key) for key in keys}


def check_installed():
    module = os.path.join(EXTRAS, "panda_breath.py")
    check(os.path.isfile(module), f"{module} is not installed")
    check(os.stat(module).st_uid == LAVA,
          f"{module} is not owned by lava (uid {os.stat(module).st_uid})")
    import websocket
    check(websocket.__file__.startswith(SITE_PACKAGES + "/"),
          f"websocket-client comes from {websocket.__file__}, "
          f"not the package in {SITE_PACKAGES}")
    step(f"module installed at {module}; websocket-client "
         f"{websocket.__version__} from {os.path.dirname(websocket.__file__)}")


def heater_temperature(k):
    return k.heater("chamber").get_status(k.reactor.monotonic())[
        "temperature"]


def cli(*args):
    proc = subprocess.run(["/usr/bin/panda-breath", *args], text=True,
                          capture_output=True, timeout=120)
    for line in (proc.stdout + proc.stderr).splitlines():
        print(f"  | {line}", flush=True)
    check(proc.returncode == 0, f"panda-breath {' '.join(args)} exited "
          f"{proc.returncode}")
    return proc.stdout


def setup_with_cli(sim):
    step("panda-breath setup (the packaged CLI) against the device")
    restarts = service_requests()
    cli("setup", "--host", "127.0.0.1", "--port", str(sim.port))
    check(os.path.isfile(CONFIG), f"setup did not write {CONFIG}")
    check(service_requests() == restarts + ["restart"],
          f"setup did not restart Klipper once ({KLIPPER_SERVICE_LOG}: "
          f"{service_requests()})")
    written = [key for _, key, _ in sim.settings_writes()]
    check("printer_type" not in written,
          "setup wrote printer_type (that reboots the device)")
    step(f"setup wrote {CONFIG} and restarted Klipper")
    out = cli("status")
    check("V1.0.3" in out or sim.state()["fw_version"] in out,
          "panda-breath status does not show the device's firmware")
    with open(CONFIG) as f:
        return f.read()


def service_requests():
    try:
        with open(KLIPPER_SERVICE_LOG) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def gcode_with_deadline(k, script, seconds):
    """Run a G-code that may wait (M191); if it has not returned after
    seconds, shut Klipper down so it does (and the check after fails)."""
    def expire(eventtime):
        k.printer.invoke_shutdown(f"scenario: '{script}' still waiting "
                                  f"after {seconds} s")
        return k.reactor.NEVER
    timer = k.reactor.register_timer(expire,
                                     k.reactor.monotonic() + seconds)
    try:
        return k.gcode(script)
    finally:
        k.reactor.unregister_timer(timer)


def scenario(sim):
    check_installed()
    config = setup_with_cli(sim) + OVERRIDES
    k = Klippy(config, extras_dir=EXTRAS, u1_strict=True)
    k.start()
    try:
        run_printer(k, sim)
    finally:
        if not k.is_shutdown():
            k.gcode("TURN_OFF_HEATERS")
        k.stop()
    step(f"longest time inside the module per reactor callback: "
         f"{k.stall.max * 1000:.1f} ms ({k.stall.worst}, emulated CPU)")


def run_printer(k, sim):
    step("connect")
    k.run_until(lambda: k.status("panda_breath")["connected"], timeout=20)
    check(sim.state()["clients"] >= 1, "the device sees no client")

    step("read the temperature")
    k.run_until(lambda: heater_temperature(k) > 0, timeout=10)
    device = sim.state()["sensor_temp"]
    klipper = heater_temperature(k)
    check(abs(klipper - device) <= 1.0,
          f"Klipper reads {klipper:.1f} °C, the device {device:.1f} °C")
    step(f"chamber at {klipper:.1f} °C (device {device:.1f} °C)")

    step(f"M141 S{TARGET} (the shipped macro) sets the target")
    start = sim.state()["sensor_temp"]
    k.gcode(f"M141 S{TARGET}")
    state = device_until(k, sim, lambda s: s["work_on"]
                         and s["set_temp"] == TARGET and s["relay"],
                         f"switched on at {TARGET} °C with the relay on")
    step(f"device on: mode {state['work_mode']}, set_temp "
         f"{state['set_temp']}, relay on")

    step(f"the device heats; M191 S{TARGET} (the shipped macro) waits")
    gcode_with_deadline(k, f"M191 S{TARGET}", 60)
    check(not k.is_shutdown(), f"Klipper shut down: {k.shutdown_message}")
    state = sim.state()
    check(state["sensor_temp"] > start + 5,
          f"the device did not heat ({start:.1f} -> "
          f"{state['sensor_temp']:.1f} °C)")
    step(f"chamber heated {start:.1f} -> {state['sensor_temp']:.1f} °C")

    step(f"hold for longer than verify_heater's {CHECK_GAIN_TIME} s window")
    k.run(CHECK_GAIN_TIME + 2)
    check(not k.is_shutdown(),
          f"verify_heater shut Klipper down: {k.shutdown_message}")
    check(sim.state()["work_on"], "the device switched off while holding")
    step("verify_heater satisfied, device still heating as asked")

    step("M112 (emergency stop)")
    try:
        k.gcode("M112")
    except GCodeError:
        pass
    check(k.is_shutdown(), "M112 did not shut Klipper down")
    device_until(k, sim, lambda s: not s["work_on"] and not s["relay"],
                 "switched off after M112", timeout=10)
    step("device off after M112")

    step("FIRMWARE_RESTART, then the target again")
    k.firmware_restart()
    k.run_until(lambda: k.status("panda_breath")["connected"], timeout=20)
    check(not sim.state()["work_on"],
          "the device came back on by itself after the restart")
    k.gcode(f"M141 S{TARGET}")
    device_until(k, sim, lambda s: s["work_on"] and s["set_temp"] == TARGET,
                 "switched on again after the restart")

    step("device reboots")
    boots = sim.state()["boot_count"]
    reconnects = k.status("panda_breath")["reconnects"]
    sim.clear_frames()
    rebooted_at = time.monotonic()
    sim.reboot()
    device_until(k, sim, lambda s: not s["online"]
                 or s["boot_count"] > boots, "went down for the reboot",
                 timeout=10)
    device_until(k, sim, lambda s: s["online"] and s["boot_count"] > boots,
                 "came back from the reboot", timeout=20)
    k.run_until(lambda: k.status("panda_breath")["reconnects"] > reconnects
                and k.status("panda_breath")["connected"], timeout=20)
    check(sim.state()["clients"] >= 1, "the device sees no client")
    step(f"reconnected after the reboot "
         f"(reconnects: {k.status('panda_breath')['reconnects']})")
    # The device may resume from its flash on its own: what proves the
    # re-assert is the frames it received since the reboot.
    def asserted():
        return [(key, value) for t, key, value in sim.settings_writes()
                if t >= rebooted_at]
    try:
        k.run_until(lambda: ("work_on", True) in asserted(), timeout=10)
    except (AssertionError, TimeoutError) as e:
        raise ScenarioError(
            "the module did not re-assert work_on after the reboot "
            f"(writes since: {asserted()})") from e
    device_until(k, sim, lambda s: s["work_on"] and s["set_temp"] == TARGET
                 and s["relay"], "heating at the target after the reboot")
    step(f"target re-asserted after the reboot: {asserted()}")

    step("M141 S0 turns the device off")
    k.gcode("M141 S0")
    device_until(k, sim, lambda s: not s["work_on"], "switched off")
    check(not k.is_shutdown(), f"Klipper shut down: {k.shutdown_message}")


def main():
    started = time.monotonic()
    try:
        with Simulator(host="127.0.0.1", port=0, speed=SPEED,
                       push_interval=0.3, reboot_delay=2.0) as sim:
            step(f"simulator listening on {sim.url} "
                 f"(firmware {sim.state()['fw_version']}, speed x{SPEED})")
            scenario(sim)
    except ScenarioError as e:
        print(f"scenario: FAILED: {e}", flush=True)
        return 1
    except Exception as e:
        traceback.print_exc()
        print(f"scenario: FAILED: {type(e).__name__}: {e}", flush=True)
        return 1
    step(f"PASSED in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
