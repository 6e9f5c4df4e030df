import pytest
from pkgtools import CACHE, ROOT, Ipk

from package import build


@pytest.fixture(scope="session")
def dist(tmp_path_factory):
    """A fresh build of the working tree."""
    out = tmp_path_factory.mktemp("dist")
    build.build(ROOT, out, CACHE)
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
