"""Both packages installed, upgraded, reinstalled and removed by the real
opkg (Entware's opkg-lede) on roots laid out like the Snapmaker U1."""
import hashlib
import os
import shutil

import pytest
from pkgtools import Ipk
from realopkg import (
    DB,
    EXTRAS,
    IS_ROOT,
    NAMES,
    SITE,
    U1_CONF,
    U1_FOLDERS,
    USER_CFG_DIR,
    Opkg,
    install_both,
    make_u1_root,
    owner_and_mode,
    packages,
)

from package import build

MODULE = f"{EXTRAS}/panda_breath.py"
TEMPLATE = "etc/panda-breath/panda_breath.cfg"
USER_CFG = f"{USER_CFG_DIR}/panda_breath.cfg"

def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root):
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if str(p.relative_to(root)).split("/")[0] not in ("opt", "pkgs")}


def assert_installed_as_built(opkg, name, path):
    """Every file of the package is in place with its content and mode,
    and `opkg files` lists exactly them."""
    ipk = Ipk(path)
    files = {m.name[1:]: m for m in ipk.data.getmembers() if m.isfile()}
    assert opkg.files(name) == sorted(files)
    for listed, member in files.items():
        target = opkg.root / listed.lstrip("/")
        assert target.read_bytes() == ipk.data.extractfile(member).read()
        assert os.stat(target).st_mode & 0o7777 == member.mode, listed
        if IS_ROOT:
            assert (os.stat(target).st_uid, os.stat(target).st_gid) == (
                member.uid, member.gid), listed


def test_install_puts_every_file_in_place(target):
    result = install_both(target, target.new)
    assert result.returncode == 0, result.output
    assert "Collected errors" not in result.output
    for name in NAMES:
        assert_installed_as_built(target, name, target.new[name])
    module = os.stat(target.root / MODULE)
    if IS_ROOT:
        assert (module.st_uid, module.st_gid) == (1000, 1000)
    status = target.status()
    for name in NAMES:
        fields = Ipk(target.new[name]).fields
        assert status[name]["Version"] == fields["Version"]
        assert status[name]["Architecture"] == target.arch
        assert status[name]["Status"] == "install user installed"
    assert status["panda-breath"]["Conffiles"] == {
        f"/{TEMPLATE}": sha256(target.root / TEMPLATE)}
    # the scripts ran (postinst) and never enabled the heater
    assert "panda-breath setup --host" in result.output
    assert not (target.root / USER_CFG).exists()


def test_install_keeps_owner_and_mode_of_existing_folders(target):
    before = {f: owner_and_mode(target.root / f) for f, *_ in U1_FOLDERS}
    target.ok("install", *map(target.package, (
        target.new["python3-websocket"], target.new["panda-breath"])))
    after = {f: owner_and_mode(target.root / f) for f, *_ in U1_FOLDERS}
    if not IS_ROOT:     # chown is root's; compare the modes only
        before = {f: v[2] for f, v in before.items()}
        after = {f: v[2] for f, v in after.items()}
    assert after == before


def test_upgrade_both_packages(target, checkout):
    target.ok("install", *map(target.package, (
        target.old["python3-websocket"], target.old["panda-breath"])))
    template = target.root / TEMPLATE
    assert "max_temp: 65" in template.read_text()
    assert (target.root / MODULE).read_text() == "# an older module\n"
    mine = template.read_text() + "# mine\n"
    template.write_text(mine)
    user_cfg = target.root / USER_CFG
    user_cfg.write_text("[panda_breath]\nhost: 10.0.0.9\n")

    result = install_both(target, target.new)
    assert result.returncode == 0, result.output
    new = {name: Ipk(target.new[name]).fields["Version"] for name in NAMES}
    assert f"Upgrading panda-breath on root from 0.0.0 to " \
        f"{new['panda-breath']}" in result.output
    assert "Upgrading python3-websocket on root from 1.9.2-0 to 1.9.2-1" \
        in result.output
    status = target.status()
    assert {name: status[name]["Version"] for name in NAMES} == new
    assert (target.root / MODULE).read_bytes() == (
        checkout / "klipper/extras/panda_breath.py").read_bytes()
    # the changed template is kept, the new one put next to it
    assert template.read_text() == mine
    assert "max_temp: 70" in template.with_name(
        "panda_breath.cfg-opkg").read_text()
    assert user_cfg.read_text() == "[panda_breath]\nhost: 10.0.0.9\n"
    assert "restart Klipper" in result.output
    assert (target.root / SITE / "websocket/_core.py").is_file()
    assert target.files("python3-websocket") == sorted(
        "/" + m.name[2:] for m in Ipk(target.new["python3-websocket"])
        .data.getmembers() if m.isfile())


