"""Real Klipper trees, copied into the project's cache and built once.

The sources are the checkouts named by PANDA_KLIPPER_UPSTREAM /
PANDA_KLIPPER_U1, or ../shared/klipper/{upstream,u1} (read-only where CI
runs), or else the pinned commits fetched into .cache/parts (realparts.py).
Each copy gets its Linux host MCU (out/klipper.elf) and C helper built, and
the project's module and the test probe linked into klippy/extras."""
import fcntl
import hashlib
import pathlib
import shutil
import subprocess
import sys

import realparts

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "klipper"
MODULE = ROOT / "klipper" / "extras" / "panda_breath.py"
PROBE = pathlib.Path(__file__).resolve().parent / "extras" / "reactor_probe.py"
TREES = ("upstream", "u1")
# Only what klippy and the Linux host MCU are built from.
PARTS = ("klippy", "src", "scripts", "lib", "Makefile")


class TreeMissing(realparts.Unavailable):
    pass


def source(name):
    """The tree's sources (fetched when nothing else has them); a
    TreeMissing with one line saying how to provide them otherwise."""
    try:
        return realparts.parts().locate("klipper-" + name).path
    except realparts.Unavailable as e:
        raise TreeMissing(str(e), e.part, e.short) from None


def need(layer, name):
    """For a test of layer: the built tree `name`, or a skip when the
    layer is skipped on purpose (PANDA_SKIP), or a one-line failure when
    the tree cannot be had."""
    realparts.need(layer, "klipper-" + name, tree=name)
    return prepare(name)


def _fingerprint(src):
    digest = hashlib.sha256()
    for part in PARTS:
        base = src / part
        files = [base] if base.is_file() else sorted(
            p for p in base.rglob("*") if p.is_file())
        for path in files:
            digest.update(str(path.relative_to(src)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _run(cmd, cwd, log):
    with open(log, "ab") as out:
        subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                       check=True)


def _link(target, link):
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def prepare(name):
    """The built copy of tree `name`: a pathlib.Path, ready to run."""
    src = source(name)
    CACHE.mkdir(parents=True, exist_ok=True)
    # Test workers (pytest -n) prepare the same trees at the same time.
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _prepare(name, src)


def _prepare(name, src):
    dest = CACHE / name
    stamp = dest / ".built"
    want = _fingerprint(src)
    if not stamp.is_file() or stamp.read_text() != want:
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for part in PARTS:
            if (src / part).is_dir():
                shutil.copytree(src / part, dest / part, symlinks=True)
            elif (src / part).is_file():
                shutil.copy2(src / part, dest / part)
        for path in dest.rglob("*"):
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
        log = dest / "build.log"
        (dest / ".config").write_text("CONFIG_MACH_LINUX=y\n")
        _run(["make", "olddefconfig"], dest, log)
        _run(["make", "-j2"], dest, log)
        # Upstream's klippy builds its C helper at first start, the U1
        # fork never does: build it here for both.
        if (dest / "klippy" / "chelper" / "Makefile").is_file():
            _run(["make", "-C", "klippy/chelper"], dest, log)
        else:
            _build_chelper(dest)
        stamp.write_text(want)
    extras = dest / "klippy" / "extras"
    _link(MODULE, extras / "panda_breath.py")
    _link(PROBE, extras / "reactor_probe.py")
    return dest


def _build_chelper(dest):
    # klippy/chelper/__init__.py compiles c_helper.so when it is missing
    # or older than its sources; doing it here keeps it out of the tests.
    subprocess.run([sys.executable, "-c",
                    "import sys; sys.path.insert(0, 'klippy');"
                    " import chelper; chelper.get_ffi()"],
                   cwd=dest, check=True, capture_output=True)
