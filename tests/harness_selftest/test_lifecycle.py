import sys

import pytest
from fake_chamber import chamber_config
from harness import GCodeError, ReactorError


def chamber(k):
    return k.lookup('fake_chamber')


def test_events_follow_klippy_order(klippy):
    assert chamber(klippy).events == ['klippy:connect', 'klippy:ready']
    assert klippy.responses == ['// Klipper state: Ready']
    assert klippy.state_message == "Printer is ready"


def test_restart_builds_a_new_printer_after_disconnect(klippy):
    old_printer, old_chamber = klippy.printer, chamber(klippy)
    module = sys.modules[type(old_chamber).__module__]
    klippy.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    klippy.restart()
    assert old_chamber.events == ['klippy:connect', 'klippy:ready',
                                  'klippy:disconnect']
    assert klippy.printer is not old_printer
    assert old_printer.reactor.finalized
    assert chamber(klippy) is not old_chamber
    assert chamber(klippy).events == ['klippy:connect', 'klippy:ready']
    # Same process: the extra is imported once, like Python's import cache.
    assert sys.modules[type(chamber(klippy)).__module__] is module
    assert type(chamber(klippy)) is type(old_chamber)
    # RESTART turns heaters off first (gcode:request_restart).
    assert old_printer.lookup_object('heaters').heaters[
        'chamber'].target_temp == 0.
    assert klippy.heater('chamber').target_temp == 0.


def test_firmware_restart_recovers_from_shutdown(klippy):
    klippy.gcode("M112")
    assert klippy.is_shutdown()
    old = chamber(klippy)
    klippy.firmware_restart()
    assert old.events[-2:] == ['klippy:firmware_restart',
                               'klippy:disconnect']
    assert not klippy.is_shutdown()


def test_stop_sends_disconnect(klippy):
    old = chamber(klippy)
    klippy.stop()
    assert old.events[-1] == 'klippy:disconnect'
    assert klippy.stopped


def test_m112_shuts_down_once_and_refuses_commands(klippy):
    klippy.gcode("M112")
    assert klippy.is_shutdown()
    assert klippy.shutdown_message == "Shutdown due to M112 command"
    assert chamber(klippy).events.count('klippy:shutdown') == 1
    klippy.printer.invoke_shutdown("again")
    assert chamber(klippy).events.count('klippy:shutdown') == 1
    assert klippy.shutdown_message == "Shutdown due to M112 command"
    with pytest.raises(GCodeError, match="Shutdown due to M112"):
        klippy.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=40")
    # M105, STATUS, HELP, RESTART... stay available.
    klippy.gcode("M105")
    with pytest.raises(GCodeError, match="Klipper state: Not ready"):
        klippy.gcode("STATUS")


def test_async_shutdown_from_a_thread(klippy):
    import threading
    thread = threading.Thread(
        target=klippy.printer.invoke_async_shutdown, args=("from thread",))
    thread.start()
    thread.join()
    klippy.run_until(klippy.is_shutdown)
    assert klippy.shutdown_message == "from thread"


def test_pause_in_ready_handler_raises(make_klippy):
    with pytest.raises(ReactorError, match="pause disabled"):
        make_klippy(chamber_config(chamber_extra="misbehave: pause_in_ready"))


def test_pause_in_get_status_raises(make_klippy):
    k = make_klippy(chamber_config(chamber_extra="misbehave: pause_in_status"))
    with pytest.raises(ReactorError, match="pause disabled"):
        k.status('fake_chamber')


def test_pause_in_shutdown_handler_raises(make_klippy):
    k = make_klippy(
        chamber_config(chamber_extra="misbehave: pause_in_shutdown"))
    with pytest.raises(ReactorError, match="pause disabled"):
        k.gcode("M112")
    assert k.is_shutdown()


def test_exception_in_a_module_timer_is_raised_by_run(make_klippy):
    k = make_klippy(chamber_config(chamber_extra="misbehave: fail_in_timer"),
                    start=False)
    with pytest.raises(RuntimeError, match="deliberate failure in a timer"):
        k.start()
        k.run(0.5)
    assert k.is_shutdown()
    assert k.shutdown_message == "Unhandled exception during run"


def test_exception_in_a_gcode_handler_is_raised_by_gcode(klippy):
    with pytest.raises(ValueError, match="deliberate failure"):
        klippy.gcode("FAKE_CHAMBER_FAIL")
    assert klippy.shutdown_message == ('Internal error on command:'
                                       '"FAKE_CHAMBER_FAIL"')
    assert klippy.responses[-1] == ('!! Internal error on command:'
                                    '"FAKE_CHAMBER_FAIL"')