def test_upgrade_replaces_an_unmodified_template(target):
    target.ok("install", *map(target.package, (
        target.old["python3-websocket"], target.old["panda-breath"])))
    target.ok("install", target.package(target.new["panda-breath"]))
    template = target.root / TEMPLATE
    assert "max_temp: 70" in template.read_text()
    assert sorted(p.name for p in template.parent.iterdir()) == [
        "panda_breath.cfg"]
    assert target.status()["panda-breath"]["Conffiles"] == {
        f"/{TEMPLATE}": sha256(template)}


def test_reinstall_keeps_the_tree_and_a_changed_template(target):
    install_both(target, target.new)
    template = target.root / TEMPLATE
    tuned = "# tuned\n" + template.read_text()
    template.write_text(tuned)
    first = tree(target.root)
    again = install_both(target, target.new)
    assert again.returncode == 0
    assert "installed in root is up to date" in again.output
    result = target.install(target.new["panda-breath"],
                            target.new["python3-websocket"],
                            options=["--force-reinstall"])
    assert result.returncode == 0, result.output
    assert template.read_text() == tuned
    assert tree(target.root) - first == {f"{TEMPLATE}-opkg"}
    assert set(target.status()) == set(NAMES)
    assert_installed_as_built(target, "python3-websocket",
                              target.new["python3-websocket"])


def test_remove_leaves_no_module_behind(target):
    before = tree(target.root)
    install_both(target, target.new)
    user_cfg = target.root / USER_CFG
    user_cfg.write_text("[panda_breath]\nhost: 10.0.0.9\n")
    # what Python writes next to the files at run time
    for cache in (target.root / EXTRAS / "__pycache__",
                  target.root / SITE / "websocket" / "__pycache__"):
        cache.mkdir()
        (cache / "panda_breath.cpython-311.pyc").write_bytes(b"pyc")
    result = target.ok("remove", "panda-breath")
    assert "moved to" in result.output
    target.ok("remove", "python3-websocket")
    assert not (target.root / MODULE).exists()
    kept = user_cfg.with_name("panda_breath.cfg.removed")
    assert kept.read_text() == "[panda_breath]\nhost: 10.0.0.9\n"
    kept.unlink()
    assert tree(target.root) - {f"{EXTRAS}/__pycache__"} == before
    assert target.status() == {}
    assert not list((target.root / DB / "info").iterdir())


def test_remove_keeps_a_changed_template(target):
    install_both(target, target.new)
    template = target.root / TEMPLATE
    template.write_text("# mine\n")
    result = target.ok("remove", "panda-breath")
    assert "Not deleting modified conffile" in result.output
    assert template.read_text() == "# mine\n"
    assert not (target.root / MODULE).exists()


# Where the package cannot work, the install fails and says why.

@pytest.mark.parametrize("missing, package, says", [
    ("home/lava/klipper", "panda-breath",
     "Klipper's extras folder {root}/home/lava/klipper/klippy/extras "
     "does not exist"),
    (EXTRAS, "panda-breath", "{root}/home/lava/klipper/klippy/extras"),
    ("usr/bin", "panda-breath", "the folder {root}/usr/bin does not exist"),
    ("usr/share", "panda-breath", "{root}/usr/share does not exist"),
    ("usr/lib", "python3-websocket",
     f"{{root}}/{SITE} does not exist"),
])
def test_install_fails_where_a_folder_is_missing(target, missing, package,
                                                 says):
    shutil.rmtree(target.root / missing)
    result = install_both(target, target.new)
    assert result.returncode != 0
    assert says.format(root=target.prefix) in result.output
    assert f"Aborting installation of {package}." in result.output
    status = target.status()
    assert status.get("panda-breath", {}).get("Status", "").endswith(
        "not-installed")
    assert not (target.root / MODULE).exists()
    assert not (target.root / "usr/share/panda-breath").exists()


