import pytest
from pkgtools import CACHE, Ipk, make_checkout

from package import build


@pytest.fixture(scope="session")
def checkout(tmp_path_factory):
    """The working tree's sources, committed on their own."""
    return make_checkout(tmp_path_factory.mktemp("src") / "checkout")


@pytest.fixture(scope="session")
def dist(checkout, tmp_path_factory):
    """A fresh build of the working tree."""
    out = tmp_path_factory.mktemp("dist")
    build.build(checkout, out, CACHE)
    return out


@pytest.fixture(scope="session")
def ipks(dist):
    """{(package, architecture): Ipk} for every package in the feed."""
    found = {}
    for path in sorted((dist / "feed").glob("*.ipk")):
        ipk = Ipk(path)
        found[(ipk.fields["Package"], ipk.fields["Architecture"])] = ipk
    return found


@pytest.fixture(scope="session")
def u1_ipks(dist):
    return {Ipk(p).fields["Package"]: Ipk(p) for p in dist.glob("*.ipk")}
