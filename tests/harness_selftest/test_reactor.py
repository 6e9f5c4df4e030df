import os
import socket
import threading
import time

import pytest
from harness import NEVER, Reactor, ReactorError


def run(reactor, seconds, done=None):
    reactor.run(reactor.monotonic() + seconds, done)


def test_timer_reschedules_by_return_value_and_stops_at_never():
    reactor = Reactor()
    calls = []

    def tick(eventtime):
        calls.append(eventtime)
        return eventtime + 0.05 if len(calls) < 3 else NEVER
    reactor.register_timer(tick, reactor.NOW)
    run(reactor, 0.3)
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.05


def test_running_timer_cannot_be_reentered_or_rescheduled():
    reactor = Reactor()
    calls = []

    def tick(eventtime):
        calls.append(eventtime)
        reactor.update_timer(timer, reactor.NOW)    # ignored while running
        reactor.pause(eventtime + 0.1)               # nested loop
        return NEVER
    timer = reactor.register_timer(tick, reactor.NOW)
    run(reactor, 0.3)
    assert len(calls) == 1


def test_pause_runs_other_timers():
    reactor = Reactor()
    ticks = []

    def other(eventtime):
        ticks.append(eventtime)
        return eventtime + 0.02

    def waiter(eventtime):
        reactor.pause(eventtime + 0.2)
        ticks.append('resumed')
        return NEVER
    reactor.register_timer(other, reactor.NOW)
    reactor.register_timer(waiter, reactor.NOW)
    run(reactor, 0.3)
    resumed = ticks.index('resumed')
    assert resumed >= 5


def test_unregister_timer_stops_it():
    reactor = Reactor()
    calls = []
    timer = reactor.register_timer(lambda e: calls.append(e) or e + .01,
                                   reactor.NOW)
    run(reactor, 0.05)
    reactor.unregister_timer(timer)
    count = len(calls)
    run(reactor, 0.05)
    assert len(calls) == count and timer.waketime == NEVER


def test_async_callback_from_a_thread_runs_on_the_reactor_thread():
    reactor = Reactor()
    ran = []

    def worker():
        time.sleep(0.05)
        reactor.register_async_callback(
            lambda eventtime: ran.append(threading.get_ident()))
    threading.Thread(target=worker).start()
    started = time.monotonic()
    run(reactor, 2., done=lambda: ran)
    assert ran == [threading.get_ident()]
    assert time.monotonic() - started < 0.5     # woken by the pipe


def test_completion_wait_returns_async_result():
    reactor = Reactor()
    completion = reactor.completion()
    results = []

    def waiter(eventtime):
        results.append(completion.wait(eventtime + 2.))
        return NEVER
    threading.Timer(0.05, reactor.async_complete,
                    (completion, 'done')).start()
    reactor.register_timer(waiter, reactor.NOW)
    run(reactor, 1., done=lambda: results)
    assert results == ['done']


def test_completion_wait_times_out_with_waketime_result():
    reactor = Reactor()
    results = []

    def waiter(eventtime):
        results.append(reactor.completion().wait(eventtime + 0.05, 'late'))
        return NEVER
    reactor.register_timer(waiter, reactor.NOW)
    run(reactor, 0.3, done=lambda: results)
    assert results == ['late']


def test_register_callback_completes_with_result():
    reactor = Reactor()
    completion = reactor.register_callback(lambda eventtime: 42)
    run(reactor, 0.2, done=completion.test)
    assert completion.wait() == 42


def test_fd_read_callback_fires_on_data_and_on_hangup():
    reactor = Reactor()
    a, b = socket.socketpair()
    a.setblocking(False)
    seen = []

    def readable(eventtime):
        data = a.recv(100)
        seen.append(data)
        if not data:
            reactor.unregister_fd(handle)
    handle = reactor.register_fd(a.fileno(), readable)
    b.send(b'hi')
    run(reactor, 0.1, done=lambda: seen)
    b.close()
    run(reactor, 0.2, done=lambda: len(seen) > 1)
    assert seen == [b'hi', b'']
    a.close()


def test_fd_write_callback_follows_set_fd_wake():
    reactor = Reactor()
    a, b = socket.socketpair()
    writes = []

    def writable(eventtime):
        writes.append(eventtime)
        reactor.set_fd_wake(handle, True, False)
    handle = reactor.register_fd(a.fileno(), lambda e: None, writable)
    run(reactor, 0.05)
    assert writes == []
    reactor.set_fd_wake(handle, True, True)
    run(reactor, 0.05)
    assert len(writes) == 1
    reactor.unregister_fd(handle)
    a.close()
    b.close()


def test_closing_a_registered_fd_is_reported():
    reactor = Reactor()
    r, w = os.pipe()
    reactor.register_fd(r, lambda e: None)
    os.close(r)
    os.close(w)
    run(reactor, 0.05)
    assert any("closed while still registered" in str(e)
               for e in reactor.failures)


def test_timer_calls_from_another_thread_are_refused():
    reactor = Reactor()
    errors = []

    def worker():
        try:
            reactor.register_timer(lambda e: NEVER, reactor.NOW)
        except ReactorError as e:
            errors.append(e)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert errors and "thread" in str(errors[0])
    assert reactor.failures == errors


def test_assert_no_pause_makes_pause_raise():
    reactor = Reactor()
    with reactor.assert_no_pause("get_status"):
        with pytest.raises(ReactorError, match="get_status"):
            reactor.pause(reactor.monotonic())


def test_exception_in_callback_is_recorded_and_stops_the_loop():
    reactor = Reactor()

    def boom(eventtime):
        raise KeyError('boom')
    reactor.register_timer(boom, reactor.NOW)
    started = time.monotonic()
    run(reactor, 1.)
    assert time.monotonic() - started < 0.5
    assert isinstance(reactor.failures[0], KeyError)


def test_timer_returning_nothing_is_reported():
    reactor = Reactor()

    def forgetful(eventtime):
        pass
    reactor.register_timer(forgetful, reactor.NOW)
    run(reactor, 0.1)
    assert "returned None instead of its next waketime" in str(
        reactor.failures[0])
