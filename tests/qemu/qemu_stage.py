"""The aarch64 QEMU stage: boot a Debian arm64 guest and run a payload.

The guest is a Debian arm64 kernel plus an initramfs assembled from arm64
.debs (busybox-static, Python 3.11 and the libraries the U1's klippy
imports), laid out like a Snapmaker U1.  For the shipped scenario a second
layer adds the U1's own software: its Klipper fork cross-built for aarch64
and the devel build's opkg.  A payload directory is packed in at /payload;
the guest's /init runs /payload/run, prints a result marker with its exit
code on the serial console and powers off.  The scenario's device (the
simulator) runs on the host, reached through QEMU's restricted network.

    python3 tests/qemu/qemu_stage.py                 # the shipped scenario
    python3 tests/qemu/qemu_stage.py --payload DIR   # any payload (tests)
    python3 tests/qemu/qemu_stage.py --prepare       # fetch + build only

Downloads, the built images and the Klipper build are cached under
.cache/qemu/, keyed by the resolved package versions and the trees'
content; the apt metadata for arm64 lives there too, in a private apt
configuration that lists only the host's Debian mirrors (the host's own
apt state and architectures are left alone).
"""

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The real parts (the U1 Klipper tree, the aarch64 opkg): tests/realparts.py
if str(HERE.parent) not in sys.path:
    sys.path.append(str(HERE.parent))
import realparts  # noqa: E402

CACHE = ROOT / ".cache" / "qemu"
OUT = ROOT / "dist" / "qemu"
GUEST = HERE / "guest"

# What the guest is made of; their dependencies are resolved at run time.
# Python 3.11 and the libraries the U1's klippy imports (its
# klippy-requirements.txt: cffi, greenlet, pyserial, Jinja2, MarkupSafe).
GUEST_PACKAGES = ["busybox-static", "python3.11-minimal",
                  "libpython3.11-stdlib", "python3-cffi", "python3-ply",
                  "python3-cffi-backend", "python3-greenlet",
                  "python3-serial", "python3-jinja2", "python3-markupsafe"]
KERNEL_META = "linux-image-arm64"
# Kernel modules for the guest's network card (virtio-net on virtio-mmio),
# in the order /init loads them.
NET_MODULES = ["failover", "net_failover", "virtio_mmio", "virtio_net"]
# Dependencies the guest does not need: package-manager and configuration
# machinery that only matters to a dpkg-managed system.
EXCLUDE = {"debconf", "debconf-2.0", "dpkg", "perl-base", "tzdata",
           "readline-common", "install-info", "libc-bin", "mime-support",
           "cdebconf", "debianutils", "gcc-12-base",
           # Debian's python3 meta-package: the guest has python3.11 itself
           "python3", "python3-minimal"}
# Guest files nobody reads: docs, translations, Python's GUI/test bits.
PRUNE = ["usr/share/doc", "usr/share/man", "usr/share/info",
         "usr/share/locale", "usr/share/lintian", "usr/share/bug",
         "usr/lib/python3.11/ensurepip", "usr/lib/python3.11/idlelib",
         "usr/lib/python3.11/lib2to3/tests", "usr/lib/python3.11/test",
         "usr/lib/python3.11/turtledemo", "usr/lib/python3.11/pydoc_data"]
# The real parts the scenario runs, the U1's Klipper fork (built here for
# aarch64) and Entware's static opkg for aarch64, the one a devel U1 has,
# come from realparts (PANDA_KLIPPER_U1 / PANDA_OPKG_AARCH64, ../shared,
# or fetched); what the scenario used goes to dist/qemu/parts.json.
CROSS = "aarch64-linux-gnu-"
MARKER_RE = re.compile(r"PB-QEMU-RESULT ([0-9a-f]{32}) rc=([0-9]{1,3})")
PAYLOAD_START = "PB-QEMU-PAYLOAD-START"


def say(msg):
    print(f"qemu: {msg}", file=sys.stderr, flush=True)


class StageError(Exception):
    """The stage failed; the message says why."""


# --- the result marker -----------------------------------------------------

