"""The Extended Firmware overlay, run the way the firmware build runs it:
from the tarball ./build.sh writes, against a fake rootfs, offline."""
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
from pkgtools import BUSYBOX, CLI, TRUSTED, busybox_bin
from realopkg import ENTWARE_CONF, Opkg, read_status

from package import build
from simulator import Simulator

PREFIX = f"overlays/{build.OVERLAY}"
SCRIPT = f"{PREFIX}/scripts/01-install-panda-breath.sh"
MODULE = "home/lava/klipper/klippy/extras/panda_breath.py"
CONFIG = "home/lava/printer_data/config"
SHELLS = ["sh"] + (["busybox"] if BUSYBOX else [])
UNSHARE = shutil.which("unshare")
OFFLINE = [UNSHARE, "--net"] if UNSHARE and subprocess.run(
    [UNSHARE, "--net", "true"], capture_output=True).returncode == 0 \
    else []


@pytest.fixture
def firmware(dist, tmp_path):
    """A firmware checkout with the overlay unpacked, and its rootfs."""
    checkout = tmp_path / "firmware"
    checkout.mkdir()
    [tarball] = dist.glob("panda-breath-overlay-*.tar.gz")
    with tarfile.open(tarball) as tar:
        tar.extractall(checkout, **TRUSTED)
    rootfs = tmp_path / "build" / "rootfs"
    for folder in ("etc/init.d", "usr/bin", "usr/share",
                   "usr/lib/python3.11/site-packages",
                   "home/lava/klipper/klippy/extras", f"{CONFIG}/extended"):
        (rootfs / folder).mkdir(parents=True)
    return checkout, rootfs


def build_env(checkout, rootfs, **extra):
    env = {k: v for k, v in os.environ.items() if k != "CREATE_FIRMWARE"}
    env.update(CREATE_FIRMWARE="1", ROOT_DIR=str(checkout),
               BUILD_DIR=str(rootfs.parent), ROOTFS_DIR=str(rootfs),
               CACHE_DIR=str(checkout / "tmp" / "cache"))
    env.update(extra)
    return env


def run_script(checkout, rootfs, shell="sh", env=None):
    """As create_firmware.sh does: ./<script> "$ROOTFS_DIR" from the
    checkout root; with shell "busybox", only BusyBox's tools on PATH."""
    env = env or build_env(checkout, rootfs)
    command = [f"./{SCRIPT}", str(rootfs)]
    if shell == "busybox":
        env["PATH"] = str(busybox_bin(rootfs.parent / "busybox-bin"))
        command = [BUSYBOX, "sh", *command]
    return subprocess.run(
        [*OFFLINE, *command], cwd=checkout, env=env, capture_output=True,
        text=True, timeout=60)


def test_script_refuses_to_run_outside_the_firmware_build(firmware):
    checkout, rootfs = firmware
    before = sorted(rootfs.rglob("*"))
    env = {k: v for k, v in os.environ.items() if k != "CREATE_FIRMWARE"}
    result = run_script(checkout, rootfs, env=env)
    assert result.returncode == 1
    assert "CREATE_FIRMWARE" in result.stderr
    assert sorted(rootfs.rglob("*")) == before


@pytest.mark.parametrize("shell", SHELLS)
def test_script_installs_both_packages_as_opkg_would(firmware, u1_ipks,
                                                     shell):
    checkout, rootfs = firmware
    result = run_script(checkout, rootfs, shell)
    assert result.returncode == 0, result.stderr
    module = rootfs / MODULE
    assert (module.stat().st_uid, module.stat().st_gid) == (1000, 1000)
    assert (rootfs / "usr/bin/panda-breath").stat().st_mode & 0o777 == 0o755
    assert (rootfs / "usr/lib/python3.11/site-packages/websocket/_core.py"
            ).exists()
    status = read_status(rootfs / "usr/lib/opkg/status")
    for name, ipk in u1_ipks.items():
        fields = ipk.fields
        assert status[name]["Version"] == fields["Version"]
        assert status[name]["Architecture"] == "aarch64-3.10"
        info = rootfs / "usr/lib/opkg/info"
        assert (info / f"{name}.control").read_text() == \
            ipk.control_file("control")
        listed = (info / f"{name}.list").read_text().split()
        files = sorted("/" + m.name[2:] for m in ipk.data.getmembers()
                       if m.isfile())
        assert sorted(listed) == files
        for script in ("postinst", "prerm", "postrm"):
            path = info / f"{name}.{script}"
            if path.exists():
                assert os.access(path, os.X_OK)
    assert status["panda-breath"]["Status"] == "install user installed"
    assert status["panda-breath"]["Depends"] == "python3-websocket"
    assert status["python3-websocket"]["Status"] == "install ok installed"
    template = "/etc/panda-breath/panda_breath.cfg"
    assert status["panda-breath"]["Conffiles"] == {
        template: hashlib.sha256((rootfs / template.lstrip("/")).read_bytes()
                                 ).hexdigest()}
    # never enables the heater
    assert not (rootfs / CONFIG / "extended/klipper/panda_breath.cfg"
                ).exists()


