"""A service stop (SIGTERM) ends Klipper without its disconnect handlers:
the module turns Klipper's heat off before Klipper goes."""
import signal

from realklipper.printer import tracebacks


def terminate(p):
    p.klippy.send_signal(signal.SIGTERM)
    assert p.klippy.wait(15) == -signal.SIGTERM


def test_sigterm_turns_klippers_heat_off(printer, sim):
    p = printer(check=False)
    p.wait_for(lambda: p.status("panda_breath")["connected"])
    p.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 40)
    terminate(p)
    state = sim.state()
    assert state["work_on"] is False
    assert not tracebacks(p.stderr()), tracebacks(p.stderr())


def test_sigterm_leaves_a_session_started_on_the_device(printer, sim):
    p = printer(check=False)
    p.wait_for(lambda: p.status("panda_breath")["connected"])
    sim.press(work_on=True, work_mode=3, isrunning=1)
    p.wait_for(lambda: p.status("panda_breath")["session"] == "device")
    sim.clear_frames()
    terminate(p)
    assert sim.state()["work_on"] is True
    assert sim.settings_writes() == []
