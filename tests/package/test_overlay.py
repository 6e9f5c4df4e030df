"""The Panda Breath files of the Extended Firmware's chamber heater
feature, run the way the firmware build runs them: from the tarball
./build.sh writes, against a fake rootfs, offline."""
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml
from pkgtools import BUSYBOX, CLI, OVERLAY, TRUSTED, busybox_bin
from realklipper import trees
from realklipper.printer import Printer, tracebacks
from realopkg import ENTWARE_CONF, Opkg, read_status

from package import archive, build
from package.archive import Member
from simulator import Simulator

PREFIX = f"overlays/{build.OVERLAY}"
SCRIPT = f"{PREFIX}/scripts/02-install-panda-breath.sh"
MODULE = "home/lava/klipper/klippy/extras/panda_breath.py"
CONFIG = "home/lava/printer_data/config"
# its shebang (/bin/sh), bash (the firmware's own scripts), BusyBox ash
SHELLS = ["sh", "bash"] + (["busybox"] if BUSYBOX else [])
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
    if shell == "bash":
        command = ["bash", *command]
    elif shell == "busybox":
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


def test_script_without_klipper_in_the_rootfs_refuses(firmware):
    checkout, rootfs = firmware
    shutil.rmtree(rootfs / "home")
    result = run_script(checkout, rootfs)
    assert result.returncode == 1
    assert "no Klipper in the root filesystem" in result.stderr
    assert not (rootfs / "home").exists()
    assert not (rootfs / "usr/bin/panda-breath").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_module_lands_in_extras_wherever_the_package_keeps_it(firmware,
                                                             u1_ipks, shell):
    """A package may keep panda_breath.py elsewhere and link it into
    Klipper's extras from a maintainer script, which the build does not
    run: the module still lands in extras, as a file."""
    checkout, rootfs = firmware
    ipk = u1_ipks["panda-breath"]
    moved = []
    for m in ipk.data.getmembers():
        name = m.name.replace("home/lava/klipper/klippy/extras",
                              "usr/share/panda-breath")
        if m.isdir():
            if "home/lava" not in m.name:
                moved.append(archive.directory(name, m.mode, m.uid, m.gid))
        else:
            data = ipk.data.extractfile(m).read()
            moved.append(Member(name, data, m.mode, m.uid, m.gid))
    control = [Member(m.name, ipk.control_tar.extractfile(m).read(), m.mode)
               for m in ipk.control_tar.getmembers() if m.isfile()]
    raw = archive.tar_gz([
        Member("./debian-binary", b"2.0\n"),
        Member("./data.tar.gz", archive.tar_gz(moved, 0)),
        Member("./control.tar.gz", archive.tar_gz(control, 0))], 0)
    (checkout / PREFIX / "packages" / ipk.path.name).write_bytes(raw)
    result = run_script(checkout, rootfs, shell)
    assert result.returncode == 0, result.stderr
    module = rootfs / MODULE
    assert module.is_file() and not module.is_symlink()
    assert module.read_bytes() == (
        rootfs / "usr/share/panda-breath/panda_breath.py").read_bytes()
    assert (module.stat().st_uid, module.stat().st_gid) == (1000, 1000)


def test_tarball_holds_only_the_panda_breath_files_of_the_feature(dist):
    [tarball] = dist.glob("panda-breath-overlay-*.tar.gz")
    with tarfile.open(tarball) as tar:
        modes = {m.name[len(PREFIX) + 1:]: m.mode for m in tar.getmembers()
                 if m.isfile()}
    functions = "root/usr/local/share/firmware-config/functions/"
    tweaks = "root/usr/local/share/firmware-config/tweaks/klipper/"
    assert {name for name in modes if not name.startswith("packages/")} == {
        "README.md",
        "scripts/02-install-panda-breath.sh",
        "root/etc/init.d/S99panda-breath-opkg",
        functions + "25_settings_snapmaker_components_chamber_heater.yaml",
        functions + "26_settings_snapmaker_components_chamber_heater_panda"
        ".yaml",
        tweaks + "panda_breath.cfg",
        tweaks + "panda_breath_heater_auto.cfg",
    }
    assert modes["scripts/02-install-panda-breath.sh"] == 0o755
    assert modes["root/etc/init.d/S99panda-breath-opkg"] == 0o755


# Firmware Config setting

