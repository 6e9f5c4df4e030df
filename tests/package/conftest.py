import pytest
import realparts
from pkgtools import CACHE, Ipk, make_checkout
from realopkg import (
    CHROOT,
    TARGETS,
    Opkg,
    make_u1_root,
    packages,
)

from package import build

# The older release the upgrade tests start from.
OLD_VERSIONS = {"panda-breath": "0.0.0", "python3-websocket": "1.9.2-0"}


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


@pytest.fixture(scope="session")
def old_dist(tmp_path_factory):
    """An older release of both packages, built by the same builder with
    the versions set: its config template and module differ."""
    def older(repo):
        template = repo / "klipper" / "config" / "panda_breath.cfg"
        template.write_text(template.read_text().replace(
            "max_temp: 70", "max_temp: 65"))
        (repo / "klipper" / "extras" / "panda_breath.py").write_text(
            "# an older module\n")
    tmp = tmp_path_factory.mktemp("old")
    repo = make_checkout(tmp / "checkout", edit=older)
    build.build(repo, tmp / "dist", CACHE, OLD_VERSIONS)
    return tmp / "dist"


@pytest.fixture(scope="session")
def opkg_binary():
    return realparts.need("opkg", "opkg")


@pytest.fixture(params=list(TARGETS))
def target(request, opkg_binary, dist, old_dist, tmp_path):
    """The real opkg on a fresh U1 root: "u1" with the U1's opkg.conf,
    "entware" with a config without arch lines (the `all` packages), both
    with -o and --force-postinstall; "printer" in a chroot without -o,
    where opkg runs the scripts as on the U1, with BusyBox ash."""
    how, conf, arch = TARGETS[request.param]
    if how == "chroot" and not CHROOT:
        pytest.skip("the printer (chroot) runs need root, busybox, chroot")
    root = make_u1_root(tmp_path / "root")
    opkg = Opkg(root, conf.format(feed=dist / "feed"), tmp_path / "work",
                how)
    opkg.new = packages(dist, arch)
    opkg.old = packages(old_dist, arch)
    opkg.arch = arch
    return opkg
