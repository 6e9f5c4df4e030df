import pytest
from realklipper import trees


@pytest.fixture(scope="session")
def bench_klipper():
    """The bench smoke tests run upstream Klipper: built here, skipped
    with PANDA_SKIP=bench, a one-line failure when it cannot be had."""
    return trees.need("bench", "upstream")
