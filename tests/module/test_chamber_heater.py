"""The module in the Klipper harness against the simulator, over loopback.

Every test asserts what the device really received or did (the
simulator's frames and state), what Klipper saw, and that the module never
held the reactor longer than the stall limit."""
import threading

import pytest
from chamber import (
    FAST,
    STALL_LIMIT,
    STARTUP_STALL_LIMIT,
    link_threads,
    start_chamber,
)

from simulator import Simulator


@pytest.fixture
def sim():
    # Factory defaults are work_on true in auto mode; start from "off".
    with Simulator(push_interval=0.1, reboot_delay=0.3) as device:
        device.press(work_on=False)
        yield device


@pytest.fixture
def printer(sim):
    started = []

    def start(**kw):
        k = start_chamber(sim, **kw)
        started.append(k)
        return k
    yield start
    for k in started:
        k.stop()
        assert k.stall.max < STALL_LIMIT, (k.stall.worst, k.stall.max)
        assert k.stall.startup_max < STARTUP_STALL_LIMIT, k.stall.startup_worst


def writes(sim):
    return [(key, value) for _, key, value in sim.settings_writes()]


def wait_device(k, sim, predicate, timeout=5.0):
    k.run_until(lambda: predicate(sim.state()), timeout=timeout)


# Readings

def test_readings_reach_klipper_heater_as_they_arrive(sim, printer):
    k = printer()
    k.run_until(lambda: k.heater("chamber").get_status(
        k.reactor.monotonic())["temperature"] > 0, timeout=3)
    reported = round(sim.state()["sensor_temp"])
    temp = k.heater("chamber").get_status(k.reactor.monotonic())[
        "temperature"]
    assert abs(temp - reported) <= 1
    assert k.status("panda_breath")["stale"] is False


def test_readings_use_mcu_print_time_so_heater_is_not_stale(sim, printer):
    k = printer()
    k.run(1.0)
    temp, _ = k.heater("chamber").get_temp(k.reactor.monotonic())
    assert temp > 0


# Target

def test_target_sends_mode_temp_and_on_as_single_key_frames(sim, printer):
    k = printer()
    sim.clear_frames()
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    wait_device(k, sim, lambda s: s["work_on"] and s["set_temp"] == 45)
    assert writes(sim) == [("work_mode", 2), ("set_temp", 45),
                           ("work_on", True)]
    assert all(len(f.data["settings"]) == 1 for f in sim.frames)
    state = sim.state()
    assert state["work_mode"] == 2


def test_target_zero_sends_work_on_false_as_json_bool(sim, printer):
    k = printer()
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    wait_device(k, sim, lambda s: s["work_on"])
    sim.clear_frames()
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=0")
    wait_device(k, sim, lambda s: not s["work_on"])
    assert writes(sim) == [("work_on", False)]
    assert '"work_on": false' in sim.frames[0].text


@pytest.mark.parametrize("target", [60, 61, 65, 70, 80])
def test_target_above_device_maximum_becomes_klipper_target_60(sim, printer,
                                                               target):
    k = printer(max_temp=80)
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=%d" % (target,))
    wait_device(k, sim, lambda s: s["work_on"])
    k.run(0.2)
    assert sim.state()["set_temp"] == 60
    assert k.status("heater_generic chamber")["target"] == 60
    lowered = [line for line in k.responses if "lowered to 60" in line]
    assert len(lowered) == (target > 60)


def test_fractional_target_is_sent_whole_with_warning(sim, printer):
    k = printer()
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=44.6")
    wait_device(k, sim, lambda s: s["work_on"])
    assert sim.state()["set_temp"] == 45
    assert any("sent as 45" in line for line in k.responses)


def test_device_heats_toward_klipper_target(sim, printer):
    k = printer()
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    wait_device(k, sim, lambda s: s["relay"])


@pytest.mark.parametrize("command", ["TURN_OFF_HEATERS",
                                     "SET_HEATER_TEMPERATURE HEATER=chamber"])
def test_klipper_off_commands_end_as_work_on_false(sim, printer, command):
    k = printer()
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    wait_device(k, sim, lambda s: s["work_on"])
    k.gcode(command)
    wait_device(k, sim, lambda s: not s["work_on"])


def test_idle_timeout_turns_device_off(sim):
    extra = "\n[idle_timeout]\ntimeout: 1\n"
    k = start_chamber(sim, extra=extra)
    try:
        k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
        wait_device(k, sim, lambda s: s["work_on"])
        wait_device(k, sim, lambda s: not s["work_on"], timeout=5)
    finally:
        k.stop()


