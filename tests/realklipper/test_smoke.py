"""The module loads and heats in real Klipper, upstream and the U1 fork."""
HEATER = "heater_generic chamber"


def test_heater_ready_with_readings(printer, sim):
    p = printer()
    # Klipper smooths readings (smooth_time 1 s) from 0 at start.
    p.wait_for(lambda: abs(p.status(HEATER)["temperature"]
                           - sim.state()["sensor_temp"]) <= 1.5)


def test_target_reaches_device(printer, sim):
    p = printer()
    p.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 45)
    p.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=0")
    sim.wait_for(lambda s: not s["work_on"])


def test_restarts_leave_one_connection(printer, sim):
    p = printer()
    for command in ("RESTART", "FIRMWARE_RESTART"):
        p.restart(command)
        p.wait_for(lambda: p.status("panda_breath")["connected"])
        sim.wait_for(lambda s: s["clients"] == 1)


def test_emergency_stop_turns_device_off(printer, sim):
    p = printer()
    p.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    sim.wait_for(lambda s: s["work_on"])
    p.api.emergency_stop()
    sim.wait_for(lambda s: not s["work_on"])
    assert p.api.info()["state"] == "shutdown"
