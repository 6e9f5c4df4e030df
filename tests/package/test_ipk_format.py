"""The .ipk files are laid out exactly as Entware's opkg (opkg-lede) reads
them: an outer gzip tar, GNU-format inner tars, numeric owners."""
import hashlib
import subprocess
import sys
import tarfile
import zipfile

import pytest
from pkgtools import CACHE, TRUSTED

from package import build, wheel

REQUIRED_FIELDS = ("Package", "Version", "Architecture", "Maintainer",
                   "Section", "License", "Description", "Installed-Size")
MODULE = "./home/lava/klipper/klippy/extras/panda_breath.py"
SITE = "./usr/lib/python3.11/site-packages"


def all_tars(ipk):
    return {"outer": ipk.outer, "data": ipk.data, "control": ipk.control_tar}


def test_feed_has_every_package_for_every_architecture(ipks):
    assert set(ipks) == {(name, arch)
                         for name in ("panda-breath", "python3-websocket")
                         for arch in build.ARCHITECTURES}


def test_u1_gets_aarch64_packages(u1_ipks):
    assert {name: ipk.fields["Architecture"]
            for name, ipk in u1_ipks.items()} == {
        "panda-breath": "aarch64-3.10", "python3-websocket": "aarch64-3.10"}


def test_outer_archive_holds_debian_binary_data_control_in_order(ipks):
    for ipk in ipks.values():
        assert ipk.raw[:2] == b"\x1f\x8b"
        assert [m.name for m in ipk.outer.getmembers()] == [
            "./debian-binary", "./data.tar.gz", "./control.tar.gz"]
        assert ipk.read("./debian-binary") == b"2.0\n"


def test_every_tar_is_gnu_format_without_pax_headers(ipks):
    for ipk in ipks.values():
        for what, tar in all_tars(ipk).items():
            raw = tar.fileobj
            raw.seek(0)
            header = raw.read(512)
            assert header[257:265] == b"ustar  \x00", (ipk.path, what)
            for member in tar.getmembers():
                assert member.type not in (tarfile.XHDTYPE,
                                           tarfile.XGLTYPE), member.name
                assert not member.pax_headers, member.name
                assert len(member.name) < 100, member.name


def test_owners_are_numeric_and_only_the_module_belongs_to_lava(ipks):
    for ipk in ipks.values():
        for tar in all_tars(ipk).values():
            for member in tar.getmembers():
                assert member.uname == member.gname == ""
                lava = member.name == MODULE
                assert (member.uid, member.gid) == ((1000, 1000) if lava
                                                    else (0, 0)), member.name


def test_gzip_headers_carry_no_name_and_no_time(ipks):
    for ipk in ipks.values():
        for blob in (ipk.raw, ipk.read("./data.tar.gz"),
                     ipk.read("./control.tar.gz")):
            assert blob[3] == 0                  # FLG: no FNAME
            assert blob[4:8] == b"\0\0\0\0"      # MTIME 0


def test_control_fields(ipks):
    for (name, arch), ipk in ipks.items():
        fields = ipk.fields
        for field in REQUIRED_FIELDS:
            assert fields.get(field), (name, field)
        assert "Source" in fields or "Homepage" in fields
        assert fields["Package"] == name
        assert fields["Architecture"] == arch
        assert "<" in fields["Maintainer"] and "@" in fields["Maintainer"]
        size = sum(m.size for m in ipk.data.getmembers() if m.isfile())
        assert fields["Installed-Size"] == str(size)
        assert ipk.path.name == f"{name}_{fields['Version']}_{arch}.ipk"


def test_panda_breath_depends_on_python3_websocket(ipks):
    fields = ipks[("panda-breath", build.U1_ARCH)].fields
    assert fields["Depends"] == "python3-websocket"
    assert fields["License"] == "GPL-3.0-or-later"
    websocket = ipks[("python3-websocket", build.U1_ARCH)].fields
    assert websocket["Version"] == "1.9.2-1"
    assert websocket["License"] == "Apache-2.0"
    assert "Depends" not in websocket   # the system Python is no package


def test_maintainer_scripts_are_executable_shell_scripts(ipks):
    for ipk in ipks.values():
        for member in ipk.control_tar.getmembers():
            text = ipk.control_tar.extractfile(member).read()
            if member.name.lstrip("./") in build.CONTROL_SCRIPTS:
                assert member.mode == 0o755, member.name
                assert text.startswith(b"#!/bin/sh\n"), member.name
            else:
                assert member.mode == 0o644, member.name


