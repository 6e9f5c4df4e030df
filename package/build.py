"""Build dist/: the .ipk packages, the opkg feed and the overlay tarball.

    python -m package.build [--dist DIR] [--cache DIR]
                            [--set-version PACKAGE=VERSION ...]

Outputs, all byte-identical when built again from the same commit:
  dist/panda-breath_<v>_aarch64-3.10.ipk         the two packages a
  dist/python3-websocket_<v>_aarch64-3.10.ipk    Snapmaker U1 installs
  dist/feed/                 every architecture, Packages, Packages.gz
  dist/panda-breath-overlay-<v>.tar.gz   the Panda Breath files of the
                                         Extended Firmware's chamber
                                         heater feature, with the U1
                                         packages inside
"""
import argparse
import hashlib
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from . import archive, version, wheel
from .archive import Member, directory

ROOT = Path(__file__).resolve().parent.parent

# One .ipk per architecture, identical data.  The U1's stock opkg.conf
# lists only `arch aarch64-3.10`, and opkg refuses a package whose
# architecture its config does not list, so the U1 needs aarch64-3.10;
# `all` serves every other opkg config (Entware's and OpenWrt's accept it).
U1_ARCH = "aarch64-3.10"
ARCHITECTURES = (U1_ARCH, "all")

WEBSOCKET_RELEASE = 1
SITE_PACKAGES = "usr/lib/python3.11/site-packages"
LAVA = 1000
OVERLAY = "firmware-extended/37-feature-chamber-heater"
OVERLAY_PREFIX = f"overlays/{OVERLAY}"
CONTROL_SCRIPTS = ("preinst", "postinst", "prerm", "postrm")
PACKAGES = ("panda-breath", "python3-websocket")

# opkg-lede creates no missing parent directory when it unpacks data, and
# it applies the owner and mode of every directory entry, even to a
# directory that exists (an existing /opt 1234:1234 0750 became root:root
# 0755).  So a package lists only the directories it owns; the parents of
# those (Klipper's extras folder, /usr/bin, site-packages, ...) keep their
# owner and mode, and the package's preinst refuses to install where one
# of them is missing, instead of letting opkg report success with files
# not written.

# An opkg version: digits first, then letters, digits and . + ~, and an
# optional -release.
VERSION_RE = re.compile(r"^[0-9][A-Za-z0-9.+~]*(-[A-Za-z0-9.+~]+)?$")


class BuildError(Exception):
    pass


@dataclass
class Package:
    name: str
    version: str
    recipe: Path            # package/<name>/: control, conffiles, scripts
    data: list              # archive.Member, paths relative to /

    def filename(self, arch):
        return f"{self.name}_{self.version}_{arch}.ipk"

    def control(self, arch):
        """The recipe's control file with the computed fields added."""
        fields = _read_control(self.recipe / "control")
        keys = [key for key, _ in fields]
        for key in ("Package", "Description"):
            if key not in keys:
                raise BuildError(f"{self.recipe / 'control'}: no {key}")
        size = sum(len(m.data) for m in self.data if not m.is_dir)
        lines = []
        for key, value in fields:
            if key == "Description":
                lines += [f"Architecture: {arch}",
                          f"Installed-Size: {size}"]
            lines.append(f"{key}: {value}")
            if key == "Package":
                lines.append(f"Version: {self.version}")
        return "\n".join(lines) + "\n"

    def control_members(self, arch):
        members = [Member("./control", self.control(arch).encode())]
        conffiles = self.recipe / "conffiles"
        if conffiles.exists():
            members.append(Member("./conffiles", conffiles.read_bytes()))
        for script in CONTROL_SCRIPTS:
            path = self.recipe / script
            if path.exists():
                text = path.read_bytes()
                if not text.startswith(b"#!"):
                    raise BuildError(f"{path}: maintainer script without "
                                     "a shebang line")
                members.append(Member(f"./{script}", text, 0o755))
        return archive.sort_members(members)

    def ipk(self, arch, mtime):
        data = archive.tar_gz(archive.sort_members(self.data), mtime)
        control = archive.tar_gz(self.control_members(arch), mtime)
        return archive.tar_gz([Member("./debian-binary", b"2.0\n"),
                               Member("./data.tar.gz", data),
                               Member("./control.tar.gz", control)], mtime)


def _read_control(path):
    fields = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not value.strip() or key != key.strip():
            raise BuildError(f"{path}:{number}: not a 'Field: value' line")
        fields.append((key, value.strip()))
    return fields


def _source(path, what):
    if not path.is_file():
        raise BuildError(f"{what} is missing: {path}")
    return path.read_bytes()


def panda_breath_package(root, pkg_version):
    recipe = root / "package" / "panda-breath"
    module = _source(root / "klipper" / "extras" / "panda_breath.py",
                     "the Klipper module")
    template = _source(root / "klipper" / "config" / "panda_breath.cfg",
                       "the Klipper config template")
    modes = _source(root / "klipper" / "config" / "panda_breath_modes.cfg",
                    "the drying and auto mode example macros")
    cli = _source(recipe / "panda-breath", "the panda-breath command")
    extras = "./home/lava/klipper/klippy/extras"
    data = [
        Member(f"{extras}/panda_breath.py", module, 0o644, LAVA, LAVA),
        directory("./etc/panda-breath"),
        Member("./etc/panda-breath/panda_breath.cfg", template),
        Member("./usr/bin/panda-breath", cli, 0o755),
        directory("./usr/share/panda-breath"),
        Member("./usr/share/panda-breath/panda_breath.cfg", template),
        Member("./usr/share/panda-breath/panda_breath_modes.cfg", modes),
    ]
    return Package("panda-breath", pkg_version, recipe, data)


