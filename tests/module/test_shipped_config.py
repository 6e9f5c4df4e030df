"""The printer.cfg snippet we ship, with its M141/M191 macros, as is."""
import pathlib

from chamber import STALL_LIMIT
from harness import Klippy

from simulator import Simulator

SHIPPED = (pathlib.Path(__file__).resolve().parents[2]
           / "klipper" / "config" / "panda_breath.cfg")


def shipped_config(port):
    text = SHIPPED.read_text()
    return text.replace("host: 192.168.1.50\n",
                        "host: 127.0.0.1\nport: %d\n" % (port,))


def test_m191_returns_once_the_device_holds_the_target():
    with Simulator(push_interval=0.1, speed=20.0) as sim:
        sim.press(work_on=False)
        k = Klippy(shipped_config(sim.port))
        k.start()
        try:
            k.run_until(lambda: k.status("panda_breath")["connected"])
            k.gcode("M191 S40")
            state = sim.state()
            assert state["work_on"] and state["set_temp"] == 40
            assert state["sensor_temp"] >= 39
            k.gcode("M141 S0")
            k.run_until(lambda: not sim.state()["work_on"])
        finally:
            k.stop()
        assert k.stall.max < STALL_LIMIT


def test_m191_above_the_device_maximum_returns_at_60_without_shutdown():
    with Simulator(push_interval=0.1, speed=20.0) as sim:
        sim.press(work_on=False)
        k = Klippy(shipped_config(sim.port))
        k.start()
        try:
            k.run_until(lambda: k.status("panda_breath")["connected"])
            k.gcode("M191 S65")
            assert k.status("heater_generic chamber")["target"] == 60
            assert sim.state()["set_temp"] == 60
            k.run(3.0)      # holding at 59-60 for many readings
            assert not k.is_shutdown()
            k.gcode("M141 S0")
        finally:
            k.stop()
