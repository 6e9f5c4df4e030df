"""The end-to-end scenario, run inside the aarch64 guest on its Python 3.11.

The module is the one the packages installed under /home/lava/klipper, it
imports the websocket-client the python3-websocket package installed under
/usr/lib/python3.11/site-packages, and it runs in the project's Klipper
harness against the simulator on loopback.  Every check is made on the
simulator's real device state, not on what the module believes.

    python3 guest_scenario.py        # exit 0 when every step passed
"""
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "lib")]

from chamber import FAST, chamber_config  # noqa: E402
from harness import GCodeError, Klippy  # noqa: E402

from simulator import Simulator  # noqa: E402

EXTRAS = "/home/lava/klipper/klippy/extras"
SITE_PACKAGES = "/usr/lib/python3.11/site-packages"
LAVA = 1000
SPEED = 20.0         # device physics and clocks, times real time
TARGET = 40
# Short enough that a device that does not heat trips verify_heater
# within the scenario; the simulator heats far faster than this.
CHECK_GAIN_TIME = 8


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


def scenario(sim):
    check_installed()
    config = chamber_config(sim.port, options=FAST,
                            check_gain_time=CHECK_GAIN_TIME)
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

    step(f"set a target of {TARGET} °C")
    start = sim.state()["sensor_temp"]
    k.gcode(f"SET_HEATER_TEMPERATURE HEATER=chamber TARGET={TARGET}")
    state = device_until(k, sim, lambda s: s["work_on"]
                         and s["set_temp"] == TARGET and s["relay"],
                         f"switched on at {TARGET} °C with the relay on")
    step(f"device on: mode {state['work_mode']}, set_temp "
         f"{state['set_temp']}, relay on")

    step("device heats; wait for the chamber to reach the target")
    k.gcode('TEMPERATURE_WAIT SENSOR="heater_generic chamber" '
            f"MINIMUM={TARGET - 1}")
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
    k.gcode(f"SET_HEATER_TEMPERATURE HEATER=chamber TARGET={TARGET}")
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

    step("target 0 turns the device off")
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=0")
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
