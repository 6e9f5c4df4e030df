"""The real opkg (Entware's opkg-lede build: $PANDA_OPKG, ../shared/opkg,
or built from the pinned sources, see realparts.py) on temporary roots
laid out like the Snapmaker U1.

With `-o ROOT` opkg runs no maintainer script unless --force-postinstall
is given; then it runs them on the host with /bin/sh and PKG_ROOT=ROOT/.
On the printer (`dest root /`, no -o) it always runs them, with
PKG_ROOT=/: `Opkg(..., scripts=True)` is how a test gets that behaviour
in an offline root, and `chroot_opkg` runs opkg without -o inside a
chroot, with BusyBox as /bin/sh, as on the U1.
"""
import os
import pathlib
import shutil
import stat
import subprocess

import realparts
from pkgtools import BUSYBOX, Ipk

from package import build


def opkg_path():
    """The real opkg binary (fetched and built when nothing has it)."""
    return realparts.parts().locate("opkg").path


EXTRAS = "home/lava/klipper/klippy/extras"
SITE = "usr/lib/python3.11/site-packages"
USER_CFG_DIR = "home/lava/printer_data/config/extended/klipper"
DB = "opt/lib/opkg"             # Entware's opkg keeps its records here

# The U1's stock /opt/etc/opkg.conf (entware-ctrl init) with its src line
# pointing at a local feed instead of bin.entware.net.
U1_CONF = "src/gz panda-breath file://{feed}\ndest root /\n" \
    "arch aarch64-3.10 160\n"
# A plain Entware-style config: no arch line, so opkg accepts `all`.
ENTWARE_CONF = "src/gz panda-breath file://{feed}\ndest root /\n"

# (folder, uid, gid, mode) of a U1 root; the modes are not opkg's
# defaults, so a test sees whether opkg changed them.
U1_FOLDERS = (
    ("opt/tmp", 0, 0, 0o755),
    ("etc", 0, 0, 0o755),
    ("usr/bin", 0, 0, 0o755),
    ("usr/share", 0, 0, 0o755),
    (SITE, 0, 50, 0o2775),
    ("home/lava", 1000, 1000, 0o750),
    ("home/lava/klipper", 1000, 1000, 0o775),
    ("home/lava/klipper/klippy", 1000, 1000, 0o775),
    (EXTRAS, 1000, 1000, 0o775),
    ("home/lava/printer_data", 1000, 1000, 0o755),
    ("home/lava/printer_data/config", 1000, 1000, 0o755),
    ("home/lava/printer_data/config/extended", 1000, 1000, 0o755),
    (USER_CFG_DIR, 1000, 1000, 0o755),
    ("oem", 0, 0, 0o755),
)
IS_ROOT = os.geteuid() == 0
CHROOT = bool(IS_ROOT and BUSYBOX and shutil.which("chroot"))
NAMES = ("python3-websocket", "panda-breath")

# How opkg runs, its config, the architecture of the packages it gets.
TARGETS = {
    "u1": ("offline", U1_CONF, build.U1_ARCH),
    "entware": ("offline", ENTWARE_CONF, "all"),
    "printer": ("chroot", U1_CONF, build.U1_ARCH),
}


def make_u1_root(root, skip=()):
    """A root with the U1's folders (except those in skip)."""
    root = pathlib.Path(root)
    for folder, uid, gid, mode in U1_FOLDERS:
        if folder in skip:
            continue
        path = root / folder
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
        if IS_ROOT:
            os.chown(path, uid, gid)
    return root


def owner_and_mode(path):
    st = os.stat(path)
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


