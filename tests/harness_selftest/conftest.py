import os

import pytest
from harness import Klippy

EXTRAS = os.path.join(os.path.dirname(__file__), 'extras')

CHAMBER = """
[fake_chamber]
temperature: 20
report_time: %(report_time)s
%(chamber_extra)s

[heater_generic chamber]
sensor_type: fake_chamber
heater_pin: fake_chamber:pwm
control: watermark
min_temp: 0
max_temp: 70
smooth_time: 0.1
%(heater_extra)s
"""


def chamber_config(report_time=0.1, chamber_extra='', heater_extra='',
                   more=''):
    return CHAMBER % {'report_time': report_time,
                      'chamber_extra': chamber_extra,
                      'heater_extra': heater_extra} + more


@pytest.fixture
def make_klippy():
    made = []

    def make(config_text, start=True, **kwargs):
        k = Klippy(config_text, extras_dir=EXTRAS, **kwargs)
        made.append(k)
        if start:
            k.start()
        return k
    yield make
    for k in made:
        if k.printer is not None and not k.stopped:
            try:
                k.stop()
            except Exception:
                pass


@pytest.fixture
def klippy(make_klippy):
    return make_klippy(chamber_config())
