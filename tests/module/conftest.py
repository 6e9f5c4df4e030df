import importlib.util
import pathlib

import pytest

EXTRAS = pathlib.Path(__file__).resolve().parents[2] / "klipper" / "extras"


@pytest.fixture(scope="session")
def pb():
    """The module as Klipper would import it, without a Klipper host."""
    spec = importlib.util.spec_from_file_location(
        "panda_breath_under_test", EXTRAS / "panda_breath.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
