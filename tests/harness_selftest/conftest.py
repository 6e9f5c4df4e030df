import os

import pytest
from fake_chamber import chamber_config
from harness import Klippy

EXTRAS = os.path.join(os.path.dirname(__file__), 'extras')

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
