"""Every way Klipper stops heating turns the device off: M112, verify_heater,
an out-of-range reading, a sensor fault the device reports, the heater pin
no longer refreshed, idle_timeout; also while the link is down (delivered
when it is back), and never undone by a reconnect."""
import pytest
from chamber import FAST

from realklipper.conftest import MAX_DURATION, STALE_TIME
from realklipper.helpers import (
    HEATER,
    link,
    quick_verify_heater,
    set_target,
    wait_reconnect,
    writes,
)


def drying(s):
    return s["work_on"] and s["work_mode"] == 3 and s["isrunning"] == 1


@pytest.mark.parametrize("running", ["target", "device_drying",
                                     "klipper_drying"])
def test_m112_turns_the_device_off_whatever_it_runs(printer, sim, running):
    p = printer()
    if running == "target":
        set_target(p, 45)
    elif running == "device_drying":
        sim.press(work_on=True, work_mode=3, isrunning=1)
    else:
        p.gcode("PANDA_BREATH_DRY PRESET=PLA")
    sim.wait_for(lambda s: s["work_on"])
    p.gcode("M112")
    sim.wait_for(lambda s: not s["work_on"])
    state, message = p.state()
    assert state == "shutdown" and "M112" in message


def test_shutdown_while_link_down_is_delivered_and_never_undone(printer,
                                                                sim):
    p = printer()
    set_target(p, 45)
    sim.wait_for(lambda s: s["work_on"])
    sim.set_fault("refuse", True)
    sim.drop_all()
    p.wait_for(lambda: not link(p)["connected"])
    p.api.emergency_stop()
    assert p.state()[0] == "shutdown"
    assert sim.state()["work_on"]       # nothing can reach it yet
    sim.clear_frames()
    sim.set_fault("refuse", False)
    sim.wait_for(lambda s: not s["work_on"])
    # a rebooted device that resumes heating by itself is turned off
    # again, and nothing ever turns it on
    sim.reboot(delay=0.1)
    wait_reconnect(p, 2)
    sim.wait_for(lambda s: not s["work_on"])
    assert ("work_on", True) not in writes(sim)


def test_verify_heater_fault_turns_the_device_off(printer, sim):
    p = printer(config=quick_verify_heater(sim))
    p.wait_for(lambda: link(p)["temperature"] is not None)
    set_target(p, 60)
    sim.wait_for(lambda s: s["work_on"])
    p.wait_for(lambda: p.state()[0] == "shutdown", timeout=30)
    assert "not heating at expected rate" in p.state()[1]
    sim.wait_for(lambda s: not s["work_on"])


# The chamber barely warms, so Klipper's watermark keeps asking for heat.
@pytest.mark.sim(speed=0.02)
def test_lost_readings_stop_the_pin_then_verify_heater_trips(
        printer, sim, klipper_tree):
    """...and the off reaches the device once the link is back."""
    options = dict(FAST, stale_grace=0)
    p = printer(config=quick_verify_heater(sim, options))
    p.wait_for(lambda: link(p)["temperature"] is not None, timeout=20)
    # a target the chamber is within verify_heater's hysteresis of
    target = round(sim.state()["sensor_temp"]) + 3
    set_target(p, target)
    sim.wait_for(lambda s: s["work_on"], timeout=20)
    p.wait_for(lambda: p.status(HEATER)["power"] > 0, timeout=20)
    sim.set_fault("refuse", True)
    sim.drop_all()
    name = klipper_tree[0]

    def pin_expired():
        st = p.api.query({"panda_breath": ["target"], HEATER: ["target"],
                          "webhooks": ["state"]})
        return (st["webhooks"]["state"] == "ready"
                and st[HEATER]["target"] == target
                and st["panda_breath"]["target"] == 0)
    # Klipper refreshes its heater pin with each reading: with none, the
    # pin's max_duration (3 s upstream, 7 s U1) runs out and the module
    # stops asking for heat, before Klipper counts the readings stale
    p.wait_for(pin_expired, timeout=MAX_DURATION[name] + 8)
    # stale (7 s upstream, 10 s U1): Klipper reads 0 and verify_heater
    # shuts it down
    p.wait_for(lambda: p.state()[0] == "shutdown",
               timeout=STALE_TIME[name] + 10)
    assert "not heating at expected rate" in p.state()[1]
    assert sim.state()["work_on"]
    sim.set_fault("refuse", False)
    sim.wait_for(lambda s: not s["work_on"])


def test_reading_out_of_range_shuts_down_and_turns_the_device_off(printer,
                                                                   sim):
    p = printer(max_temp=50)
    set_target(p, 45)
    sim.wait_for(lambda s: s["work_on"])
    sim.swap_leads(True)
    p.wait_for(lambda: p.state()[0] == "shutdown")
    assert "outside range" in p.state()[1]
    sim.wait_for(lambda s: not s["work_on"])


@pytest.mark.parametrize("fault", ["open", "short"])
def test_sensor_fault_shuts_klipper_down_with_a_readable_message(
        printer, sim, fault):
    p = printer()
    set_target(p, 45)
    sim.wait_for(lambda s: s["work_on"])
    sim.sensor_fault(fault)
    p.wait_for(lambda: p.state()[0] == "shutdown")
    assert p.state()[1].splitlines()[0] == (
        "Panda Breath reports its chamber sensor %s" % (fault,))
    sim.wait_for(lambda s: not s["work_on"])
    assert link(p)["target"] == 0


def test_idle_timeout_turns_heat_off_but_leaves_klipper_drying(printer,
                                                               sim):
    p = printer(extra="\n[idle_timeout]\ntimeout: 1\n")
    set_target(p, 45)
    sim.wait_for(lambda s: s["work_on"])
    sim.wait_for(lambda s: not s["work_on"])
    assert p.status("idle_timeout")["state"] == "Idle"
    assert p.status(HEATER)["target"] == 0
    p.gcode("PANDA_BREATH_DRY PRESET=PLA")
    sim.wait_for(drying)
    sim.clear_frames()
    p.gcode("G4 P10")           # toolhead activity: idle_timeout re-arms
    p.wait_for(lambda: p.status("idle_timeout")["state"] == "Idle")
    p.wait_for(lambda: p.output("PANDA_BREATH_STATUS"))
    assert drying(sim.state())
    assert ("work_on", False) not in writes(sim)
