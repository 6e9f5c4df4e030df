from harness import StallMeter


def chamber(k):
    return k.lookup('fake_chamber')


def test_stall_meter_measures_a_slow_module_gcode_handler(klippy):
    klippy.run(0.3)
    assert klippy.stall.samples > 0
    assert klippy.stall.max < 0.02
    klippy.gcode("FAKE_CHAMBER_BUSY SECONDS=0.06")
    # Other threads' CPU waits meanwhile are taken off (see stall.py).
    assert klippy.stall.max >= 0.05
    assert "FakeChamber.cmd_BUSY (gcode)" in klippy.stall.worst


def test_stall_meter_times_module_timers_and_event_handlers(klippy):
    kinds = {name.rsplit('(', 1)[1] for name, _ in klippy.stall.history}
    assert 'klippy:ready)' in kinds
    assert klippy.stall.startup_worst.endswith('(klippy:connect)')
    klippy.run(0.3)
    names = [name for name, _ in klippy.stall.history]
    assert any("FakeChamber._sample (timer)" in n for n in names)
    assert klippy.status('fake_chamber')
    assert klippy.stall.history[-1][0].endswith("get_status (get_status)")


def test_harness_code_is_not_counted(klippy):
    klippy.stall.reset()
    klippy.gcode("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=30")
    klippy.gcode("TURN_OFF_HEATERS")
    klippy.gcode("G4 P100")
    package = klippy.printer.extras_package
    assert klippy.stall.samples == len(klippy.stall.history) > 0
    assert all(name.startswith(package + '.fake_chamber.FakeChamber.')
               for name, _ in klippy.stall.history)


def test_time_paused_inside_a_module_callback_is_not_counted():
    import time
    meter = StallMeter()
    meter.packages.add(__name__.split('.')[0])

    def module_callback():
        time.sleep(0.01)
        started = meter.suspend()
        time.sleep(0.05)            # a nested loop: other work runs
        meter.resume(started)

    meter.call('timer', module_callback)
    assert 0.01 <= meter.max < 0.04
    assert meter.samples == 1


def test_garbage_collection_inside_a_module_callback_is_not_counted():
    import gc
    import time
    meter = StallMeter()
    meter.packages.add(__name__.split('.')[0])
    heap = [[i] for i in range(500000)]  # a collection has work to do
    collecting = []

    def module_callback():
        time.sleep(0.01)
        started = time.perf_counter()
        gc.collect()    # Klipper collects while idle, never in here
        collecting.append(time.perf_counter() - started)

    meter.call('timer', module_callback)
    assert collecting[0] > 0.005 and len(heap)
    assert 0.01 <= meter.max < 0.01 + collecting[0] / 2


def test_stall_meter_times_module_fd_and_async_callbacks(klippy):
    import os
    import threading
    r, w = os.pipe()
    chamber(klippy).listen(r)
    os.write(w, b'x')
    threading.Thread(target=chamber(klippy).ping_from_thread).start()
    klippy.run_until(lambda: chamber(klippy).received
                     and 'pinged' in chamber(klippy).events)
    names = [name for name, _ in klippy.stall.history]
    assert any(n.endswith("FakeChamber._readable (fd read)") for n in names)
    assert any(n.endswith("FakeChamber._pinged (async)") for n in names)
    klippy.reactor.unregister_fd(chamber(klippy).fd_handle)
    os.close(r)
    os.close(w)
