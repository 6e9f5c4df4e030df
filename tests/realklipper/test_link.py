"""The link in real Klipper: silence with pongs, targets the device cannot
reach, and RESTARTs while the device misbehaves."""
import pathlib
import socket
import threading

import pytest
from chamber import chamber_config

from realklipper.printer import tracebacks
from simulator import Simulator

HEATER = "heater_generic chamber"
SHIPPED = (pathlib.Path(__file__).resolve().parents[2]
           / "klipper" / "config" / "panda_breath.cfg")


def test_pushes_stopping_while_pings_are_answered_drops_the_link(printer,
                                                                 sim):
    p = printer(options={})     # the shipped defaults
    sim.set_fault("mute", True)
    # link_timeout is 6 s; the bench measures how soon (tests/bench)
    p.wait_for(lambda: not p.status("panda_breath")["connected"],
               timeout=20)
    assert "no reading" in p.status("panda_breath")["last_error"]
    sim.set_fault("mute", False)
    p.wait_for(lambda: p.status("panda_breath")["connected"], timeout=30)


@pytest.mark.parametrize("target", [60, 61, 65, 70, 80])
def test_target_above_the_device_maximum_becomes_60(printer, sim, target):
    p = printer(max_temp=80)
    p.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=%d" % (target,))
    sim.wait_for(lambda s: s["work_on"] and s["set_temp"] == 60)
    assert p.status(HEATER)["target"] == 60
    lowered = p.log().count("chamber target %d lowered to 60" % (target,))
    assert (lowered > 0) == (target > 60)


def test_m191_above_the_maximum_completes_and_the_print_goes_on(printer):
    shipped = SHIPPED.read_text()
    macros = shipped[shipped.index("[gcode_macro M141]"):]
    with Simulator(push_interval=0.1, speed=30.0) as fast:
        fast.press(work_on=False)
        p = printer(config=chamber_config(fast.port, max_temp=80,
                                          extra=macros))
        p.gcode("M191 S80", timeout=120)
        assert p.status(HEATER)["target"] == 60
        p.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=80")
        # Holding 59-60 against a target of 80, verify_heater would shut
        # Klipper down within seconds.
        p.gcode("G4 P15000", timeout=30)
        assert p.api.info()["state"] == "ready"
        assert fast.state()["work_on"]


@pytest.fixture
def blackhole():
    """A port whose listen backlog is full: connects hang unanswered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(listener.getsockname())
        fillers.append(sock)
    yield listener.getsockname()[1]
    for sock in fillers + [listener]:
        sock.close()


@pytest.mark.parametrize("fault", ["refuse", "blackhole", "half_open"])
def test_twenty_restarts_while_connects_fail_leave_no_traceback(
        printer, sim, blackhole, fault):
    port = sim.port
    if fault == "blackhole":
        port = blackhole
    else:
        sim.set_fault(fault, True)
    # A connect that would otherwise outlive the RESTART by far
    options = dict(connect_timeout=30, reconnect_delay=0.1)
    p = printer(config=chamber_config(port, options=options), check=False)
    for _ in range(20):
        p.restart()
    p.gcode("G4 P1000")
    assert not tracebacks(p.log()), tracebacks(p.log())
    assert not tracebacks(p.stderr()), tracebacks(p.stderr())
    assert "did not end in time" not in p.log()


def test_flapping_device_is_counted_backed_off_and_logged_briefly(printer,
                                                                  sim):
    p = printer()
    stop = threading.Event()

    def flap():
        while not stop.wait(0.05):
            sim.drop_all()
    threading.Thread(target=flap, daemon=True).start()
    try:
        p.wait_for(lambda: p.status("panda_breath")["reconnects"] >= 8,
                   timeout=60)
    finally:
        stop.set()
    lines = [line for line in p.log().splitlines()
             if line.startswith("panda_breath: ")
             and ("connected to" in line or " lost: " in line)]
    assert len(lines) <= 6, lines
    p.wait_for(lambda: p.status("panda_breath")["connected"], timeout=30)
