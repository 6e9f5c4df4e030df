"""The printer.cfg snippet we ship, with its M141/M191 macros, as is, in
real Klipper."""
import pathlib

import pytest

SHIPPED = (pathlib.Path(__file__).resolve().parents[2]
           / "klipper" / "config" / "panda_breath.cfg")


def shipped_config(port):
    text = SHIPPED.read_text()
    assert "host: 192.168.1.50\n" in text
    return text.replace("host: 192.168.1.50\n",
                        "host: 127.0.0.1\nport: %d\n" % (port,))


@pytest.mark.sim(speed=20.0)
def test_m191_returns_once_the_device_holds_the_target(printer, sim):
    p = printer(config=shipped_config(sim.port))
    p.gcode("M191 S40", timeout=120)
    state = sim.state()
    assert state["work_on"] and state["set_temp"] == 40
    assert state["sensor_temp"] >= 39
    assert p.status("heater_generic chamber")["temperature"] >= 39
    p.gcode("M141 S0")
    sim.wait_for(lambda s: not s["work_on"])
    p.gcode("M141 S35")
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 35)