def result_tag(nonce):
    """What the guest prints for this boot: derived from the nonce on the
    kernel command line but never equal to any part of it, so an echo of
    the command line cannot pass for a result."""
    return hashlib.sha256(nonce.encode()).hexdigest()[:32]


def parse_result(console, nonce):
    """The payload's exit code from a console log, or None without a result.

    Only a line that is exactly the marker, carrying this boot's tag,
    counts: echoed command lines, other boots' markers and markers inside
    longer lines are ignored.
    """
    tag = result_tag(nonce)
    for line in console.splitlines():
        m = MARKER_RE.fullmatch(line.strip("\r\n\x00 "))
        if m and m.group(1) == tag:
            return int(m.group(2))
    return None


# --- arm64 packages ----------------------------------------------------------

class Apt:
    """apt-get/apt-cache for arm64 in a private state under .cache/qemu/apt."""

    def __init__(self, base):
        self.base = base
        self.sources = base / "sources.list"
        self.lists = base / "lists"

    def options(self):
        b = self.base
        opts = {
            "Dir::Etc::SourceList": self.sources,
            "Dir::Etc::SourceParts": b / "sources.list.d",
            "Dir::State": b / "state",
            "Dir::State::Lists": self.lists,
            "Dir::State::status": b / "status",
            "Dir::Cache": b / "cache",
            "APT::Architecture": "arm64",
            "APT::Architectures::": "arm64",
            "Debug::NoLocking": "1",
            "APT::Sandbox::User": "root" if os.getuid() == 0 else "",
            "Acquire::Languages": "none",
        }
        out = []
        for key, value in opts.items():
            if value != "":
                out += ["-o", f"{key}={value}"]
        return out

    def setup(self):
        for d in ("sources.list.d", "state", "lists/partial",
                  "cache/archives/partial"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        (self.base / "status").touch()
        self.sources.write_text("".join(
            f"deb [signed-by={keyring()}] {uri} {suite} main\n"
            for uri, suite in debian_mirrors()))

    def has_lists(self):
        return any(self.lists.glob("*_Packages*"))

    def update(self):
        self.setup()
        say("fetching the arm64 package lists (Debian mirrors only)")
        run(["apt-get", *self.options(), "-qq", "update"])

    def show(self, names):
        """Candidate records {name: {field: value}} of real packages."""
        if not names:
            return {}
        proc = subprocess.run(
            ["apt-cache", *self.options(), "show", "--no-all-versions",
             *sorted(names)], capture_output=True, text=True)
        records = {}
        for para in proc.stdout.split("\n\n"):
            fields = parse_control(para)
            if "Package" in fields:
                records.setdefault(fields["Package"], fields)
        return records

    def download(self, pkgs, dest):
        dest.mkdir(parents=True, exist_ok=True)
        specs = [f"{p['Package']}={p['Version']}" for p in pkgs]
        say(f"downloading {len(specs)} arm64 packages")
        run(["apt-get", *self.options(), "-qq", "download", *specs],
            cwd=dest)


def keyring():
    for path in ("/usr/share/keyrings/debian-archive-keyring.gpg",):
        if Path(path).exists():
            return path
    raise StageError("debian-archive-keyring is not installed")


def debian_mirrors():
    """(uri, suite) of the host's configured Debian archives for its
    release; nothing else the host lists (third-party repositories) is
    contacted."""
    codename = os_release().get("VERSION_CODENAME", "bookworm")
    proc = subprocess.run(
        ["apt-get", "indextargets", "--no-release-info",
         "--format", "$(REPO_URI) $(RELEASE)", "Identifier: Packages"],
        capture_output=True, text=True)
    found = []
    for line in proc.stdout.splitlines():
        try:
            uri, suite = line.split()
        except ValueError:
            continue
        path = uri.rstrip("/").rsplit("/", 1)[-1]
        if path not in ("debian", "debian-security"):
            continue
        if suite != codename and not suite.startswith(codename + "-"):
            continue
        if (uri, suite) not in found:
            found.append((uri, suite))
    if codename != "bookworm" or not found:
        # Not a bookworm host (or no Debian entries): the guest is bookworm.
        found = [("http://deb.debian.org/debian/", "bookworm"),
                 ("http://deb.debian.org/debian/", "bookworm-updates"),
                 ("http://deb.debian.org/debian-security/",
                  "bookworm-security")]
    return found


def os_release():
    out = {}
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition("=")
        out[key] = value.strip('"')
    return out


def parse_control(text):
    fields, key = {}, None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def dependency_groups(record):
    """Depends + Pre-Depends as lists of alternative package names."""
    groups = []
    for field in ("Pre-Depends", "Depends"):
        for group in filter(None, record.get(field, "").split(",")):
            names = []
            for alt in group.split("|"):
                name = alt.strip().split(" ", 1)[0].split(":", 1)[0]
                if name:
                    names.append(name)
            groups.append(names)
    return groups


def resolve(apt, roots):
    """Candidate records of roots and everything they depend on."""
    chosen, pending = {}, set(roots)
    while pending:
        records = apt.show(pending)
        missing = pending - set(records)
        if missing & set(roots):
            raise StageError(f"no arm64 package {sorted(missing)}")
        chosen.update(records)
        provided = {name.strip().split(" ", 1)[0]
                    for r in chosen.values()
                    for name in r.get("Provides", "").split(",")}
        wanted = set()
        for record in records.values():
            for alts in dependency_groups(record):
                if any(a in chosen or a in EXCLUDE or a in provided
                       for a in alts):
                    continue
                wanted.add(alts[0])
        # An alternative that is not a real package (virtual) is tried
        # in order on the next round.
        pending = wanted - set(chosen)
        unknown = pending - set(apt.show(pending))
        for name in unknown:
            alts = next((a for r in records.values()
                         for a in dependency_groups(r) if name in a), [])
            rest = [a for a in alts[1:] if a not in EXCLUDE]
            pending.discard(name)
            if rest:
                pending.add(rest[0])
            elif name not in EXCLUDE:
                raise StageError(f"cannot resolve arm64 dependency {name}")
    return [chosen[n] for n in sorted(chosen)]


def deb_name(record):
    """The file name apt-get download gives a package."""
    version = record["Version"].replace(":", "%3a")
    return f"{record['Package']}_{version}_{record['Architecture']}.deb"


def guest_packages(refresh=False):
    """The manifest of arm64 .debs for the guest, downloading what is
    missing.  The package lists are refreshed at most once, and only when
    the cached set is incomplete."""
    apt = Apt(CACHE / "apt")
    debs = CACHE / "debs"
    manifest_path = CACHE / "manifest.json"
    wanted = {"roots": GUEST_PACKAGES, "kernel_meta": KERNEL_META,
              "exclude": sorted(EXCLUDE)}
    if not refresh and manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if (manifest.get("wanted") == wanted
                and all((debs / f).exists() for f in manifest["debs"])):
            return manifest
    updated = False
    if refresh or not apt.has_lists():
        apt.update()
        updated = True
    for attempt in (1, 2):
        try:
            manifest = resolve_manifest(apt)
            fetch = [r for r in manifest.pop("records")
                     if not (debs / deb_name(r)).exists()]
            if fetch:
                apt.download(fetch, debs)
            break
        except (StageError, subprocess.CalledProcessError):
            if updated or attempt == 2:
                raise
            apt.update()       # versions moved since the lists were fetched
            updated = True
    manifest["wanted"] = wanted
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def resolve_manifest(apt):
    meta = apt.show([KERNEL_META]).get(KERNEL_META)
    if not meta:
        raise StageError(f"no arm64 {KERNEL_META} in the package lists")
    kernel = next((a[0] for a in dependency_groups(meta)
                   if a[0].startswith("linux-image-")), None)
    if not kernel:
        raise StageError(f"{KERNEL_META} names no linux-image package")
    records = resolve(apt, GUEST_PACKAGES)
    kernel_record = apt.show([kernel])[kernel]
    return {
        "kernel": deb_name(kernel_record),
        "debs": [deb_name(r) for r in records] + [deb_name(kernel_record)],
        "packages": {r["Package"]: r["Version"]
                     for r in records + [kernel_record]},
        "records": records + [kernel_record],
    }


# --- the guest image ---------------------------------------------------------

def kernel_image(manifest):
    """vmlinuz from the kernel .deb (cached by the .deb's name)."""
    deb = CACHE / "debs" / manifest["kernel"]
    out = CACHE / "kernel" / (deb.stem + ".vmlinuz")
    if out.exists():
        return out
    say(f"extracting the kernel from {deb.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        extract_deb(deb, tmp, "./boot/vmlinuz-*")
        found = list(Path(tmp, "boot").glob("vmlinuz-*"))
        if len(found) != 1:
            raise StageError(f"no single vmlinuz in {deb.name}")
        shutil.move(found[0], out)
    return out


def extract_deb(deb, dest, *patterns):
    fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb],
                            stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", dest, "--wildcards", *patterns],
                   stdin=fsys.stdout, check=True)
    fsys.stdout.close()
    fsys.wait()


