"""`panda-breath bind` / `unbind` against the simulator and a Moonraker
endpoint, over loopback: the printer_type write and its reboot, the binding
and its states, and Klipper's module seeing the result."""
import socket

import pytest
from chamber import FAST, chamber_config
from moonraker_endpoint import MoonrakerEndpoint
from pkgtools import run_cli
from realklipper import trees
from realklipper.printer import Printer, tracebacks

from simulator import Simulator


@pytest.fixture
def sim():
    with Simulator(push_interval=0.1, reboot_delay=0.3, speed=10.0) as device:
        yield device


@pytest.fixture
def moonraker():
    with MoonrakerEndpoint() as endpoint:
        yield endpoint


def run(*args, timeout=60):
    return run_cli(*args, timeout=timeout)


def bind(sim, *extra, wait=10):
    return run("bind", "--host", "127.0.0.1", "--port", sim.port,
               "--timeout", 2, "--wait", wait, *extra)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sent(sim, root):
    return [f.data[root] for f in sim.frames
            if isinstance(f.data, dict) and root in f.data]


def test_bind_sets_klipper_type_waits_for_reboot_and_connects(sim,
                                                              moonraker):
    result = bind(sim, "--printer-port", moonraker.port)
    assert result.returncode == 0, result.stderr
    assert "reboots" in result.stdout
    assert "binding: connected" in result.stdout
    state = sim.state()
    assert state["printer_type"] == 2 and state["boot_count"] == 2
    # the printer's address is the source of the route to the device
    assert state["printer"] == {"name": "Klipper", "ip": "127.0.0.1",
                                "port": moonraker.port, "state": 3}
    assert sent(sim, "settings") == [{"printer_type": 2}]
    assert sent(sim, "printer") == [{"name": "Klipper", "ip": "127.0.0.1",
                                     "port": moonraker.port}]
    assert moonraker.wait_for_queries(1)


def test_bind_again_leaves_printer_type_alone(sim, moonraker):
    assert bind(sim, "--printer-port", moonraker.port).returncode == 0
    sim.clear_frames()
    result = bind(sim, "--printer-port", moonraker.port, "--name", "U1")
    assert result.returncode == 0, result.stderr
    assert "reboots" not in result.stdout
    assert sent(sim, "settings") == []
    state = sim.state()
    assert state["boot_count"] == 2 and state["printer"]["name"] == "U1"


def test_bind_reports_a_failed_binding_in_words(sim):
    port = free_port()      # nothing listens there
    result = bind(sim, "--printer-ip", "127.0.0.1", "--printer-port", port,
                  wait=2)
    assert result.returncode == 1
    assert "binding: failed (the device cannot reach Moonraker at " \
        "127.0.0.1:%d)" % port in result.stdout
    assert result.stderr.startswith("panda-breath: the binding did not "
                                    "connect")
    assert sim.state()["printer"]["state"] == 4


def test_bind_is_refused_on_firmware_without_klipper_binding():
    with Simulator(firmware="1.0.2", push_interval=0.1) as old:
        result = bind(old, "--printer-port", 7125)
        assert result.returncode == 1
        assert "update the Panda Breath to V1.0.3" in result.stderr
        assert sent(old, "settings") == [] and sent(old, "printer") == []


def test_unbind_removes_the_binding(sim, moonraker):
    assert bind(sim, "--printer-port", moonraker.port).returncode == 0
    result = run("unbind", "--host", "127.0.0.1", "--port", sim.port,
                 "--timeout", 2)
    assert result.returncode == 0, result.stderr
    assert "unbound" in result.stdout
    assert sent(sim, "printer")[-1] == {"disconnect": 1}
    assert sim.state()["printer"] == {"state": 0}


def test_unbind_switches_off_an_auto_session_first(sim, moonraker):
    """Unbound, auto mode would follow no printer: the module's policy
    ('unbind') switches it off before the unbinding."""
    assert bind(sim, "--printer-port", moonraker.port).returncode == 0
    sim.press(work_on=True, work_mode=1)
    sim.clear_frames()
    result = run("unbind", "--host", "127.0.0.1", "--port", sim.port,
                 "--timeout", 2)
    assert result.returncode == 0, result.stderr
    assert "switched the Panda Breath off first" in result.stdout
    assert [f.data for f in sim.frames if f.data is not None] == [
        {"settings": {"work_on": False}}, {"printer": {"disconnect": 1}}]
    assert not sim.state()["work_on"]


def test_unbind_leaves_a_device_that_heats_for_klipper(sim, moonraker):
    assert bind(sim, "--printer-port", moonraker.port).returncode == 0
    sim.press(work_on=True, work_mode=2, set_temp=45)
    sim.clear_frames()
    result = run("unbind", "--host", "127.0.0.1", "--port", sim.port,
                 "--timeout", 2)
    assert result.returncode == 0, result.stderr
    assert sent(sim, "settings") == []
    assert sim.state()["work_on"]


def test_unbind_on_an_unbound_device_sends_nothing(sim):
    result = run("unbind", "--host", "127.0.0.1", "--port", sim.port,
                 "--timeout", 2)
    assert result.returncode == 0
    assert "nothing to do" in result.stdout
    assert sim.frames == []


@pytest.mark.parametrize("args, words", [
    (["--printer-ip", "printer.local"], "not an IPv4 address"),
    (["--printer-port", "0"], "not a port number"),
    (["--name", ""], "1-31 printable characters"),
])
def test_bad_bind_arguments_are_refused_with_usage(sim, args, words):
    result = bind(sim, *args)
    assert result.returncode == 2
    assert words in result.stderr
    assert sim.frames == []


def test_klipper_follows_the_binding_through_the_reboot(sim, moonraker,
                                                        tmp_path):
    tree = trees.need("klipper", "upstream")
    sim.press(work_on=False)
    p = Printer(tree, "upstream", chamber_config(sim.port, options=FAST),
                tmp_path / "klipper")
    try:
        p.start()
        p.wait_for(lambda: p.status("panda_breath")["connected"])
        assert p.status("panda_breath")["binding"] is None
        result = bind(sim, "--printer-port", moonraker.port)
        assert result.returncode == 0, result.stderr
        p.wait_for(lambda: p.status("panda_breath")["binding"]
                   == "connected")
        assert p.status("panda_breath")["reconnects"] >= 1
        moonraker.bed_target = 100.0
        p.gcode("PANDA_BREATH_AUTO TARGET=40 HEAT_AT=90 FAN_AT=50")
        sim.wait_for(lambda s: s["heat_request"])
        p.restart()
        sim.wait_for(lambda s: not s["work_on"])  # Klipper's session ended
    finally:
        p.stop()
    assert not tracebacks(p.log()), tracebacks(p.log())
