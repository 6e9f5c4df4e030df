"""Opening built packages the way opkg-lede does."""
import gzip
import io
import pathlib
import shutil
import subprocess
import sys
import tarfile

from package import build

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "wheels"
OVERLAY = ROOT / "overlay" / build.OVERLAY
CLI = ROOT / "package" / "panda-breath" / "panda-breath"
WIFI_PASSWORD = "correct-horse-battery"     # the simulator's
# Our own archives, extracted with owners and modes as they are (Python
# releases before the extraction filters of PEP 706 do that by default).
TRUSTED = ({"filter": "fully_trusted"}
           if hasattr(tarfile, "fully_trusted_filter") else {})


def run_cli(*args, timeout=30):
    """The panda-breath command, as a user runs it: never a traceback,
    never the WiFi password from the device's snapshot."""
    result = subprocess.run([sys.executable, str(CLI), *map(str, args)],
                            capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in result.stderr
    assert WIFI_PASSWORD not in result.stdout + result.stderr
    return result


class Ipk:
    """A built .ipk opened the way opkg-lede opens it."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.raw = self.path.read_bytes()
        self.outer = tarfile.open(fileobj=io.BytesIO(self.raw), mode="r:gz")
        self.members = {m.name: m for m in self.outer.getmembers()}
        self.data = self._inner("./data.tar.gz")
        self.control_tar = self._inner("./control.tar.gz")

    def read(self, name):
        return self.outer.extractfile(self.members[name]).read()

    def _inner(self, name):
        return tarfile.open(fileobj=io.BytesIO(self.read(name)), mode="r:gz")

    def control_file(self, name):
        return self.control_tar.extractfile(f"./{name}").read().decode()

    @property
    def fields(self):
        fields = {}
        for line in self.control_file("control").splitlines():
            key, _, value = line.partition(": ")
            fields[key] = value
        return fields


def gunzip(data):
    return gzip.decompress(data)


SOURCES = ("package", "klipper/extras", "klipper/config", "overlay")
AUTHOR = ("-c", "user.name=t", "-c", "user.email=t@example.invalid")


def make_checkout(repo, edit=None, tag=None):
    """A copy of what the build reads, committed as its own repository,
    so builds under test never see other commits landing meanwhile."""
    repo = pathlib.Path(repo)
    for part in SOURCES:
        shutil.copytree(ROOT / part, repo / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    if edit:
        edit(repo)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    commit(repo)
    if tag:
        git(repo, "tag", tag)
    return repo


def commit(repo, message="c"):
    git(repo, *AUTHOR, "commit", "-q", "--allow-empty", "-m", message)


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True,
                   capture_output=True)


BUSYBOX = shutil.which("busybox")


def busybox_bin(folder):
    """A folder holding every BusyBox applet and nothing else, to put
    alone on PATH: scripts then run as on the U1, with BusyBox tools."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True,
                             text=True, check=True).stdout.split()
    for applet in applets:
        (folder / applet).symlink_to(BUSYBOX)
    return folder