def websocket_package(root, wheel_path, pkg_version=None):
    recipe = root / "package" / "python3-websocket"
    files = wheel.site_packages_files(wheel_path)
    dirs = set()
    for name, _ in files:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    data = [directory(f"./{SITE_PACKAGES}/{d}") for d in dirs]
    data += [Member(f"./{SITE_PACKAGES}/{name}", content)
             for name, content in files]
    pkg_version = pkg_version or f"{wheel.VERSION}-{WEBSOCKET_RELEASE}"
    return Package("python3-websocket", pkg_version, recipe, data)


def overlay_members(root, ipks):
    """The overlay folder from the source tree plus the U1 packages.

    Unpacked over a firmware checkout, its files replace those of the
    firmware's own chamber heater feature folder of the same name."""
    source = root / "overlay" / OVERLAY
    if not (source / "scripts").is_dir():
        raise BuildError(f"the firmware overlay is missing: {source}")
    members = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source).as_posix()
        if "__pycache__" in rel or rel.endswith(".pyc"):
            continue
        name = f"{OVERLAY_PREFIX}/{rel}"
        if path.is_dir():
            members.append(directory(name))
        else:
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            members.append(Member(name, path.read_bytes(), mode))
    members.append(directory(f"{OVERLAY_PREFIX}/packages"))
    members += [Member(f"{OVERLAY_PREFIX}/packages/{name}", data)
                for name, data in ipks]
    parents = [directory(p) for p in ("overlays", "overlays/firmware-extended",
                                      OVERLAY_PREFIX)]
    return archive.sort_members(parents + members)


def feed_index(entries):
    """The Packages file: each control paragraph plus where to get it."""
    paragraphs = []
    for control, filename, data in entries:
        paragraphs.append(
            control + f"Filename: {filename}\nSize: {len(data)}\n"
            f"SHA256sum: {hashlib.sha256(data).hexdigest()}\n")
    return "\n".join(paragraphs).encode()


def _clean(dist):
    shutil.rmtree(dist / "feed", ignore_errors=True)
    for pattern in ("*.ipk", "panda-breath-overlay-*.tar.gz"):
        for path in dist.glob(pattern):
            path.unlink()


def _check_versions(versions):
    for name, value in versions.items():
        if name not in PACKAGES:
            raise BuildError(f"no package '{name}' to set the version of "
                             f"(packages: {', '.join(PACKAGES)})")
        if not VERSION_RE.match(value):
            raise BuildError(f"'{value}' is not an opkg version for {name} "
                             "(digits first, then letters, digits, . + ~, "
                             "and an optional -release)")


def build(root=ROOT, dist=None, cache=None, versions=None):
    """Build everything; return the list of paths written.  versions maps
    a package name to a version that replaces the computed one (used to
    build an older or newer release for upgrade tests)."""
    root = Path(root)
    dist = Path(dist) if dist else root / "dist"
    cache = Path(cache) if cache else root / ".cache" / "wheels"
    versions = dict(versions or {})
    _check_versions(versions)
    try:
        pkg_version = versions.get("panda-breath") or \
            version.package_version(root)
        mtime = version.source_date_epoch(root)
    except version.VersionError as err:
        raise BuildError(str(err)) from None
    try:
        wheel_path = wheel.fetch(cache)
    except wheel.WheelError as err:
        raise BuildError(str(err)) from None
    packages = [websocket_package(root, wheel_path,
                                  versions.get("python3-websocket")),
                panda_breath_package(root, pkg_version)]
    overlay_ipks = []
    feed = []
    for package in packages:
        for arch in ARCHITECTURES:
            data = package.ipk(arch, mtime)
            feed.append((package.control(arch), package.filename(arch), data))
            if arch == U1_ARCH:
                overlay_ipks.append((package.filename(arch), data))
    members = overlay_members(root, overlay_ipks)
    overlay = archive.tar_gz(members, mtime)

    dist.mkdir(parents=True, exist_ok=True)
    _clean(dist)
    written = []
    feed_dir = dist / "feed"
    feed_dir.mkdir()
    for _, filename, data in feed:
        (feed_dir / filename).write_bytes(data)
    index = feed_index(feed)
    (feed_dir / "Packages").write_bytes(index)
    (feed_dir / "Packages.gz").write_bytes(archive.gzip_bytes(index))
    for filename, data in overlay_ipks:
        (dist / filename).write_bytes(data)
        written.append(dist / filename)
    written.append(feed_dir)
    tarball = dist / f"panda-breath-overlay-{pkg_version}.tar.gz"
    tarball.write_bytes(overlay)
    written.append(tarball)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="build.sh", description="Build the packages, the opkg feed "
        "and the firmware overlay into dist/.")
    parser.add_argument("--dist", type=Path, help="output directory "
                        "(default: dist/)")
    parser.add_argument("--cache", type=Path, help="download cache "
                        "(default: .cache/wheels/)")
    parser.add_argument("--set-version", action="append", default=[],
                        metavar="PACKAGE=VERSION", help="build PACKAGE "
                        "with this version instead of the computed one "
                        "(repeatable)")
    args = parser.parse_args(argv)
    versions = {}
    for item in args.set_version:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"build: --set-version wants PACKAGE=VERSION, not "
                  f"'{item}'", file=sys.stderr)
            return 2
        versions[name] = value
    try:
        written = build(ROOT, args.dist, args.cache, versions)
    except BuildError as err:
        print(f"build: {err}", file=sys.stderr)
        return 1
    for path in written:
        shown = os.path.relpath(path)
        if path.is_dir():
            count = len(list(path.glob("*.ipk")))
            print(f"wrote {shown}/  ({count} packages, Packages, "
                  "Packages.gz)")
        else:
            print(f"wrote {shown}  ({path.stat().st_size // 1024 + 1} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
