"""The build backend pip uses for `pip install ~/panda-breath` (PEP 517).

It builds one wheel: the panda-breath command as the module
panda_breath_cli with the console script of pyproject's [project.scripts],
and websocket-client as its dependency.  The Klipper module is not in it:
Klipper loads extras only from its own klippy/extras (install.sh links it
there), and the command reads the device with that module.  Standard
library only, so building needs nothing from the network.
"""
import base64
import hashlib
import time
import tomllib
import zipfile
from pathlib import Path

from . import version

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "package" / "panda-breath" / "panda-breath"
CLI_MODULE = "panda_breath_cli"
TAG = "py3-none-any"


def _project():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _metadata(project, ver):
    lines = ["Metadata-Version: 2.1",
             f"Name: {project['name']}",
             f"Version: {ver}",
             f"Summary: {project['description']}",
             f"License: {project['license']}",
             f"Requires-Python: {project['requires-python']}"]
    lines += [f"Requires-Dist: {dep}" for dep in project["dependencies"]]
    return "\n".join(lines) + "\n"


def _entry_points(project):
    scripts = "".join(f"{name} = {target}\n"
                      for name, target in project["scripts"].items())
    return "[console_scripts]\n" + scripts


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
    return f"{name},sha256={digest.rstrip(b'=').decode()},{len(data)}\n"


def wheel_files():
    """(wheel file name, [(path in the wheel, bytes)])."""
    project = _project()
    ver = version.package_version(ROOT)
    dist = project["name"].replace("-", "_")
    info = f"{dist}-{ver}.dist-info"
    files = [
        (f"{CLI_MODULE}.py", CLI.read_bytes()),
        (f"{info}/METADATA", _metadata(project, ver).encode()),
        (f"{info}/WHEEL", (f"Wheel-Version: 1.0\nGenerator: panda-breath\n"
                           f"Root-Is-Purelib: true\nTag: {TAG}\n").encode()),
        (f"{info}/entry_points.txt", _entry_points(project).encode()),
        (f"{info}/LICENSE", (ROOT / "LICENSE").read_bytes()),
    ]
    record = "".join(_record_line(n, d) for n, d in files) + \
        f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode()))
    return f"{dist}-{ver}-{TAG}.whl", files


def build_wheel(wheel_directory, config_settings=None,
                metadata_directory=None):
    name, files = wheel_files()
    stamp = time.gmtime(max(version.source_date_epoch(ROOT), 315532800))
    with zipfile.ZipFile(Path(wheel_directory) / name, "w",
                         zipfile.ZIP_DEFLATED) as wheel:
        for path, data in files:
            member = zipfile.ZipInfo(path, stamp[:6])
            member.external_attr = 0o644 << 16
            member.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(member, data)
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []
