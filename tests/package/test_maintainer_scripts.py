"""Installing, upgrading, reinstalling and removing the packages in a
staging root, running their real maintainer scripts as opkg does."""

import pytest
from opkg_offline import Opkg, sha256
from pkgtools import BUSYBOX, CACHE, Ipk, busybox_bin, make_checkout

from package import build

EXTRAS = "home/lava/klipper/klippy/extras"
USER_CFG = "home/lava/printer_data/config/extended/klipper/panda_breath.cfg"
TEMPLATE = "etc/panda-breath/panda_breath.cfg"
SITE = "usr/lib/python3.11/site-packages"
SHELLS = ["sh"] + (["busybox"] if BUSYBOX else [])


@pytest.fixture(params=SHELLS)
def opkg(request, tmp_path):
    """opkg on a staging root; with "busybox", the scripts run under
    BusyBox ash with only BusyBox's tools on PATH, as on the U1."""
    root = tmp_path / "root"
    for folder in ("oem", "etc", "tmp", "usr/bin", "usr/share", SITE,
                   EXTRAS, USER_CFG.rsplit("/", 1)[0]):
        (root / folder).mkdir(parents=True)
    if request.param == "busybox":
        path = busybox_bin(tmp_path / "busybox-bin")
        return Opkg(root, (BUSYBOX, "sh"), path)
    return Opkg(root)


@pytest.fixture
def packages(u1_ipks):
    return {name: ipk.path for name, ipk in u1_ipks.items()}


@pytest.fixture(scope="module")
def old_packages(tmp_path_factory):
    """An older release (v0.0.0) whose config template differs."""
    def older(repo):
        template = repo / "klipper" / "config" / "panda_breath.cfg"
        template.write_text(template.read_text().replace(
            "max_temp: 70", "max_temp: 65"))
        (repo / "klipper" / "extras" / "panda_breath.py").write_text(
            "# an older module\n")
    tmp = tmp_path_factory.mktemp("old")
    repo = make_checkout(tmp / "checkout", edit=older, tag="v0.0.0")
    build.build(repo, tmp / "dist", CACHE)
    return {Ipk(p).fields["Package"]: p for p in (tmp / "dist").glob("*.ipk")}


def install_all(opkg, packages):
    opkg.install(packages["python3-websocket"])
    opkg.install(packages["panda-breath"])


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_install_puts_files_in_place_and_records_them(opkg, packages):
    install_all(opkg, packages)
    root = opkg.root
    module = root / EXTRAS / "panda_breath.py"
    assert module.stat().st_uid == module.stat().st_gid == 1000
    assert (root / "usr/bin/panda-breath").stat().st_mode & 0o777 == 0o755
    assert (root / SITE / "websocket" / "__init__.py").exists()
    status = opkg.status()
    assert set(status) == {"panda-breath", "python3-websocket"}
    assert status["panda-breath"]["Conffiles"] == {
        f"/{TEMPLATE}": sha256(root / TEMPLATE)}


def test_postinst_says_what_to_do_and_never_enables_the_heater(
        opkg, packages):
    install_all(opkg, packages)
    said = opkg.output[-1]
    assert "panda-breath setup --host" in said
    assert not (opkg.root / USER_CFG).exists()


def test_postinst_warns_when_the_rootfs_is_reset_at_reboot(opkg, packages):
    install_all(opkg, packages)
    assert "WARNING" in opkg.output[-1] and "/oem/.debug" in opkg.output[-1]


def test_no_persistence_warning_with_oem_debug(opkg, packages):
    (opkg.root / "oem" / ".debug").touch()
    install_all(opkg, packages)
    assert "WARNING" not in opkg.output[-1]


def test_remove_leaves_nothing_but_the_users_config(opkg, packages):
    before = tree(opkg.root)   # with opkg's database folders
    install_all(opkg, packages)
    user_cfg = opkg.root / USER_CFG
    user_cfg.write_text("[panda_breath]\nhost: 10.0.0.9\n")
    # what Python writes next to the files at run time
    for cache in (opkg.root / EXTRAS / "__pycache__",
                  opkg.root / SITE / "websocket" / "__pycache__"):
        cache.mkdir()
        (cache / "panda_breath.cpython-311.pyc").write_bytes(b"pyc")
    opkg.remove("panda-breath")
    opkg.remove("python3-websocket")
    assert not user_cfg.exists()
    kept = user_cfg.with_name("panda_breath.cfg.removed")
    assert kept.read_text() == "[panda_breath]\nhost: 10.0.0.9\n"
    kept.unlink()
    after = set(tree(opkg.root)) - {"usr/lib/opkg/status",
                                    f"{EXTRAS}/__pycache__"}
    assert {p for p in after if not p.startswith("tmp/")} == set(before)
    assert opkg.status() == {}
    assert any("moved to" in said for said in opkg.output)


def test_upgrade_keeps_a_user_modified_conffile(opkg, packages,
                                                 old_packages, checkout):
    install_all(opkg, old_packages)
    template = opkg.root / TEMPLATE
    assert "max_temp: 65" in template.read_text()
    template.write_text(template.read_text() + "# mine\n")
    mine = template.read_text()
    user_cfg = opkg.root / USER_CFG
    user_cfg.write_text("[panda_breath]\nhost: 10.0.0.9\n")

    assert opkg.install(packages["panda-breath"]) == "upgraded"
    assert template.read_text() == mine
    new_template = template.with_name("panda_breath.cfg-opkg")
    assert "max_temp: 70" in new_template.read_text()
    module = (opkg.root / EXTRAS / "panda_breath.py").read_bytes()
    assert module == (checkout / "klipper/extras/panda_breath.py"
                      ).read_bytes()
    assert user_cfg.read_text() == "[panda_breath]\nhost: 10.0.0.9\n"
    assert "restart Klipper" in opkg.output[-1]
    new_version = Ipk(packages["panda-breath"]).fields["Version"]
    assert opkg.status()["panda-breath"]["Version"] == new_version


def test_upgrade_replaces_an_unmodified_conffile(opkg, packages,
                                                  old_packages):
    install_all(opkg, old_packages)
    opkg.install(packages["panda-breath"])
    template = opkg.root / TEMPLATE
    assert "max_temp: 70" in template.read_text()
    assert not template.with_name("panda_breath.cfg-opkg").exists()
    assert not list(template.parent.glob("*opkg.backup"))


def test_reinstall_is_clean_and_keeps_user_changes(opkg, packages):
    install_all(opkg, packages)
    template = opkg.root / TEMPLATE
    template.write_text("# tuned\n" + template.read_text())
    tuned = template.read_text()
    first = tree(opkg.root)
    assert opkg.install(packages["panda-breath"]) == "already installed"
    opkg.install(packages["panda-breath"], force_reinstall=True)
    opkg.install(packages["python3-websocket"], force_reinstall=True)
    assert template.read_text() == tuned
    extra = set(tree(opkg.root)) - set(first)
    assert extra == {"etc/panda-breath/panda_breath.cfg-opkg"}


def test_reinstall_sets_an_enabled_config_aside_and_says_so(opkg, packages):
    install_all(opkg, packages)
    user_cfg = opkg.root / USER_CFG
    user_cfg.write_text("[panda_breath]\nhost: 10.0.0.9\n")
    opkg.install(packages["panda-breath"], force_reinstall=True)
    assert not user_cfg.exists()
    assert "panda_breath.cfg.removed" in opkg.output[-1]
    assert "panda-breath setup" in opkg.output[-1]