class Opkg:
    """The real opkg on a U1-like root.

    how="offline": `opkg -o ROOT -f CONF --force-postinstall ...` on the
    host (scripts run by the host's /bin/sh, PKG_ROOT=ROOT/);
    how="noscripts": the same without --force-postinstall (opkg runs no
    maintainer script);
    how="chroot": `chroot ROOT opkg ...` with CONF as /opt/etc/opkg.conf,
    as on the printer (scripts run by BusyBox ash, PKG_ROOT=/).
    """

    def __init__(self, root, conf_text, workdir, how="offline"):
        self.root = pathlib.Path(root)
        self.how = how
        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.tmp = workdir / "tmp"
        self.tmp.mkdir(exist_ok=True)
        if how == "chroot":
            chroot_root(self.root)
            self.conf = self.root / "opt/etc/opkg.conf"
            self.prefix = ""
        else:
            self.conf = workdir / "opkg.conf"
            self.prefix = str(self.root)
        self.conf.write_text(conf_text)

    def package(self, path):
        """A package file's path as opkg sees it."""
        if self.how != "chroot":
            return str(path)
        folder = self.root / "pkgs"
        folder.mkdir(exist_ok=True)
        shutil.copy(path, folder / pathlib.Path(path).name)
        return f"/pkgs/{pathlib.Path(path).name}"

    def __call__(self, *args):
        """Run opkg; --force-space because opkg measures the host's /opt,
        not ROOT (Entware's 520-root_dir.patch)."""
        args = [str(a) for a in args]
        if self.how == "chroot":
            return chroot_opkg(self.root, *args)
        command = [str(opkg_path()), "-o", str(self.root), "-f", str(self.conf),
                   "--force-space"]
        if self.how == "offline":
            command.append("--force-postinstall")
        env = dict(os.environ, TMPDIR=str(self.tmp))
        result = subprocess.run([*command, *args], env=env,
                                capture_output=True, text=True, timeout=120)
        result.output = result.stdout + result.stderr
        return result

    def ok(self, *args):
        result = self(*args)
        assert result.returncode == 0, result.output
        assert "Collected errors" not in result.output, result.output
        return result

    def install(self, *paths, options=()):
        return self(*options, "install", *map(self.package, paths))

    def status(self):
        return read_status(self.root / DB / "status")

    def files(self, name):
        """What `opkg files NAME` lists, without the ROOT prefix."""
        result = self.ok("files", name)
        return sorted(line[len(self.prefix):]
                      for line in result.stdout.split("\n")
                      if line.startswith(self.prefix + "/"))


def read_status(path):
    """{package: {field: value, "Conffiles": {path: sha256}}} from an opkg
    status file."""
    path = pathlib.Path(path)
    packages = {}
    if not path.exists():
        return packages
    for block in path.read_text().split("\n\n"):
        if not block.strip():
            continue
        fields, conffiles = {}, {}
        for line in block.splitlines():
            if line.startswith(" "):
                name, digest = line.split()
                conffiles[name] = digest
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        fields["Conffiles"] = conffiles
        packages[fields["Package"]] = fields
    return packages


def chroot_root(root):
    """Make root runnable with chroot: BusyBox (and the libraries it
    needs) as /bin/sh and every applet, opkg as /usr/local/bin/opkg (where
    the U1's devel builds put it), Entware's /opt/etc/opkg.conf."""
    root = pathlib.Path(root)
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(BUSYBOX, bin_dir / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True,
                             text=True, check=True).stdout.split()
    for applet in applets:
        if not (bin_dir / applet).exists():
            (bin_dir / applet).symlink_to("busybox")
    ldd = subprocess.run(["ldd", BUSYBOX], capture_output=True, text=True)
    for word in ldd.stdout.split():
        if word.startswith("/"):
            target = root / word.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(word, target)
    local = root / "usr/local/bin"
    local.mkdir(parents=True, exist_ok=True)
    shutil.copy(opkg_path(), local / "opkg")
    (root / "opt/etc").mkdir(parents=True, exist_ok=True)
    (root / "opt/etc/opkg.conf").write_text(
        "src/gz entware http://bin.entware.net/aarch64-k3.10\n"
        "dest root /\narch aarch64-3.10 160\n")
    (root / "tmp").mkdir(exist_ok=True)
    (root / "dev").mkdir(exist_ok=True)
    if not (root / "dev/null").exists():
        os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return root


UNSHARE = shutil.which("unshare")
OFFLINE = [UNSHARE, "--net"] if UNSHARE and subprocess.run(
    [UNSHARE, "--net", "true"], capture_output=True).returncode == 0 \
    else []


def chroot_opkg(root, *args):
    """opkg as on the printer: no -o, the compiled-in /opt/etc/opkg.conf,
    scripts run by BusyBox ash.  No `update`, and no network namespace
    where unshare works: nothing is downloaded."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin",
           "HOME": "/root"}
    result = subprocess.run(
        [*OFFLINE, "chroot", str(root), "/usr/local/bin/opkg",
         "--force-space", *args], env=env, capture_output=True, text=True,
        timeout=120)
    result.output = result.stdout + result.stderr
    return result


def packages(dist, arch):
    """{name: .ipk path} of one architecture in a ./build.sh output."""
    folder = dist if arch == build.U1_ARCH else dist / "feed"
    found = {}
    for path in folder.glob(f"*_{arch}.ipk"):
        found[Ipk(path).fields["Package"]] = path
    assert set(found) == set(NAMES)
    return found


def install_both(opkg, which):
    return opkg.install(which["python3-websocket"], which["panda-breath"])
