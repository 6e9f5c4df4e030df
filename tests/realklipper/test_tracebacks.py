"""The log check that every real-Klipper test ends with lets through only
Klipper's own identify retry."""
from realklipper.printer import tracebacks

IDENTIFY = """mcu 'mcu': Starting serial connect
mcu 'mcu': Wait for identify_response
Traceback (most recent call last):
  File "/k/klippy/serialhdl.py", line 75, in _get_identify_data
    params = self.send_with_response(msg, 'identify_response')
  File "/k/klippy/serialhdl.py", line 68, in _error
    raise error(self.warn_prefix + (msg % params))
serialhdl.error: mcu 'mcu': Serial connection closed
Loaded MCU 'mcu' 145 commands
"""

MODULE = """Starting heater checks for chamber
Exception in thread panda_breath:
Traceback (most recent call last):
  File "/k/klippy/extras/panda_breath.py", line 900, in _serve
    self._reactor.register_async_callback(self._deliver)
  File "/k/klippy/reactor.py", line 100, in register_async_callback
    self._notify()
OSError: [Errno 9] Bad file descriptor
"""

# Klipper's identify retry text, but a frame of the module's inside it
DISGUISED = IDENTIFY.replace(
    '  File "/k/klippy/serialhdl.py", line 68, in _error',
    '  File "/k/klippy/extras/panda_breath.py", line 68, in _error')


def test_klippers_identify_retry_is_let_through():
    assert tracebacks(IDENTIFY) == []


def test_any_other_traceback_is_reported_whole():
    found = tracebacks(IDENTIFY + MODULE)
    assert len(found) == 1
    assert "panda_breath.py" in found[0] and "OSError" in found[0]


def test_a_module_frame_inside_the_retry_is_reported():
    assert len(tracebacks(DISGUISED)) == 1
