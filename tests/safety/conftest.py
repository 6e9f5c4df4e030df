import pytest
from realklipper import trees


@pytest.fixture(scope="session", params=trees.TREES)
def tree(request):
    """The name of a real Klipper tree, built (skipped if missing)."""
    try:
        trees.prepare(request.param)
    except trees.TreeMissing as e:
        pytest.skip("real Klipper layer skipped: %s" % (e,))
    return request.param
