import pytest
from remotes import lone_clone, make_remotes


@pytest.fixture(scope="session")
def remotes(tmp_path_factory):
    """{PANDA_<REPO>_URL / _REF: value} of local git remotes holding the
    real parts' files (remotes.py)."""
    return make_remotes(tmp_path_factory.mktemp("remotes"))


@pytest.fixture
def lone(tmp_path):
    """A clone of this working tree with nothing beside it."""
    return lone_clone(tmp_path / "alone")