def test_script_is_idempotent(firmware):
    checkout, rootfs = firmware
    assert run_script(checkout, rootfs).returncode == 0
    first = {p: p.read_bytes() for p in rootfs.rglob("*") if p.is_file()}
    assert run_script(checkout, rootfs).returncode == 0
    second = {p: p.read_bytes() for p in rootfs.rglob("*") if p.is_file()}
    assert set(first) == set(second)
    status = (rootfs / "usr/lib/opkg/status").read_text()
    assert status.count("Package: panda-breath\n") == 1
    assert status.count("Package: python3-websocket\n") == 1


def test_script_keeps_other_packages_in_the_status_file(firmware):
    checkout, rootfs = firmware
    db = rootfs / "usr/lib/opkg"
    db.mkdir(parents=True)
    other = ("Package: busybox\nVersion: 1.36\nStatus: install user "
             "installed\nArchitecture: aarch64-3.10\n\n")
    (db / "status").write_text(other)
    assert run_script(checkout, rootfs).returncode == 0
    assert run_script(checkout, rootfs).returncode == 0
    status = read_status(db / "status")
    assert set(status) == {"busybox", "panda-breath", "python3-websocket"}


def test_opkg_can_remove_what_the_firmware_build_installed(
        firmware, opkg_binary, tmp_path):
    """The build records the packages in /usr/lib/opkg, the boot script
    hands them to Entware (/opt/lib/opkg), and the real opkg removes
    them, running their scripts."""
    checkout, rootfs = firmware
    (rootfs / "opt/tmp").mkdir(parents=True)
    before = sorted(p.relative_to(rootfs) for p in rootfs.rglob("*"))
    assert run_script(checkout, rootfs).returncode == 0
    (rootfs / "opt/lib/opkg").mkdir(parents=True)
    init = checkout / PREFIX / "root/etc/init.d/S99panda-breath-opkg"
    subprocess.run(["sh", str(init), "start"], check=True, timeout=30,
                   capture_output=True,
                   env=dict(os.environ, PANDA_BREATH_ROOT=str(rootfs)))
    opkg = Opkg(rootfs, ENTWARE_CONF.format(feed=tmp_path), tmp_path / "w")
    opkg.ok("remove", "panda-breath")
    opkg.ok("remove", "python3-websocket")
    assert opkg.status() == {}
    after = sorted(p.relative_to(rootfs) for p in rootfs.rglob("*")
                   if not str(p.relative_to(rootfs)).startswith(
                       ("usr/lib/o", "opt/lib")))
    assert after == before


def test_script_without_packages_says_how_to_get_them(firmware):
    checkout, rootfs = firmware
    shutil.rmtree(checkout / PREFIX / "packages")
    result = run_script(checkout, rootfs)
    assert result.returncode == 1
    assert "./build.sh" in result.stderr


def test_root_folder_is_copied_with_executable_modes(dist):
    [tarball] = dist.glob("panda-breath-overlay-*.tar.gz")
    with tarfile.open(tarball) as tar:
        modes = {m.name[len(PREFIX) + 1:]: m.mode for m in tar.getmembers()
                 if m.isfile()}
    assert modes["root/usr/local/bin/panda-breath-firmware-config"] == 0o755
    assert modes["root/etc/init.d/S99panda-breath-opkg"] == 0o755


# Firmware Config setting

