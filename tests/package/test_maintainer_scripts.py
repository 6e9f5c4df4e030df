"""What the packages' maintainer scripts say and do, run by the real opkg
(on the host's /bin/sh with -o --force-postinstall, and by BusyBox ash in
a chroot as on the printer: the `target` fixture)."""
import subprocess

import pytest
from pkgtools import BUSYBOX, ROOT
from realopkg import USER_CFG_DIR, install_both

USER_CFG = f"{USER_CFG_DIR}/panda_breath.cfg"
SCRIPTS = sorted(p for p in (ROOT / "package").glob("*/p*")
                 if p.name in ("preinst", "postinst", "prerm", "postrm"))


def test_postinst_says_what_to_do_and_never_enables_the_heater(target):
    result = install_both(target, target.new)
    assert result.returncode == 0, result.output
    assert "panda-breath setup --host" in result.output
    assert not (target.root / USER_CFG).exists()


def test_postinst_warns_when_the_rootfs_is_reset_at_reboot(target):
    result = install_both(target, target.new)
    assert "WARNING" in result.output and "/oem/.debug" in result.output


def test_no_persistence_warning_with_oem_debug(target):
    (target.root / "oem" / ".debug").touch()
    result = install_both(target, target.new)
    assert result.returncode == 0, result.output
    assert "WARNING" not in result.output


def test_reinstall_sets_an_enabled_config_aside_and_says_so(target):
    install_both(target, target.new)
    user_cfg = target.root / USER_CFG
    user_cfg.write_text("[panda_breath]\nhost: 10.0.0.9\n")
    result = target.install(target.new["panda-breath"],
                            options=["--force-reinstall"])
    assert result.returncode == 0, result.output
    assert not user_cfg.exists()
    kept = user_cfg.with_name("panda_breath.cfg.removed")
    assert kept.read_text() == "[panda_breath]\nhost: 10.0.0.9\n"
    assert "panda_breath.cfg.removed" in result.output
    assert "panda-breath setup" in result.output


def test_upgrade_with_an_enabled_config_keeps_it_and_says_restart(target):
    install_both(target, target.old)
    user_cfg = target.root / USER_CFG
    user_cfg.write_text("[panda_breath]\nhost: 10.0.0.9\n")
    result = install_both(target, target.new)
    assert result.returncode == 0, result.output
    assert user_cfg.read_text() == "[panda_breath]\nhost: 10.0.0.9\n"
    assert "/etc/init.d/S60klipper restart" in result.output
    assert not user_cfg.with_name("panda_breath.cfg.removed").exists()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(
    p.relative_to(ROOT / "package")))
@pytest.mark.parametrize("shell", ["sh"] + (["busybox"] if BUSYBOX else []))
def test_scripts_are_posix_sh(script, shell):
    command = ["sh", "-n"] if shell == "sh" else [BUSYBOX, "sh", "-n"]
    result = subprocess.run([*command, str(script)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert script.read_text().startswith("#!/bin/sh\n")