def net_modules(manifest, rootfs):
    """The network card's modules from the kernel .deb into
    /lib/modules/net of the guest (loaded by /init)."""
    deb = CACHE / "debs" / manifest["kernel"]
    patterns = [f"./lib/modules/*/{m}.ko" for m in NET_MODULES]
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        extract_deb(deb, tmp, *patterns)
        dest = rootfs / "lib/modules/net"
        dest.mkdir(parents=True)
        for name in NET_MODULES:
            found = list(Path(tmp).rglob(f"{name}.ko"))
            if len(found) != 1:
                raise StageError(f"no single {name}.ko in {deb.name}")
            shutil.move(found[0], dest / found[0].name)


def base_key(manifest):
    """The base image's cache key: the package versions, the guest's own
    files and this builder."""
    h = hashlib.sha256()
    h.update(json.dumps(manifest["packages"], sort_keys=True).encode())
    for path in sorted([GUEST / "init", *(GUEST / "rootfs").rglob("*")]):
        if path.is_file():
            h.update(str(path.relative_to(GUEST)).encode())
            h.update(path.read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def base_image(manifest):
    """The guest's base initramfs (uncompressed newc cpio), cached."""
    out = CACHE / "images" / f"base-{base_key(manifest)}.cpio"
    if out.exists():
        return out
    check_host_python()
    say("building the guest's base image")
    out.parent.mkdir(parents=True, exist_ok=True)
    for old in out.parent.glob("base-*.cpio"):
        old.unlink()
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        for name in manifest["debs"]:
            if name != manifest["kernel"]:
                run(["dpkg-deb", "-x", CACHE / "debs" / name, rootfs])
        for rel in PRUNE:
            shutil.rmtree(rootfs / rel, ignore_errors=True)
        lay_out_u1(rootfs)
        net_modules(manifest, rootfs)
        precompile(rootfs, "usr/lib/python3.11")
        precompile(rootfs, "usr/lib/python3/dist-packages")
        write_cpio(rootfs, out.with_suffix(".tmp"))
        out.with_suffix(".tmp").rename(out)
    return out


def check_host_python():
    if sys.version_info[:2] != (3, 11):
        raise StageError(
            "the host's Python must be 3.11 to precompile the guest's "
            f"standard library (this is {sys.version.split()[0]})")


def lay_out_u1(rootfs):
    """The parts of a Snapmaker U1 that the packages and Klipper expect."""
    shutil.copytree(GUEST / "rootfs", rootfs, dirs_exist_ok=True,
                    symlinks=True)
    for d in ("proc", "sys", "dev", "tmp", "run", "root", "mnt", "var/log",
              "oem", "userdata", "opt", "usr/sbin", "sbin",
              "usr/lib/python3.11/site-packages",
              "usr/lib/python3/dist-packages",
              "home/lava/klipper/klippy/extras",
              "home/lava/printer_data/config/extended/klipper",
              "home/lava/printer_data/logs"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "home/lava/klipper/klippy/extras/__init__.py").touch()
    python3 = rootfs / "usr/bin/python3"
    if not python3.exists():
        python3.symlink_to("python3.11")
    # The U1's Python reads /usr/lib/python3.11/site-packages; Debian's
    # reads dist-packages, which points it at the U1's folder.
    (rootfs / "usr/lib/python3/dist-packages/u1-site-packages.pth"
     ).write_text("/usr/lib/python3.11/site-packages\n")
    init = rootfs / "init"
    shutil.copy(GUEST / "init", init)
    init.chmod(0o755)


def precompile(rootfs, rel, strip=None):
    """Byte-compile on the host (same Python 3.11) with hash-based .pyc that
    are never checked against mtimes, so the emulated guest imports them
    without compiling or stat-checking sources."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0",
         "--invalidation-mode", "unchecked-hash",
         "-s", str(strip or rootfs), "-p", "/", str(rootfs / rel)],
        check=False, stdout=subprocess.DEVNULL)


def write_cpio(tree, out):
    """An uncompressed newc archive of tree, owned by root, in a stable
    order (the kernel unpacks it without spending emulated cycles on
    decompression)."""
    paths = subprocess.run(["find", ".", "-mindepth", "1", "-print0"],
                           cwd=tree, capture_output=True, check=True).stdout
    paths = b"\0".join(sorted(filter(None, paths.split(b"\0")))) + b"\0"
    with open(out, "wb") as f:
        subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "--null",
                        "-R", "0:0"],
                       cwd=tree, input=paths, stdout=f, check=True)
    return out


def real_parts(parts):
    """(U1 Klipper tree, aarch64 opkg or None, [what is skipped]) for the
    scenario.  A part none of its sources has is a StageError naming it
    (one line); PANDA_SKIP=qemu-opkg skips only the opkg install path."""
    try:
        klipper_u1 = parts.locate("klipper-u1").path
        reason = parts.skip_reason("qemu-opkg")
        if reason:
            say(f"SKIPPED the opkg install path: {reason}")
            return klipper_u1, None, ["qemu-opkg"]
        return klipper_u1, parts.locate("opkg-aarch64").path, []
    except realparts.Unavailable as e:
        raise StageError(str(e)) from None


def write_parts(path, parts=None, manifest=None, skipped=()):
    """dist/qemu/parts.json: what the scenario ran (tests/testrun.py puts
    it into the run's summary): the guest kernel, the Debian arm64
    packages, the U1 Klipper tree and opkg, and what was skipped."""
    info = {"skipped": list(skipped)}
    if manifest is not None:
        kernel = manifest["kernel"].split("_")[0]
        info["kernel"] = {"package": kernel,
                          "version": manifest["packages"].get(kernel)}
        info["debian_arm64"] = {k: v for k, v in
                                sorted(manifest["packages"].items())
                                if k != kernel}
    if parts is not None:
        names = ["klipper-u1"] + ([] if "qemu-opkg" in skipped
                                  else ["opkg-aarch64"])
        info["parts"] = [d for d in map(parts.describe, names) if d]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=1) + "\n")


def tree_digest(tree):
    h = hashlib.sha256()
    for path in sorted(tree.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(tree)).encode() + b"\0")
            h.update(path.read_bytes())
    return h.hexdigest()


def klipper_build(source):
    """The U1 Klipper tree at source cross-built for aarch64 (the Linux
    host MCU out/klipper.elf and klippy/chelper/c_helper.so), cached by
    the tree's content and this builder."""
    h = hashlib.sha256(tree_digest(source).encode())
    h.update(Path(__file__).read_bytes())
    key = h.hexdigest()[:16]
    out = CACHE / "klipper" / key
    if (out / "done").exists():
        return out, key
    say(f"cross-building the U1 Klipper from {source} for aarch64")
    shutil.rmtree(out, ignore_errors=True)
    tree = out / "u1"
    shutil.copytree(source, tree, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (tree / ".config").write_text("CONFIG_MACH_LINUX=y\n")
    log = out / "build.log"
    with open(log, "w") as f:
        try:
            for cmd in (["make", "olddefconfig"],
                        ["make", "-j2", f"CROSS_PREFIX={CROSS}"],
                        ["make", "-C", "klippy/chelper",
                         f"CROSS_COMPILE={CROSS}"]):
                run(cmd, cwd=tree, stdout=f, stderr=subprocess.STDOUT)
        except subprocess.CalledProcessError as e:
            raise StageError(f"the aarch64 Klipper build failed "
                             f"({' '.join(e.cmd[:3])}); see {log}") from e
    (out / "done").touch()
    for old in (CACHE / "klipper").iterdir():
        if old != out:
            shutil.rmtree(old, ignore_errors=True)
    return out, key


def u1_image(klipper_u1, opkg):
    """A cpio layer with the U1's own software: Klipper at
    /home/lava/klipper (klippy, its C helper, the host MCU, from the tree
    at klipper_u1) and the devel build's opkg (the binary at opkg, or
    None) at /usr/local/bin/opkg; cached."""
    build, key = klipper_build(klipper_u1)
    h = hashlib.sha256(key.encode())
    h.update(opkg.read_bytes() if opkg else b"no opkg")
    out = CACHE / "images" / f"u1-{h.hexdigest()[:16]}.cpio"
    if out.exists():
        return out
    say("building the guest's U1 layer (Klipper, opkg)")
    for old in out.parent.glob("u1-*.cpio"):
        old.unlink()
    tree = build / "u1"
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        layer = Path(tmp)
        klipper = layer / "home/lava/klipper"
        shutil.copytree(tree / "klippy", klipper / "klippy",
                        ignore=shutil.ignore_patterns(
                            "__pycache__", "*.pyc", "*.o", "*.c", "*.h"))
        (klipper / "out").mkdir()
        shutil.copy(tree / "out/klipper.elf", klipper / "out/klipper.elf")
        for name in ("COPYING", "README.md"):
            if (tree / name).exists():
                shutil.copy(tree / name, klipper / name)
        precompile(layer, "home/lava/klipper/klippy", strip=layer)
        if opkg:
            (layer / "usr/local/bin").mkdir(parents=True)
            shutil.copy(opkg, layer / "usr/local/bin/opkg")
            (layer / "usr/local/bin/opkg").chmod(0o755)
        write_cpio(layer, out.with_suffix(".tmp"))
        out.with_suffix(".tmp").rename(out)
    return out


def payload_image(payload_dir, out):
    """A cpio holding payload_dir at /payload, appended to the base."""
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        tree = Path(tmp)
        shutil.copytree(payload_dir, tree / "payload", symlinks=True)
        run_script = tree / "payload" / "run"
        if not run_script.exists():
            raise StageError(f"payload {payload_dir} has no 'run'")
        run_script.chmod(0o755)
        precompile(tree, "payload", strip=tree)
        write_cpio(tree, out)
    return out


# --- booting -----------------------------------------------------------------

class Boot:
    """One guest boot: console log, result, how it ended."""

    def __init__(self, console, rc, reason, seconds):
        self.console, self.rc, self.reason = console, rc, reason
        self.seconds = seconds

    @property
    def ok(self):
        return self.rc == 0


def with_stage():
    """A preexec_fn that kills the child when the stage ends, however it
    ends, even by SIGKILL (Linux's parent-death signal)."""
    stage = os.getpid()

    def preexec():
        import ctypes
        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
        if os.getppid() != stage:   # the stage ended before the prctl
            os._exit(1)
    return preexec


def boot(kernel, initrd, log_path, timeout, nonce=None, echo=False,
         memory=1024, forwards=None):
    """Boot the guest, keep its console in log_path and return a Boot.

    forwards {(guest address, port): host port} gives the guest a network
    card on QEMU's restricted user network that reaches those host ports
    on 127.0.0.1 and nothing else."""
    nonce = nonce or secrets.token_hex(16)
    cmdline = (f"console=ttyAMA0 panic=-1 "
               f"rdinit=/init pb.nonce={nonce}")
    cmd = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53",
           "-smp", "2", "-m", str(memory), "-accel", "tcg",
           "-nographic", "-monitor", "none", "-serial", "stdio",
           *network(forwards), "-no-reboot",
           "-kernel", str(kernel), "-initrd", str(initrd),
           "-append", cmdline]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    deadline = start + timeout
    timed_out = False
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT,
                                    preexec_fn=with_stage())
        except OSError as e:
            raise StageError(f"cannot start {cmd[0]}: {e.strerror}") from e
        buf, shown = b"", False
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                ready, _, _ = select.select([proc.stdout], [], [],
                                            min(left, 1.0))
                if not ready:
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                if echo:
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        text = line.decode(errors="replace").rstrip("\r")
                        if shown:
                            print(f"guest| {text}", file=sys.stderr,
                                  flush=True)
                        elif text.strip() == PAYLOAD_START:
                            shown = True
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    seconds = time.monotonic() - start
    console = log_path.read_bytes().decode(errors="replace")
    rc = parse_result(console, nonce)
    if timed_out:
        return Boot(console, None, f"timed out after {timeout:.0f} s "
                    "(guest hung)", seconds)
    if rc is None:
        return Boot(console, None, "the guest stopped without a result "
                    f"marker (crash or panic; QEMU exit {proc.returncode})",
                    seconds)
    if rc != 0:
        return Boot(console, rc, f"the guest payload failed (exit {rc})",
                    seconds)
    return Boot(console, 0, "passed", seconds)


def network(forwards):
    if not forwards:
        return ["-nic", "none"]
    relay = str(HERE / "relay.py").replace(",", ",,")
    rules = "".join(
        f",guestfwd=tcp:{addr}:{port}-cmd:{sys.executable} {relay} {host}"
        for (addr, port), host in sorted(forwards.items()))
    return ["-netdev", f"user,id=net0,restrict=on{rules}",
            "-device", "virtio-net-device,netdev=net0"]


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


# --- the shipped scenario payload --------------------------------------------

def scenario_payload(dest, dist):
    """The payload that installs dist/ and runs the end-to-end scenario:
    the U1 packages and overlay from dist/, the scenario, and the Klipper
    API client it drives Klipper with, in /payload/lib."""
    ipks = sorted(dist.glob("*.ipk"))
    overlays = sorted(dist.glob("panda-breath-overlay-*.tar.gz"))
    names = {p.name.split("_", 1)[0] for p in ipks}
    missing = [f"{n}_*.ipk" for n in ("panda-breath", "python3-websocket")
               if n not in names]
    if not overlays:
        missing.append("panda-breath-overlay-*.tar.gz")
    if missing:
        raise StageError(f"{dist} lacks {', '.join(missing)} (./build.sh)")
    api = ROOT / "tests/realklipper/api.py"
    if not api.exists():
        raise StageError(f"{api.relative_to(ROOT)} is missing")
    shutil.copytree(GUEST / "payload", dest, symlinks=True)
    (dest / "dist").mkdir()
    for path in ipks + overlays[-1:]:
        shutil.copy(path, dest / "dist" / path.name)
    (dest / "lib").mkdir()
    shutil.copy(api, dest / "lib" / "klippy_api.py")
    shutil.copy(HERE / "guest_scenario.py", dest / "guest_scenario.py")


# The guest's view of the host's services (QEMU's user network, 10.0.2.0/24).
DEVICE_ADDR = ("10.0.2.100", 80)
CONTROL_ADDR = ("10.0.2.100", 81)


@contextlib.contextmanager
def host_device(log_path):
    """The simulator and its control service on the host (host_device.py,
    on the project's .venv); yields their ports."""
    python = ROOT / ".venv" / "bin" / "python"
    if not python.exists():
        raise StageError(f"no {python} for the simulator (run ./build.sh)")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([python, HERE / "host_device.py"],
                                stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log,
                                text=True, preexec_fn=with_stage())
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            words = proc.stdout.readline().split() if ready else []
            if len(words) != 3 or words[0] != "ports":
                raise StageError(f"the simulator did not start (see "
                                 f"{log_path})")
            yield int(words[1]), int(words[2])
        finally:
            proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- command line -------------------------------------------------------------

@contextlib.contextmanager
def cache_lock():
    """One stage at a time builds in .cache/qemu (engineers share it)."""
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--payload", type=Path,
                    help="run this payload directory instead of the "
                         "shipped scenario (it must hold an executable "
                         "'run')")
    ap.add_argument("--timeout", type=float, default=360.0,
                    help="hard limit for the boot in seconds "
                         "(default %(default)s)")
    ap.add_argument("--console", type=Path, default=OUT / "console.log",
                    help="where to keep the guest console log")
    ap.add_argument("--dist", type=Path, default=ROOT / "dist",
                    help="the packages and overlay the scenario installs "
                         "(default %(default)s)")
    ap.add_argument("--u1", action="store_true",
                    help="give a --payload the U1 layer (Klipper, opkg) "
                         "and the simulator on the network, as the "
                         "scenario has")
    ap.add_argument("--prepare", action="store_true",
                    help="fetch packages and build the base image only")
    ap.add_argument("--refresh", action="store_true",
                    help="refresh the arm64 package lists first")
    ap.add_argument("--quiet", action="store_true",
                    help="do not echo the payload's console output")
    ap.add_argument("--debian-sources", action="store_true",
                    help="print the host's Debian archives as sources.list "
                         "lines (what run.sh refreshes) and exit")
    args = ap.parse_args(argv)
    if args.debian_sources:
        for uri, suite in debian_mirrors():
            print(f"deb [signed-by={keyring()}] {uri} {suite} main")
        return 0
    t0 = time.monotonic()
    # A stop (a test's timeout, Ctrl-C's SIGTERM from a runner) unwinds:
    # QEMU and the simulator are stopped on the way out.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    record = OUT / "parts.json" if args.payload is None else None
    try:
        parts = realparts.Parts()
    except realparts.BadSkip as e:
        say(f"FAILED: {e}")
        return 2
    reason = parts.skip_reason("qemu")
    if reason and args.payload is None and not args.prepare:
        say(f"SKIPPED: {reason}")
        write_parts(record, skipped=["qemu"])
        return 0
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            tmp = Path(tmp)
            initrd = tmp / "initrd.cpio"
            with cache_lock():
                manifest = guest_packages(refresh=args.refresh)
                kernel = kernel_image(manifest)
                base = base_image(manifest)
                say(f"guest image ready in {time.monotonic() - t0:.1f} s "
                    f"({manifest['kernel'].split('_')[0]}, "
                    "python3.11-minimal "
                    f"{manifest['packages']['python3.11-minimal']})")
                if args.prepare:
                    return 0
                shutil.copy(base, initrd)
            payload = args.payload
            real = payload is None or args.u1
            if real:
                klipper_u1, opkg, skipped = real_parts(parts)
                if record:
                    write_parts(record, parts, manifest, skipped)
                with cache_lock():
                    layers = [u1_image(klipper_u1, opkg)]
            else:
                layers = []
            if payload is None:
                payload = tmp / "scenario"
                scenario_payload(payload, args.dist)
            layers.append(payload_image(payload, tmp / "payload.cpio"))
            with open(initrd, "ab") as f:
                for layer in layers:
                    f.write(layer.read_bytes())
            with contextlib.ExitStack() as stack:
                forwards = None
                if real:
                    device, control = stack.enter_context(host_device(
                        args.console.with_name("device.log")))
                    forwards = {DEVICE_ADDR: device, CONTROL_ADDR: control}
                result = boot(kernel, initrd, args.console, args.timeout,
                              echo=not args.quiet, forwards=forwards)
    except StageError as e:
        say(f"FAILED: {e}")
        return 2
    except subprocess.CalledProcessError as e:
        say(f"FAILED: {' '.join(map(str, e.cmd[:3]))}... exited "
            f"{e.returncode}")
        return 2
    say(f"guest ran for {result.seconds:.1f} s; console log: "
        f"{args.console}")
    if not result.ok:
        say(f"FAILED: {result.reason}")
        print(tail(result.console), file=sys.stderr)
        return 1
    say(f"PASSED in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