def test_temperature_wait_returns_once_chamber_is_warm(sim, printer):
    sim.stop()
    with Simulator(push_interval=0.1, speed=30.0) as fast:
        k = start_chamber(fast)
        try:
            k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=35")
            k.gcode('TEMPERATURE_WAIT SENSOR="heater_generic chamber"'
                    " MINIMUM=33")
            assert fast.state()["sensor_temp"] >= 32.5
            assert not k.is_shutdown()
        finally:
            k.stop()
        assert k.stall.max < STALL_LIMIT


# Ownership at connect

def test_power_cycled_device_heating_without_target_is_turned_off(sim,
                                                                  printer):
    sim.press(work_on=True, work_mode=2, set_temp=50)
    sim.power_cycle(off_for=0.1)
    sim.wait_for(lambda s: s["online"] and s["work_on"])
    k = printer()
    wait_device(k, sim, lambda s: not s["work_on"])
    assert writes(sim)[-1] == ("work_on", False)


@pytest.mark.parametrize("mode,extra", [(3, {"isrunning": 1}), (1, {})])
def test_session_started_on_device_is_left_alone(sim, printer, mode, extra):
    sim.press(work_on=True, work_mode=mode, **extra)
    sim.clear_frames()
    k = printer()
    k.run(1.0)
    assert sim.state()["work_on"]
    assert ("work_on", False) not in writes(sim)
    assert any("session started on the device" in r for r in k.responses)


def test_snapshot_arriving_with_the_handshake_is_not_lost():
    with Simulator(push_interval=0.1, snapshot_with_handshake=True) as sim:
        sim.press(work_on=True, work_mode=2, set_temp=50)
        k = start_chamber(sim)
        try:
            wait_device(k, sim, lambda s: not s["work_on"])
            assert k.status("panda_breath")["firmware"] == "V1.0.3"
        finally:
            k.stop()


def test_panel_switch_on_in_always_on_mode_without_target_is_undone(
        sim, printer):
    k = printer()
    k.run(0.5)
    sim.press(work_on=True, work_mode=2)
    wait_device(k, sim, lambda s: not s["work_on"])


# Shutdown and restart

@pytest.mark.parametrize("mode", [2, 3])
def test_emergency_stop_turns_device_off_whatever_its_mode(sim, printer,
                                                           mode):
    k = printer()
    if mode == 2:
        k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    else:
        sim.press(work_on=True, work_mode=3, isrunning=1)
    wait_device(k, sim, lambda s: s["work_on"])
    k.gcode("M112")
    assert k.is_shutdown()
    wait_device(k, sim, lambda s: not s["work_on"])


def test_shutdown_turns_device_off_while_link_down(sim, printer):
    k = printer()
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    wait_device(k, sim, lambda s: s["work_on"])
    sim.set_fault("refuse", True)
    sim.drop_all()
    k.run_until(lambda: not k.status("panda_breath")["connected"])
    k.printer.invoke_shutdown("test shutdown")
    k.run(0.3)
    assert sim.state()["work_on"]
    sim.set_fault("refuse", False)
    wait_device(k, sim, lambda s: not s["work_on"], timeout=5)


def test_shutdown_is_never_undone_by_a_reconnect(sim, printer):
    k = printer()
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    wait_device(k, sim, lambda s: s["work_on"])
    k.printer.invoke_shutdown("test shutdown")
    wait_device(k, sim, lambda s: not s["work_on"])
    sim.reboot(delay=0.1)
    k.run(1.5)
    assert not sim.state()["work_on"]
    assert ("work_on", True) not in writes(sim)[3:]


def test_restart_turns_klipper_owned_device_off(sim, printer):
    k = printer()
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    wait_device(k, sim, lambda s: s["work_on"])
    k.restart()
    wait_device(k, sim, lambda s: not s["work_on"])


def test_restart_leaves_drying_started_on_device_running(sim, printer):
    k = printer()
    sim.press(work_on=True, work_mode=3, isrunning=1)
    k.run(0.5)
    k.restart()
    k.run_until(lambda: k.status("panda_breath")["connected"])
    k.run(0.5)
    assert sim.state()["work_on"] and sim.state()["isrunning"]


def test_twenty_restarts_leave_one_connection_and_no_stray_threads(sim,
                                                                    printer):
    k = printer()
    for _ in range(10):
        k.restart()
        k.run_until(lambda: k.status("panda_breath")["connected"])
        k.firmware_restart()
        k.run_until(lambda: k.status("panda_breath")["connected"])
    k.run_until(lambda: len(link_threads()) == 1
                and sim.state()["clients"] == 1, timeout=10)


# Link loss and reconnect