FUNCTIONS = OVERLAY / "root/usr/local/share/firmware-config/functions"
TWEAKS = OVERLAY / "root/usr/local/share/firmware-config/tweaks/klipper"
FIRMWARE_TWEAKS = "/usr/local/share/firmware-config/tweaks/klipper"
USER_CFG = "/oem/printer_data/config/extended/klipper"
INCLUDE = f"[include {FIRMWARE_TWEAKS}/panda_breath_heater_auto.cfg]"


def merged(*paths):
    """The setting as Firmware Config sees it: its files merged in order."""
    def merge(into, new):
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value
    page = {}
    for path in paths:
        merge(page, yaml.safe_load(path.read_text()))
    return page


@pytest.fixture(scope="module")
def setting():
    page = merged(*sorted(FUNCTIONS.glob("*.yaml")))
    assert set(page) == {"settings"}
    return page["settings"]["snapmaker_components"]["items"][
        "chamber_heater"]


def test_setting_keeps_its_key_options_and_labels(setting):
    options = setting["options"]
    assert set(options) == {"disabled", "auto", "manual"}  # + 27_'s
    assert setting["label"] == "PandaBreath / DragonBreath Chamber Heater"
    assert setting["default"] == "disabled"
    assert options["disabled"]["label"] == "Disabled"
    assert options["auto"]["label"] == "Panda Breath"
    assert options["manual"]["label"] == "Panda Breath (Manual mode)"
    assert options["manual"]["hidden"] is True
    assert "hidden" not in options["auto"]


@pytest.mark.parametrize("option", ["auto", "manual"])
def test_enabling_asks_for_i_understand_and_the_address(setting, option):
    inputs = {i["name"]: i for i in setting["options"][option]["inputs"]}
    assert list(inputs) == ["ACKNOWLEDGED", "PANDA_BREATH_IP"]
    assert setting["options"][option]["confirm"].strip()
    understood = re.compile(inputs["ACKNOWLEDGED"]["regex"])
    assert understood.search("I UNDERSTAND")
    assert not understood.search("i understand")
    address = re.compile(inputs["PANDA_BREATH_IP"]["regex"])
    for good in ("192.168.1.50", "10.0.0.1", "255.255.255.255"):
        assert address.search(good)
    for bad in ("256.1.1.1", "192.168.1", "host.local", "1.2.3.4; reboot"):
        assert not address.search(bad)


@pytest.mark.parametrize("option, include", [("auto", "uncomment"),
                                             ("manual", "comment")])
def test_enabling_copies_the_template_sets_host_and_restarts(
        setting, option, include):
    shell, flag, script = setting["options"][option]["cmd"]
    assert (shell, flag) == ("bash", "-ec")
    subprocess.run(["bash", "-n", "-c", script], check=True)
    steps = [line.strip() for line in script.splitlines()]
    assert 'cp -n "$TWEAKS/panda_breath.cfg" "$CFG/panda_breath.cfg"' \
        in steps
    assert ('/usr/local/bin/extended-config.py add "$CFG/panda_breath.cfg"'
            ' panda_breath host "${PANDA_BREATH_IP}"') in steps
    assert (f'/usr/local/bin/extended-config.py {include} '
            '"$CFG/panda_breath.cfg" "include '
            '$TWEAKS/panda_breath_heater_auto.cfg"') in steps
    assert steps[-1] == "/etc/init.d/S60klipper restart"
    assert f"CFG={USER_CFG}" in steps
    assert f"TWEAKS={FIRMWARE_TWEAKS}" in steps


def test_disabling_removes_both_configs_and_restarts(setting):
    shell, flag, script = setting["options"]["disabled"]["cmd"]
    subprocess.run(["bash", "-n", "-c", script], check=True)
    steps = [line.strip() for line in script.splitlines()]
    assert 'rm -f "$CFG/panda_breath.cfg"' in steps
    assert 'rm -f "$CFG/dragonbreath.cfg"' in steps
    assert steps[-1] == "/etc/init.d/S60klipper restart"


@pytest.mark.parametrize("files, state", [
    ({}, "disabled"),
    ({"panda_breath.cfg": "template"}, "manual"),
    ({"panda_breath.cfg": "included"}, "auto"),
    ({"dragonbreath.cfg": "[dragonbreath]\nhost: 10.0.0.2\n"},
     "dragonbreath"),
])
def test_state_follows_the_config_files(setting, tmp_path, files, state):
    template = (TWEAKS / "panda_breath.cfg").read_text()
    texts = {"template": template,
             "included": template.replace("# " + INCLUDE, INCLUDE)}
    for name, text in files.items():
        (tmp_path / name).write_text(texts.get(text, text))
    shell, flag, script = setting["get_cmd"]
    script = script.replace(USER_CFG, str(tmp_path))
    result = subprocess.run([shell, flag, script], capture_output=True,
                            text=True, check=True)
    assert result.stdout == state + "\n"