@pytest.fixture
def printer(tmp_path):
    root = tmp_path / "printer"
    (root / CONFIG / "extended").mkdir(parents=True)
    for folder in (root / CONFIG, root / CONFIG / "extended"):
        os.chown(folder, 1000, 1000)      # printer_data belongs to lava
    cli = tmp_path / "panda-breath"
    cli.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{CLI}" "$@"\n')
    cli.chmod(0o755)
    helper = (build.ROOT / "overlay" / build.OVERLAY / "root/usr/local/bin"
              / "panda-breath-firmware-config")
    env = dict(os.environ, PANDA_BREATH_ROOT=str(root),
               PANDA_BREATH_CLI=str(cli))

    def run(*args):
        return subprocess.run(["sh", str(helper), *args], env=env,
                              capture_output=True, text=True, timeout=30)
    run.root = root
    return run


def test_firmware_config_enable_uses_the_address_in_extended2(printer):
    settings = printer.root / CONFIG / "extended/extended2.cfg"
    cfg = printer.root / CONFIG / "extended/klipper/panda_breath.cfg"
    assert printer("state").stdout == "disabled\n"
    with Simulator() as sim:
        settings.write_text("[web]\nfrontend: fluidd\n\n[panda_breath]\n"
                            f"host: 127.0.0.1\nport: {sim.port}  # mine\n")
        result = printer("enable")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"port: {sim.port}\n" in cfg.read_text()
        config = printer.root / CONFIG
        assert cfg.parent.stat().st_uid == config.stat().st_uid == 1000
        assert cfg.stat().st_uid == 1000
        assert printer("state").stdout == "enabled\n"
        assert "firmware V1.0.3" in printer("device").stdout
    assert printer("disable").returncode == 0
    assert not cfg.exists()
    assert printer("state").stdout == "disabled\n"


def test_firmware_config_enable_without_address_explains(printer):
    result = printer("enable")
    assert result.returncode == 1
    assert "extended2.cfg" in result.stdout
    assert "host:" in result.stdout
    assert not (printer.root / CONFIG / "extended/klipper/panda_breath.cfg"
                ).exists()


# Registering with Entware's opkg at boot

@pytest.fixture
def booted(firmware):
    checkout, rootfs = firmware
    assert run_script(checkout, rootfs).returncode == 0
    init = checkout / PREFIX / "root/etc/init.d/S99panda-breath-opkg"

    def boot():
        return subprocess.run(
            ["sh", str(init), "start"], capture_output=True, text=True,
            env=dict(os.environ, PANDA_BREATH_ROOT=str(rootfs)), timeout=30)
    boot.rootfs = rootfs
    return boot


def test_boot_without_entware_changes_nothing(booted):
    assert booted().returncode == 0
    assert not (booted.rootfs / "opt").exists()


def test_boot_registers_packages_with_entware(booted, u1_ipks):
    entware = booted.rootfs / "opt/lib/opkg"
    entware.mkdir(parents=True)
    (entware / "status").write_text(
        "Package: entware-opt\nVersion: 1\nStatus: install user installed\n"
        "Architecture: aarch64-3.10\n\n")
    assert booted().returncode == 0
    assert booted().returncode == 0
    # the firmware's own records
    status = read_status(booted.rootfs / "usr/lib/opkg/status")
    text = (entware / "status").read_text()
    assert text.count("Package: panda-breath\n") == 1
    assert "Package: entware-opt\n" in text
    for name in u1_ipks:
        assert f"Version: {status[name]['Version']}\n" in text
        assert (entware / "info" / f"{name}.list").read_text() == (
            booted.rootfs / "usr/lib/opkg/info" / f"{name}.list").read_text()


def test_boot_replaces_a_lost_runtime_install_but_not_a_persistent_one(
        booted):
    entware = booted.rootfs / "opt/lib/opkg"
    entware.mkdir(parents=True)
    stale = ("Package: panda-breath\nVersion: 9.9.9\nStatus: install user "
             "installed\nArchitecture: aarch64-3.10\n\n")
    (entware / "status").write_text(stale)
    (booted.rootfs / "oem").mkdir()
    (booted.rootfs / "oem/.debug").touch()
    booted()
    assert "Version: 9.9.9" in (entware / "status").read_text()
    (booted.rootfs / "oem/.debug").unlink()
    booted()
    assert "Version: 9.9.9" not in (entware / "status").read_text()