def test_install_fails_when_opkg_could_not_write_the_module(target):
    """opkg reports a file it cannot write (here a folder is in the
    module's place) and carries on; the postinst catches it."""
    (target.root / MODULE).mkdir()
    result = install_both(target, target.new)
    assert result.returncode != 0
    assert f"wfopen: {target.prefix}/{MODULE}: Is a directory" in \
        result.output
    assert "opkg did not write the Klipper module" in result.output
    assert "panda-breath.postinst returned 1" in result.output
    status = target.status()["panda-breath"]["Status"]
    assert status == "install user unpacked"


# What opkg itself does, which the packages and the docs rely on.

def test_offline_root_without_force_postinstall_runs_no_script(
        opkg_binary, dist, tmp_path):
    """With -o and no --force-postinstall opkg runs no maintainer script,
    so the preinst cannot stop it: a root without Klipper gets no module,
    opkg prints wfopen and exits 0.  Offline installs (the firmware
    build) must pass --force-postinstall."""
    root = make_u1_root(tmp_path / "root", skip=("home/lava/klipper",
                                                 "home/lava/klipper/klippy",
                                                 EXTRAS))
    opkg = Opkg(root, U1_CONF.format(feed=dist / "feed"), tmp_path / "w",
                "noscripts")
    result = install_both(opkg, packages(dist, build.U1_ARCH))
    assert result.returncode == 0
    assert f"wfopen: {root}/{MODULE}: No such file or directory" in \
        result.output
    assert "Configuring panda-breath." in result.output
    assert "panda-breath setup" not in result.output    # no postinst
    assert not (root / MODULE).exists()


def test_u1_opkg_conf_refuses_the_all_packages(opkg_binary, dist, tmp_path):
    root = make_u1_root(tmp_path / "root")
    opkg = Opkg(root, U1_CONF.format(feed=dist / "feed"), tmp_path / "w")
    result = install_both(opkg, packages(dist, "all"))
    assert result.returncode != 0
    assert "incompatible with the architectures configured" in result.output
    assert opkg.status() == {} or all(
        f["Status"].endswith("not-installed")
        for f in opkg.status().values())


@pytest.mark.parametrize("arch_lines, arch", [
    ("arch aarch64-3.10 160\n", build.U1_ARCH),        # the U1's stock
    ("arch all 100\narch aarch64-3.10 160\n", build.U1_ARCH),
    ("arch all 100\narch mipsel-3.4 150\n", "all"),
    ("arch all 1\narch noarch 1\narch x86_64 10\n", "all"),
    ("", build.U1_ARCH),          # no arch line: all 1, aarch64-3.10 10
])
def test_install_by_name_from_a_file_feed(opkg_binary, dist, tmp_path,
                                          arch_lines, arch):
    """`opkg update; opkg install panda-breath` with the feed ./build.sh
    writes as the src: opkg picks the build its architectures allow, and
    its dependency."""
    root = make_u1_root(tmp_path / "root")
    conf = f"src/gz panda-breath file://{dist / 'feed'}\ndest root /\n"
    opkg = Opkg(root, conf + arch_lines, tmp_path / "w")
    opkg.ok("update")
    result = opkg.ok("install", "panda-breath")
    assert "Installing python3-websocket (1.9.2-1) to root" in result.output
    status = opkg.status()
    assert {name: status[name]["Architecture"] for name in NAMES} == {
        name: arch for name in NAMES}
    assert status["python3-websocket"]["Auto-Installed"] == "yes"
    assert (root / MODULE).is_file()


@pytest.mark.parametrize("command", [["upgrade", "panda-breath"],
                                     ["upgrade"]])
def test_upgrade_from_the_feed_as_the_docs_say(opkg_binary, dist, old_dist,
                                               tmp_path, command):
    """An older release installed from files, then `opkg update` and
    `opkg upgrade [panda-breath]` with the new feed (docs/install.md)."""
    root = make_u1_root(tmp_path / "root")
    opkg = Opkg(root, U1_CONF.format(feed=dist / "feed"), tmp_path / "w")
    old = packages(old_dist, build.U1_ARCH)
    install_both(opkg, old)
    opkg.ok("update")
    result = opkg.ok(*command)
    assert "Upgrading panda-breath on root from 0.0.0 to" in result.output
    new = packages(dist, build.U1_ARCH)
    status = opkg.status()
    assert status["panda-breath"]["Version"] == Ipk(
        new["panda-breath"]).fields["Version"]
    assert (root / MODULE).read_bytes() == Ipk(new["panda-breath"]).data \
        .extractfile(f"./{MODULE}").read()
    if command == ["upgrade"]:
        assert status["python3-websocket"]["Version"] == "1.9.2-1"