def test_template_suits_the_firmware_config_edits():
    """extended-config.py sets host within [panda_breath] up to its first
    blank line, and (un)comments the include up to the next blank line."""
    lines = (TWEAKS / "panda_breath.cfg").read_text().splitlines()
    start = lines.index("[panda_breath]")
    section = lines[start:lines.index("", start)]
    assert "firmware: stock" in section
    assert "port: 80" in section
    assert [line for line in section if line.startswith("host:")] == [
        "host: PandaBreath.local"]
    assert lines[-1] == "# " + INCLUDE
    assert INCLUDE not in "\n".join(lines[:-1])


def test_every_file_the_setting_names_is_shipped(setting):
    text = yaml.safe_dump(setting)
    for name in re.findall(r"\$TWEAKS/([\w.]+)", text):
        assert (TWEAKS / name).is_file(), name
    assert "dragonbreath" not in setting["options"]


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


# Enabling on a printer: the setting's commands, run

EXTENDED_CONFIG = pathlib.Path(__file__).with_name("extended_config.py")
CAVITY = """\
[temperature_sensor cavity]
sensor_type: temperature_host
sensor_path: {path}
min_temp: -40
max_temp: 150
"""
OWNER = """\
[panda_breath]
firmware: stock
host: 10.0.0.9
port: 80
chamber_sensor: temperature_sensor chamber_air
guard:
  temperature_sensor soc, 80

# [include {tweaks}/panda_breath_heater_auto.cfg]
"""