def test_panda_breath_installs_module_cli_and_config_templates(checkout,
                                                               ipks):
    ipk = ipks[("panda-breath", build.U1_ARCH)]
    files = {m.name: m for m in ipk.data.getmembers() if m.isfile()}
    assert set(files) == {
        MODULE, "./usr/bin/panda-breath",
        "./etc/panda-breath/panda_breath.cfg",
        "./usr/share/panda-breath/panda_breath.cfg",
        "./usr/share/panda-breath/panda_breath_modes.cfg"}
    assert files[MODULE].mode == 0o644
    assert files["./usr/bin/panda-breath"].mode == 0o755
    assert ipk.data.extractfile(MODULE).read() == (
        checkout / "klipper" / "extras" / "panda_breath.py").read_bytes()
    cli = ipk.data.extractfile("./usr/bin/panda-breath").read()
    assert cli.startswith(b"#!/usr/bin/env python3\n")
    assert ipk.control_file("conffiles") == (
        "/etc/panda-breath/panda_breath.cfg\n")


def test_members_are_sorted_with_directories_first(ipks):
    for ipk in ipks.values():
        for tar in (ipk.data, ipk.control_tar):
            names = [m.name.rstrip("/") for m in tar.getmembers()]
            assert names == sorted(names, key=lambda n: n.split("/"))


def test_websocket_package_is_the_pinned_wheel_without_its_tests(ipks):
    ipk = ipks[("python3-websocket", build.U1_ARCH)]
    wheel_path = CACHE / wheel.WHEEL
    assert hashlib.sha256(wheel_path.read_bytes()).hexdigest() == wheel.SHA256
    with zipfile.ZipFile(wheel_path) as whl:
        expected = {n: whl.read(n) for n in whl.namelist()
                    if not n.startswith("websocket/tests/")
                    and not n.endswith("/RECORD")}
    installed = {m.name[len(SITE) + 1:]: ipk.data.extractfile(m).read()
                 for m in ipk.data.getmembers() if m.isfile()}
    dist_info = "websocket_client-1.9.2.dist-info"
    record = installed.pop(f"{dist_info}/RECORD").decode()
    assert installed.pop(f"{dist_info}/INSTALLER") == b"opkg\n"
    assert installed == expected
    assert "websocket/tests" not in record
    recorded = {line.split(",")[0] for line in record.splitlines()}
    assert recorded == set(expected) | {f"{dist_info}/RECORD",
                                        f"{dist_info}/INSTALLER"}


def test_websocket_package_imports_on_python_311(ipks, tmp_path):
    ipk = ipks[("python3-websocket", build.U1_ARCH)]
    ipk.data.extractall(tmp_path, **TRUSTED)
    site = tmp_path / SITE
    out = subprocess.run(
        [sys.executable, "-I", "-c",
         f"import sys; sys.path.insert(0, {str(site)!r}); import websocket;"
         "print(websocket.__file__, websocket.__version__)"],
        capture_output=True, text=True, check=True).stdout
    assert out.startswith(str(site)) and out.split()[-1] == "1.9.2"


@pytest.mark.parametrize("arch", build.ARCHITECTURES)
def test_data_is_identical_for_every_architecture(ipks, arch):
    for name in ("panda-breath", "python3-websocket"):
        assert ipks[(name, arch)].read("./data.tar.gz") == ipks[
            (name, build.U1_ARCH)].read("./data.tar.gz")


def test_control_tar_has_no_directory_or_stray_entries(ipks):
    for ipk in ipks.values():
        names = {m.name for m in ipk.control_tar.getmembers()}
        assert names <= {"./control", "./conffiles", "./preinst",
                         "./postinst", "./prerm", "./postrm"}
        assert "./preinst" in names


# The folders each package writes into without owning them: its preinst
# refuses to install where one is missing (test_opkg.py shows it with the
# real opkg).
NOT_OWNED = {
    "panda-breath": {"./home/lava/klipper/klippy/extras", "./etc",
                     "./usr/bin", "./usr/share"},
    "python3-websocket": {SITE},
}


def test_packages_list_only_the_directories_they_own(ipks):
    """opkg-lede creates no missing parent directory and applies each
    directory entry's owner and mode even to an existing directory, so a
    package lists only its own directories; every other parent of its
    files is one its preinst checks."""
    for (name, _), ipk in ipks.items():
        owned = {m.name.rstrip("/") for m in ipk.data.getmembers()
                 if m.isdir()}
        for folder in owned:
            assert folder.rsplit("/", 1)[0] in owned | NOT_OWNED[name], \
                folder
            assert not any(folder == d or d.startswith(folder + "/")
                           for d in NOT_OWNED[name]), folder
        for member in ipk.data.getmembers():
            parent = member.name.rstrip("/").rsplit("/", 1)[0]
            assert parent in owned | NOT_OWNED[name], member.name
            if member.isdir():
                assert (member.uid, member.gid, member.mode) == (0, 0, 0o755)
