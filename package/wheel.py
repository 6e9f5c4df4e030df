"""websocket-client for the printer: fetched once by pip, then verified.

The wheel is pinned by version and by the sha256 of the file PyPI serves.
It is cached under .cache/ so later builds work offline; a cached file
that does not match the hash is refused, never used.
"""
import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

PROJECT = "websocket-client"
VERSION = "1.9.2"
WHEEL = "websocket_client-1.9.2-py3-none-any.whl"
SHA256 = "e1a673830a9c7bfa47b1cd3d5e4178f4c9651d80a4eab02c9c23a1c3ec6250ce"
HOMEPAGE = "https://github.com/websocket-client/websocket-client"
LICENSE = "Apache-2.0"

# The library's own test suite is of no use on a printer.
DROPPED = "websocket/tests/"


class WheelError(Exception):
    pass


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fetch(cache_dir):
    """Path of the verified wheel, downloading it with pip if missing."""
    cache_dir = Path(cache_dir)
    path = cache_dir / WHEEL
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet",
               "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", f"{PROJECT}=={VERSION}",
               "-d", str(cache_dir)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not path.exists():
            detail = (result.stderr.strip().splitlines() or ["no output"])
            raise WheelError(f"could not download {WHEEL} with pip: "
                             f"{detail[-1]}")
    actual = sha256_of(path)
    if actual != SHA256:
        raise WheelError(
            f"{path}: sha256 {actual} does not match the pinned {SHA256}; "
            "delete the file to download it again")
    return path


def _record_hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def site_packages_files(wheel_path):
    """(relative path, bytes) of every file to install, in wheel order.

    The tests are dropped, RECORD is rewritten to match what is installed
    and INSTALLER names opkg, as an installed distribution should.
    """
    files = []
    with zipfile.ZipFile(wheel_path) as wheel:
        names = [n for n in wheel.namelist() if not n.endswith("/")]
        dist_info = next((n.split("/")[0] for n in names
                          if n.split("/")[0].endswith(".dist-info")), None)
        if dist_info is None:
            raise WheelError(f"{wheel_path}: no .dist-info in the wheel")
        record_name = f"{dist_info}/RECORD"
        for name in names:
            if name.startswith(DROPPED) or name == record_name:
                continue
            files.append((name, wheel.read(name)))
        record = wheel.read(record_name).decode()
    installer = b"opkg\n"
    files.append((f"{dist_info}/INSTALLER", installer))
    kept = [line for line in record.splitlines()
            if line and not line.startswith(DROPPED)]
    kept.append(f"{dist_info}/INSTALLER,{_record_hash(installer)},"
                f"{len(installer)}")
    files.append((record_name, ("\n".join(kept) + "\n").encode()))
    return files