class U1:
    """A U1's printer_data/config with the Extended Firmware's include,
    the feature's tweaks, and the setting's commands run against them."""

    def __init__(self, root, cavity):
        self.root = root
        self.config = root / "printer_data" / "config"
        self.extended = self.config / "extended" / "klipper"
        self.extended.mkdir(parents=True)
        self.tweaks = root / "tweaks"
        self.tweaks.mkdir()
        for source in TWEAKS.glob("*.cfg"):
            (self.tweaks / source.name).write_text(source.read_text().replace(
                FIRMWARE_TWEAKS, str(self.tweaks)))
        self.thermistor = root / "cavity_temp"
        self.thermistor.write_text("30000\n")
        # as the U1's printer.cfg: the sensor in it, the features' files
        # included at its end
        self.printer_cfg = (CAVITY.format(path=self.thermistor) + "\n"
                            if cavity else "") \
            + "[include extended/klipper/*.cfg]\n"
        (self.config / "printer.cfg").write_text(self.printer_cfg)

    @property
    def user_cfg(self):
        return self.extended / "panda_breath.cfg"

    def enable(self, setting, option, ip="127.0.0.1"):
        shell, flag, script = setting["options"][option]["cmd"]
        for firmware, here in (
                (USER_CFG, str(self.extended)),
                (FIRMWARE_TWEAKS, str(self.tweaks)),
                ("/usr/local/bin/extended-config.py",
                 f"{sys.executable} {EXTENDED_CONFIG}"),
                ("/usr/bin/panda-breath cavity",
                 f"{sys.executable} {CLI} cavity --klipper-socket "
                 f"{self.root / 'no-klipper.sock'}"),
                ("lava:lava", f"{os.getuid()}:{os.getgid()}"),
                ("/etc/init.d/S60klipper restart",
                 f"touch {self.root / 'restarted'}")):
            assert firmware in script, firmware
            script = script.replace(firmware, here)
        env = dict(os.environ, ACKNOWLEDGED="I UNDERSTAND",
                   PANDA_BREATH_IP=ip)
        env.pop("PANDA_BREATH_CONFIG_DIR", None)
        result = subprocess.run([shell, flag, script], capture_output=True,
                                text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert (self.root / "restarted").exists()
        return result


CAVITY_LINES = ("chamber_sensor: temperature_sensor cavity\n"
                "guard:\n  temperature_sensor cavity, 70\n")


def test_auto_with_the_cavity_regulates_by_it_and_guards_it(setting,
                                                            tmp_path):
    u1 = U1(tmp_path, cavity=True)
    result = u1.enable(setting, "auto")
    text = u1.user_cfg.read_text()
    section = text[text.index("[panda_breath]"):]
    section = section[:section.index("\n\n")]
    assert section.endswith("host: 127.0.0.1\nport: 80\n"
                            "# The printer's cavity sensor: the chamber "
                            "heater regulates by it, and\n# the device "
                            "stays off while the cavity is over 70C.\n"
                            + CAVITY_LINES.rstrip("\n"))
    assert text.count("chamber_sensor") == 1
    assert text.rstrip("\n").endswith(
        f"\n[include {u1.tweaks}/panda_breath_heater_auto.cfg]")
    assert "the printer has [temperature_sensor cavity]" in result.stdout
    # enabling again changes nothing
    before = text
    (tmp_path / "restarted").unlink()
    u1.enable(setting, "auto")
    assert u1.user_cfg.read_text() == before


def test_without_the_cavity_nothing_is_added(setting, tmp_path):
    u1 = U1(tmp_path, cavity=False)
    u1.enable(setting, "auto")
    text = u1.user_cfg.read_text()
    assert "chamber_sensor" not in text and "guard" not in text
    template = (u1.tweaks / "panda_breath.cfg").read_text()
    assert text == template.replace(
        "host: PandaBreath.local", "host: 127.0.0.1").replace(
        f"# [include {u1.tweaks}", f"[include {u1.tweaks}")


def test_an_owners_config_keeps_its_own_sensor_and_guard(setting,
                                                         tmp_path):
    u1 = U1(tmp_path, cavity=True)
    owner = OWNER.format(tweaks=u1.tweaks)
    u1.user_cfg.write_text(owner)
    u1.enable(setting, "auto", ip="10.0.0.9")
    assert u1.user_cfg.read_text() == owner.replace(
        f"# [include {u1.tweaks}", f"[include {u1.tweaks}")


def test_manual_mode_guards_the_cavity_and_sets_the_sensor_aside(
        setting, tmp_path):
    """Without the heater Klipper refuses chamber_sensor: manual mode
    only guards, and a sensor auto mode wrote waits for auto again."""
    u1 = U1(tmp_path, cavity=True)
    u1.enable(setting, "manual")
    text = u1.user_cfg.read_text()
    assert "guard:\n  temperature_sensor cavity, 70\n" in text
    assert "chamber_sensor" not in text
    (tmp_path / "restarted").unlink()
    u1.user_cfg.unlink()
    u1.enable(setting, "auto")
    auto = u1.user_cfg.read_text()
    (tmp_path / "restarted").unlink()
    u1.enable(setting, "manual")
    manual = u1.user_cfg.read_text()
    assert "\n# needs the heater: chamber_sensor: temperature_sensor " \
        "cavity\n" in manual
    (tmp_path / "restarted").unlink()
    u1.enable(setting, "auto")
    assert u1.user_cfg.read_text() == auto


@pytest.mark.parametrize("tree", ["upstream", "u1"])
@pytest.mark.parametrize("cavity", [True, False])
@pytest.mark.parametrize("option", ["auto", "manual"])
def test_what_the_setting_writes_starts_klipper(setting, tmp_path, tree,
                                                cavity, option):
    """The config the setting writes, with the U1's cavity thermistor
    played by a file (temperature_host) or without one, starts real
    Klipper ready, connected to the device."""
    built = trees.need("klipper", tree)
    u1 = U1(tmp_path, cavity=cavity)
    p = Printer(built, tree, u1.printer_cfg, u1.config)
    u1.enable(setting, option)
    with Simulator(push_interval=0.1) as sim:
        # the simulator's port: the only change made by hand
        u1.user_cfg.write_text(u1.user_cfg.read_text().replace(
            "port: 80\n", f"port: {sim.port}\n"))
        try:
            p.start()
            p.wait_for(lambda: p.status("panda_breath")["connected"])
            if cavity:
                p.wait_for(lambda: p.status("panda_breath")["guards"][
                    "temperature_sensor cavity"]["temperature"] is not None)
            status = p.status("panda_breath")
        finally:
            p.stop()
    assert not tracebacks(p.log()), tracebacks(p.log())
    sensor = "temperature_sensor cavity"
    assert status["chamber_sensor"] == (
        sensor if cavity and option == "auto" else None)
    assert list(status["guards"]) == ([sensor] if cavity else [])
    if cavity and option == "auto":
        assert status["chamber_temperature"] == pytest.approx(30.0)