def test_device_reboot_reconnects_and_reasserts_target(sim, printer):
    k = printer()
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    wait_device(k, sim, lambda s: s["work_on"])
    sim.clear_frames()
    sim.reboot(delay=0.3)
    k.run_until(lambda: k.status("panda_breath")["reconnects"] == 1
                and k.status("panda_breath")["connected"], timeout=5)
    # The rebooted device resumes heating by itself (NVS); the module
    # re-asserts Klipper's target all the same.
    k.run_until(lambda: len(writes(sim)) >= 3)
    assert writes(sim) == [("work_mode", 2), ("set_temp", 45),
                           ("work_on", True)]
    assert sim.state()["work_on"] and sim.state()["set_temp"] == 45


def test_link_blink_never_flips_off_a_device_klipper_wants_on(sim,
                                                              printer):
    k = printer()
    k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=45")
    wait_device(k, sim, lambda s: s["work_on"])
    sim.clear_frames()
    sim.drop_all()
    k.run_until(lambda: k.status("panda_breath")["reconnects"] == 1
                and k.status("panda_breath")["connected"], timeout=5)
    k.run(0.3)
    assert ("work_on", False) not in writes(sim)
    assert sim.state()["work_on"]


def test_reconnect_never_turns_on_a_device_klipper_wants_off(sim, printer):
    k = printer()
    sim.drop_all()
    k.run_until(lambda: k.status("panda_breath")["reconnects"] == 1
                and k.status("panda_breath")["connected"], timeout=5)
    k.run(0.3)
    assert ("work_on", True) not in writes(sim)


def test_half_open_link_is_detected_and_reconnected(sim, printer):
    k = printer()
    sim.set_fault("half_open", True)
    k.run_until(lambda: not k.status("panda_breath")["connected"],
                timeout=FAST["link_timeout"] + 2)
    sim.set_fault("half_open", False)
    k.run_until(lambda: k.status("panda_breath")["connected"], timeout=5)


def test_pushes_stopping_is_detected_though_pings_are_answered(sim,
                                                              printer):
    k = printer()
    sim.set_fault("mute", True)
    k.run_until(lambda: not k.status("panda_breath")["connected"],
                timeout=FAST["link_timeout"] + 2)
    assert "no reading" in k.status("panda_breath")["last_error"]
    sim.set_fault("mute", False)
    k.run_until(lambda: k.status("panda_breath")["connected"], timeout=5)


def test_flapping_link_is_counted_but_logged_a_few_times(sim, printer,
                                                         caplog):
    caplog.set_level("INFO")
    k = printer()
    stop = threading.Event()

    def flap():
        while not stop.wait(0.05):
            sim.drop_all()
    threading.Thread(target=flap, daemon=True).start()
    try:
        k.run_until(lambda: k.status("panda_breath")["reconnects"] >= 5,
                    timeout=20)
    finally:
        stop.set()
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith("panda_breath: ")
             and ("connected to" in r.getMessage()
                  or "lost:" in r.getMessage())]
    assert len(lines) <= 6, lines


@pytest.mark.parametrize("fault,value", [
    ("refuse", True), ("half_open", True), ("no_upgrade", True),
    ("slow_handshake", 30.0)])
def test_restart_ends_the_old_link_thread_at_once(sim, fault, value,
                                                  caplog):
    options = dict(FAST, connect_timeout=30.0)
    k = start_chamber(sim, options=options)
    try:
        sim.set_fault(fault, value)
        sim.drop_all()
        for _ in range(5):
            k.run(0.3)
            k.restart()
            assert len(link_threads()) == 1
    finally:
        k.stop()
    assert not [r for r in caplog.records if r.exc_info]


def test_readings_are_held_during_grace_then_stop(sim):
    options = dict(FAST, stale_grace=2.0)
    k = start_chamber(sim, options=options)
    try:
        heater = k.heater("chamber")
        k.run_until(lambda: heater.last_temp_time > 0)
        sim.set_fault("refuse", True)
        sim.drop_all()
        k.run(0.6)
        held = heater.last_temp_time
        k.run(0.6)
        assert heater.last_temp_time > held
        status = k.status("panda_breath")
        assert status["stale"] and not status["connected"]
        k.run(1.5)
        stopped = heater.last_temp_time
        k.run(1.0)
        assert heater.last_temp_time == stopped
    finally:
        k.stop()
    assert k.stall.max < STALL_LIMIT


@pytest.mark.parametrize("fault,value,error", [
    ("refuse", True, "refused"),
    ("http_status", 404, "HTTP 404"),
    ("http_status", 500, "HTTP 500"),
    ("no_upgrade", True, "timed out"),
    ("slow_handshake", 3.0, "timed out"),
])
def test_failed_connections_are_retried_without_stalling(sim, fault, value,
                                                          error):
    sim.set_fault(fault, value)
    k = Klippy_started_without_link(sim)
    try:
        k.run_until(lambda: error in (k.status("panda_breath")["last_error"]
                                      or ""), timeout=5)
        assert not k.status("panda_breath")["connected"]
        sim.set_fault(fault, 0 if fault == "slow_handshake" else
                      (None if fault == "http_status" else False))
        k.run_until(lambda: k.status("panda_breath")["connected"],
                    timeout=5)
    finally:
        k.stop()
    assert k.stall.max < STALL_LIMIT


def Klippy_started_without_link(sim, **kw):
    from chamber import chamber_config
    from harness import Klippy
    k = Klippy(chamber_config(sim.port, options=FAST, **kw))
    k.start()
    return k


def test_unreachable_port_reports_refused_and_backs_off(sim):
    port = sim.port
    sim.stop()
    from chamber import chamber_config
    from harness import Klippy
    k = Klippy(chamber_config(port, options=FAST))
    k.start()
    try:
        k.run(1.5)
        status = k.status("panda_breath")
        assert "refused" in status["last_error"]
        assert not status["connected"]
    finally:
        k.stop()
    assert k.stall.max < STALL_LIMIT


def test_dns_failure_is_reported_without_blocking_reactor(monkeypatch, sim):
    import socket
    import time
    real = socket.getaddrinfo

    def slow_failing_lookup(host, *args, **kw):
        if host == "pandabreath.test":
            time.sleep(0.5)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not"
                                  " known")
        return real(host, *args, **kw)
    monkeypatch.setattr(socket, "getaddrinfo", slow_failing_lookup)
    from chamber import chamber_config
    from harness import Klippy
    k = Klippy(chamber_config(sim.port, host="pandabreath.test",
                              options=FAST))
    k.start()
    try:
        k.run_until(lambda: "resolve" in (
            k.status("panda_breath")["last_error"] or ""), timeout=5)
    finally:
        k.stop()
    assert k.stall.max < STALL_LIMIT


# Bad device input

@pytest.mark.parametrize("inject", ["send_malformed", "send_binary",
                                    "send_fragmented", "send_wrong_types"])
def test_bad_frames_are_dropped_and_readings_continue(sim, printer, inject):
    k = printer()
    heater = k.heater("chamber")
    getattr(sim, inject)()
    k.run(0.5)
    before = heater.last_temp_time
    k.run_until(lambda: heater.last_temp_time > before, timeout=3)
    assert not k.is_shutdown()


def test_oversized_frame_causes_a_clean_reconnect(sim, printer):
    k = printer()
    sim.send_oversized()
    k.run_until(lambda: k.status("panda_breath")["reconnects"] >= 1
                and k.status("panda_breath")["connected"], timeout=5)
    assert "over" in k.status("panda_breath")["last_error"]
    assert not k.is_shutdown()


@pytest.mark.parametrize("fault,word", [("open", "open"), ("short", "short")])
def test_sensor_fault_shuts_klipper_down(sim, printer, fault, word):
    k = printer()
    sim.sensor_fault(fault)
    k.run_until(k.is_shutdown, timeout=3)
    assert word in k.shutdown_message


def test_swapped_thermistor_leads_reading_out_of_range_shuts_down(sim):
    k = start_chamber(sim, max_temp=50)
    try:
        sim.swap_leads(True)
        k.run_until(k.is_shutdown, timeout=3)
        assert "outside range" in k.shutdown_message
    finally:
        k.stop()


# Status

def test_status_command_prints_one_line_summary(sim, printer):
    k = printer()
    k.run(0.5)
    lines = k.gcode("PANDA_BREATH_STATUS")
    assert len(lines) == 1
    assert "connected, firmware V1.0.3" in lines[0]
    status = k.status("panda_breath")
    assert status["work_on"] is False and status["reconnects"] == 0


def test_status_never_contains_the_wifi_password(sim, printer):
    k = printer()
    k.run(0.5)
    assert "password" not in repr(k.status("panda_breath"))


def test_u1_strict_heater_calls_work(sim):
    from chamber import chamber_config
    from harness import Klippy
    k = Klippy(chamber_config(sim.port, options=FAST), u1_strict=True)
    k.start()
    try:
        k.run_until(lambda: k.status("panda_breath")["connected"])
        k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
        wait_device(k, sim, lambda s: s["work_on"])
    finally:
        k.stop()


def test_v100_firmware_gets_target_as_temp():
    with Simulator(firmware="0.0.0", push_interval=0.1) as sim:
        sim.press(work_on=False)
        k = start_chamber(sim)
        try:
            k.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
            wait_device(k, sim, lambda s: s["work_on"])
            assert ("temp", 40) in writes(sim)
        finally:
            k.stop()
