import pytest
from realklipper import trees


@pytest.fixture(scope="session", params=trees.TREES)
def tree(request):
    """The name of a real Klipper tree, built (see trees.need)."""
    trees.need("safety", request.param)
    return request.param
