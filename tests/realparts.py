"""The real parts the tests run, where each comes from, and which test
layers need them.

Each part is looked up in this order, and the first that has it wins:

1. its variable (PANDA_KLIPPER_UPSTREAM, PANDA_KLIPPER_U1, PANDA_OPKG,
   PANDA_OPKG_AARCH64, PANDA_MOONRAKER): the user's choice, nothing else
   is tried;
2. ../shared beside the checkout (the project's build machines);
3. .cache/parts/ (.cache/moonraker for Moonraker): fetched here at the
   commits pinned below, the ones the project is tested against.  Klipper
   (upstream and the Snapmaker U1 fork) by a shallow git fetch of what
   klippy and its Linux host MCU are built from; opkg from opkg-lede,
   libubox and Entware's opkg patches, each fetched the same way, built
   static as ../shared/opkg/build.sh builds it; Moonraker with pip into a
   virtual environment of its own.  A second run reuses them.

`PANDA_<REPO>_URL` and `PANDA_<REPO>_REF` (REPO: KLIPPER_UPSTREAM,
KLIPPER_U1, OPKG_LEDE, LIBUBOX, ENTWARE) fetch from elsewhere, e.g. a
local mirror.  A part that none of these provides makes every layer that
needs it fail, with one line naming the layers and how to provide it;
`PANDA_SKIP=<layer>,...` skips layers on purpose.

    python -m tests.realparts prepare [--part NAME ...]
    python -m tests.realparts debs        # Debian packages prepare needs
    python -m tests.realparts describe [--json]

Standard library only: the QEMU stage runs it on the host's python3.
"""
import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Repo:
    """A git repository at a pinned commit; only `sparse` folders are
    fetched when given (top-level files always are)."""

    def __init__(self, key, url, ref, sparse=()):
        self.key, self.url, self.ref, self.sparse = key, url, ref, sparse


# What klippy and its Linux host MCU are built from (as ../shared/klipper
# holds them: klippy/, src/, scripts/, lib/kconfiglib/ and the top files).
KLIPPER_SPARSE = ("klippy", "src", "scripts", "lib/kconfiglib")
ENTWARE_PATCHES = "package/system/opkg/patches"

# The commits the project is tested against (../shared/klipper/README.md,
# ../shared/opkg/README.md).
REPOS = {
    "klipper-upstream": Repo(
        "KLIPPER_UPSTREAM", "https://github.com/Klipper3d/klipper.git",
        "84104bbbd7625d28b4eaaad83f4562972460ecd9", KLIPPER_SPARSE),
    "klipper-u1": Repo(
        "KLIPPER_U1", "https://github.com/Snapmaker/u1-klipper.git",
        "a073ed5c2b047ddecb890ba0109ef590099292c1", KLIPPER_SPARSE),
    "opkg-lede": Repo(
        "OPKG_LEDE", "https://github.com/openwrt/opkg-lede.git",
        "38eccbb1fd694d4798ac1baf88f9ba83d1eac616"),
    "libubox": Repo(
        "LIBUBOX", "https://github.com/openwrt/libubox.git",
        "1aa36ee774c8db4d7a396903e0d2e1fb79ee8bf1"),
    "entware": Repo(
        "ENTWARE", "https://github.com/Entware/Entware.git",
        "c0f0eccc912163b9bd73d6fe56769d1c9e6e07b0", (ENTWARE_PATCHES,)),
}

# opkg's build (../shared/opkg/build.sh): Entware's paths and its
# architecture name, so the x86_64 binary installs the U1's packages too.
OPKG_TARGETS = {
    "x86_64": ("x86_64-linux-gnu", "gcc", []),
    "aarch64": ("aarch64-linux-gnu", "aarch64-linux-gnu-gcc",
                ["-DCMAKE_SYSTEM_NAME=Linux",
                 "-DCMAKE_SYSTEM_PROCESSOR=aarch64"]),
}
OPKG_CMAKE = [
    "-DSTATIC=ON", "-DSTATIC_UBOX=ON", "-DBUILD_TESTS=OFF",
    "-DHOST_CPU=aarch64-3.10", "-DLOCK_FILE=/opt/tmp/opkg.lock",
    "-DPATH_SPEC=/opt/usr/sbin:/opt/usr/bin:/opt/sbin:/opt/bin:/usr/sbin"
    ":/usr/bin:/sbin:/bin"]
OPKG_VERSION_RE = re.compile(rb"[0-9a-f]{40} \(\d{4}-\d\d-\d\d\)")
MOONRAKER_REQUIREMENTS = "tests/realklipper/moonraker-requirements.txt"

# Debian packages a fetch or build needs (build.sh installs them).
GIT_DEBS = ["git", "ca-certificates"]
OPKG_DEBS = {"x86_64": ["gcc", "libc6-dev", "make", "cmake", "pkg-config",
                        "patch", "libjson-c-dev"],
             "aarch64": ["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross",
                         "make", "cmake", "pkg-config", "patch",
                         "libjson-c-dev"]}
MOONRAKER_DEBS = ["python3-venv", "libsodium23"]


class Part:
    def __init__(self, name, title, var, what, shared=None):
        self.name, self.title, self.var, self.what = name, title, var, what
        self.shared = shared


PARTS = {p.name: p for p in (
    Part("klipper-upstream", "real Klipper (upstream)",
         "PANDA_KLIPPER_UPSTREAM", "a Klipper checkout", "klipper/upstream"),
    Part("klipper-u1", "real Klipper (the Snapmaker U1 fork)",
         "PANDA_KLIPPER_U1", "a checkout of Snapmaker's u1-klipper",
         "klipper/u1"),
    Part("opkg", "the real opkg (x86_64)", "PANDA_OPKG",
         "an opkg-lede binary", "opkg/x86_64/opkg"),
    Part("opkg-aarch64", "the real opkg (aarch64)", "PANDA_OPKG_AARCH64",
         "an aarch64 opkg-lede binary", "opkg/aarch64/opkg"),
    Part("moonraker", "real Moonraker", "PANDA_MOONRAKER",
         "a moonraker command"),
)}

# The layers PANDA_SKIP names: {layer: (what it is, parts it needs)}.
# "klipper" and "safety" run in both trees; klipper-upstream and
# klipper-u1 skip one tree of the two.
TWO_TREES = ("klipper", "safety")
# A layer that is part of another: skipping the other skips it too.
PARENT = {"qemu-opkg": "qemu"}
LAYERS = {
    "klipper": ("the module in real Klipper (tests/realklipper, the CLI"
                " tests that start Klipper), both trees",
                ("klipper-upstream", "klipper-u1")),
    "klipper-upstream": ("the upstream half of klipper and safety", ()),
    "klipper-u1": ("the Snapmaker U1 half of klipper and safety", ()),
    "safety": ("the safety state machine in real Klipper (tests/safety),"
               " both trees", ("klipper-upstream", "klipper-u1")),
    "docs-config": ("the docs' config snippets in real Klipper"
                    " (tests/docs)", ("klipper-upstream",)),
    "install-sh": ("install.sh on a Klipper host"
                   " (tests/package/test_install_sh.py)",
                   ("klipper-upstream",)),
    "bench": ("the bench and soak smoke tests (tests/bench)",
              ("klipper-upstream",)),
    "opkg": ("the packages in the real opkg (tests/package)", ("opkg",)),
    "moonraker": ("what Fluidd and Mainsail see, through real Moonraker",
                  ("moonraker",)),
    "qemu": ("the aarch64 QEMU stage and tests/qemu's guest boots",
             ("klipper-u1",)),
    "qemu-opkg": ("the QEMU stage's opkg install path", ("opkg-aarch64",)),
    "fetch": ("the fetch of every part into a lone clone, from local git"
              " remotes made of these parts (tests/fetch)",
              ("klipper-upstream", "klipper-u1")),
}


class Unavailable(Exception):
    """A real part none of the sources provides; the message is one line
    naming the layers that need it and how to provide it; `short` says
    the same without the layers (for the bench, which PANDA_SKIP does not
    concern)."""

    def __init__(self, message, part=None, short=None):
        super().__init__(message)
        self.part = part
        self.short = short or message


class BadSkip(Exception):
    pass


def git_ok(*args, cwd=None, timeout=600):
    """Run git; its output, or a CalledProcessError."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true",
               LC_ALL="C")
    return subprocess.run(
        ["git", "-c", "advice.detachedHead=false",
         "-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=60",
         *args], cwd=cwd, env=env, check=True, capture_output=True,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL).stdout


def last_line(text):
    """The line of a tool's output that says what went wrong."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    for line in lines:
        if line.lower().startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else "no output"


def why(e):
    """One line saying why a command failed."""
    if isinstance(e, subprocess.CalledProcessError):
        return last_line(e.stderr or e.stdout)
    if isinstance(e, subprocess.TimeoutExpired):
        return "no answer in %d s" % (e.timeout,)
    if isinstance(e, FileNotFoundError):
        return "%s is not installed" % (e.filename,)
    return str(e) or type(e).__name__


@contextlib.contextmanager
def locked(path):
    """One process at a time (pytest workers, the safety runner's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class Found:
    """Where a part is: path, origin ("$VAR", "../shared", "fetched") and
    what to say about its version."""

    def __init__(self, name, path, origin):
        self.name, self.path, self.origin = name, Path(path), origin


class Parts:
    """The parts of one checkout (root) under one environment (env)."""

    def __init__(self, root=ROOT, env=None):
        self.root = Path(root)
        self.env = os.environ if env is None else env
        self.shared = self.root.parent / "shared"
        self.cache = self.root / ".cache" / "parts"
        self.moonraker_dir = self.root / ".cache" / "moonraker"
        self._found, self._failed = {}, {}
        self.skip = self.parse_skip()

    # --- what is skipped, what is needed ---------------------------------

    def parse_skip(self):
        raw = self.env.get("PANDA_SKIP", "")
        names = [n.strip() for n in raw.split(",") if n.strip()]
        unknown = [n for n in names if n not in LAYERS]
        if unknown:
            raise BadSkip("PANDA_SKIP: unknown layer %s (layers: %s)" % (
                ", ".join(repr(n) for n in unknown), ", ".join(LAYERS)))
        return names

    def skip_reason(self, layer, tree=None):
        """Why layer (in tree) is skipped on purpose, or None."""
        for name in (layer, PARENT.get(layer)):
            if name in self.skip:
                return "%s skipped on purpose (PANDA_SKIP=%s)" % (
                    layer, ",".join(self.skip))
        if tree and layer in TWO_TREES and "klipper-%s" % tree in self.skip:
            return "%s in %s skipped on purpose (PANDA_SKIP=%s)" % (
                layer, tree, ",".join(self.skip))
        return None

    def users(self, part):
        """The layers that run and need part, and the PANDA_SKIP names
        that would skip them: ([layer], [skip name])."""
        layers, skips = [], []
        for layer, (_, needs) in LAYERS.items():
            if part not in needs or layer in self.skip \
                    or PARENT.get(layer) in self.skip:
                continue
            if layer in TWO_TREES:
                tree = part.split("-", 1)[1]
                if "klipper-%s" % tree in self.skip:
                    continue
                if "klipper-%s" % tree not in skips:
                    skips.append("klipper-%s" % tree)
            else:
                skips.append(layer)
            layers.append(layer)
        return layers, skips

    def needed(self):
        """The parts some layer that is not skipped needs, in order."""
        return [p for p in PARTS if self.users(p)[0]]

    def unavailable(self, name, reason):
        part = PARTS[name]
        layers, skips = self.users(name)
        if layers:
            whose = " for %s" % (", ".join(layers),)
            skip = ", or skip %s with PANDA_SKIP=%s" % (
                "it" if len(layers) == 1 else "them", ",".join(skips))
        else:
            whose = skip = ""
        short = "%s unavailable: %s; set %s to %s" % (
            part.title, reason, part.var, part.what)
        return Unavailable("%s unavailable%s: %s; set %s to %s%s" % (
            part.title, whose, reason, part.var, part.what, skip), name,
            short)

    # --- finding and fetching ---------------------------------------------

    def locate(self, name, fetch=True):
        """A Found for part `name`, fetching or building it when no
        variable, ../shared or the cache has it; Unavailable otherwise."""
        if name in self._found:
            return self._found[name]
        if name in self._failed:
            raise self._failed[name]
        try:
            found = self._locate(name, fetch)
        except Unavailable as e:
            if fetch:   # a look without fetching is no verdict
                self._failed[name] = e
            raise
        self._found[name] = found
        return found

    def _locate(self, name, fetch):
        part = PARTS[name]
        chosen = self.env.get(part.var)
        if chosen:
            if not self.valid(name, Path(chosen)):
                raise self.unavailable(name, "%s=%s is not %s" % (
                    part.var, chosen, part.what))
            return Found(name, Path(chosen), "$" + part.var)
        if part.shared and self.valid(name, self.shared / part.shared):
            return Found(name, self.shared / part.shared, "../shared")
        if self.cached(name):
            return Found(name, self.cache_path(name), "fetched")
        if not fetch:
            raise self.unavailable(name, "not fetched yet (./build.sh test"
                                   " fetches it)")
        with locked(self.cache / (".lock-" + name)):
            if not self.cached(name):
                try:
                    self.fetch(name)
                except Unavailable as e:
                    raise self.unavailable(name, str(e)) from None
        return Found(name, self.cache_path(name), "fetched")

    def valid(self, name, path):
        if name.startswith("klipper-"):
            return (path / "klippy" / "klippy.py").is_file()
        return path.is_file() and os.access(path, os.X_OK)

    def cache_path(self, name):
        if name.startswith("klipper-"):
            return self.cache / name
        if name == "moonraker":
            return self.moonraker_dir / "bin" / "moonraker"
        return self.cache / name / "opkg"

    def stamp(self, name):
        return self.cache / (name + ".json")

    def read_stamp(self, name):
        try:
            return json.loads(self.stamp(name).read_text())
        except (OSError, ValueError):
            return None

    def cached(self, name):
        """Whether the cache holds part name as this checkout wants it."""
        if name == "moonraker":
            stamp = self.moonraker_dir / ".requirements.sha256"
            return (self.valid(name, self.cache_path(name))
                    and stamp.is_file()
                    and stamp.read_text().strip() == self.requirements_sha())
        stamp = self.read_stamp(name)
        return (stamp is not None and stamp.get("want") == self.want(name)
                and self.valid(name, self.cache_path(name)))

    def repo(self, key):
        """(url, ref) of a repository, with the variables' overrides."""
        repo = REPOS[key]
        return (self.env.get("PANDA_%s_URL" % repo.key) or repo.url,
                self.env.get("PANDA_%s_REF" % repo.key) or repo.ref)

    def want(self, name):
        """What a cached part must have been made from."""
        if name.startswith("klipper-"):
            return {"ref": self.repo(name)[1]}
        return {"sources": {k: self.repo(k)[1]
                            for k in ("opkg-lede", "libubox", "entware")},
                "builder": OPKG_CMAKE}

    def fetch(self, name):
        if name.startswith("klipper-"):
            self.fetch_tree(name)
        elif name == "moonraker":
            self.install_moonraker()
        else:
            self.build_opkg(name)

    def fetch_repo(self, key, dest):
        """Shallow-fetch repository key at its ref into dest (a plain
        folder, no .git); its stamp {url, ref, commit, date}."""
        url, ref = self.repo(key)
        sparse = REPOS[key].sparse
        say("fetching %s at %s from %s" % (key, ref[:12], url))
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            git_ok("init", "-q", cwd=tmp)
            git_ok("remote", "add", "origin", url, cwd=tmp)
            if sparse:
                git_ok("sparse-checkout", "set", "--cone", *sparse, cwd=tmp)
            # Blobs come with the checkout, and only those it needs.
            git_ok("fetch", "-q", "--depth", "1", "--filter=blob:none",
                   "origin", ref, cwd=tmp)
            git_ok("checkout", "-q", "FETCH_HEAD", cwd=tmp)
            commit = git_ok("rev-parse", "HEAD", cwd=tmp).strip()
            date = git_ok("log", "-1", "--format=%cs", "HEAD", cwd=tmp
                          ).strip()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired,
                OSError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise Unavailable("fetch of %s at %s failed (%s)" % (
                url, ref, why(e))) from None
        if re.fullmatch(r"[0-9a-f]{40}", ref) and commit != ref:
            shutil.rmtree(tmp, ignore_errors=True)
            raise Unavailable("%s gave commit %s for %s" % (url, commit, ref))
        shutil.rmtree(tmp / ".git")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        return {"url": url, "ref": ref, "commit": commit, "date": date}

    def fetch_tree(self, name):
        dest = self.cache_path(name)
        info = self.fetch_repo(name, dest)
        if not self.valid(name, dest):
            shutil.rmtree(dest, ignore_errors=True)
            raise Unavailable("%s at %s has no klippy/klippy.py" % (
                info["url"], info["ref"]))
        info["want"] = self.want(name)
        self.stamp(name).write_text(json.dumps(info, indent=1) + "\n")

    def opkg_sources(self):
        """opkg-lede, libubox and Entware's patches, fetched once for both
        architectures (under .cache/parts/src)."""
        with locked(self.cache / ".lock-src"):
            return self._opkg_sources()

    def _opkg_sources(self):
        sources = {}
        for key in ("opkg-lede", "libubox", "entware"):
            dest = self.cache / "src" / key
            stamp = self.cache / "src" / (key + ".json")
            ref = self.repo(key)[1]
            try:
                info = json.loads(stamp.read_text())
            except (OSError, ValueError):
                info = None
            if info is None or info.get("ref") != ref or not dest.is_dir():
                info = self.fetch_repo(key, dest)
                stamp.write_text(json.dumps(info, indent=1) + "\n")
            sources[key] = dict(info, path=str(dest))
        patches = sorted(Path(sources["entware"]["path"], ENTWARE_PATCHES
                              ).glob("*.patch"))
        if not patches:
            raise Unavailable("Entware at %s has no %s/*.patch" % (
                sources["entware"]["ref"], ENTWARE_PATCHES))
        return sources, patches

    def build_opkg(self, name):
        """opkg-lede with Entware's patches, static, as
        ../shared/opkg/build.sh builds it (the same bytes from the same
        sources and Debian 12 toolchain)."""
        arch = "aarch64" if name == "opkg-aarch64" else "x86_64"
        triplet, cc, cross = OPKG_TARGETS[arch]
        missing = [tool for tool in (cc, "cmake", "make", "patch",
                                     "pkg-config") if not shutil.which(tool)]
        if missing:
            raise Unavailable("building it needs %s (Debian: %s)" % (
                ", ".join(missing), " ".join(OPKG_DEBS[arch])))
        sources, patches = self.opkg_sources()
        opkg, ubox = sources["opkg-lede"], sources["libubox"]
        out = self.cache_path(name)
        say("building opkg for %s" % (arch,))
        with tempfile.TemporaryDirectory() as tmp:
            b = Path(tmp, arch)
            stage = b / "stage"
            (stage / "lib").mkdir(parents=True)
            (stage / "include" / "libubox").mkdir(parents=True)
            (b / "gccpic").mkdir()
            ubox_src = b / ("libubox-" + ubox["commit"])
            opkg_src = b / ("opkg-lede-" + opkg["commit"])
            shutil.copytree(ubox["path"], ubox_src, symlinks=True)
            shutil.copytree(opkg["path"], opkg_src, symlinks=True)
            # libubox's CMakeLists asks pkg-config for json-c and uses only
            # its include folder, the same for every architecture: the
            # host's json-c answers for both.
            env = dict(os.environ, PKG_CONFIG_LIBDIR="/usr/lib/%s/pkgconfig"
                       % (host_multiarch(),), LC_ALL="C")
            prefix = "-ffile-prefix-map=%s=." % (b,)
            log = []
            try:
                run_logged(["cmake", "-S", ubox_src, "-B", b / "ubox-build",
                            "-DCMAKE_C_COMPILER=" + cc, *cross,
                            "-DBUILD_LUA=OFF", "-DBUILD_EXAMPLES=OFF",
                            "-DCMAKE_C_FLAGS=" + prefix], env, log)
                run_logged(["make", "-C", b / "ubox-build", "-j%d" % jobs(),
                            "ubox-static"], env, log)
                shutil.copy(b / "ubox-build" / "libubox.a", stage / "lib")
                for header in ubox_src.glob("*.h"):
                    shutil.copy(header, stage / "include" / "libubox")
                for patch in patches:
                    run_logged(["patch", "-p1", "-i", patch], env, log,
                               cwd=opkg_src)
                # 900-static.patch links -lgcc_pic, which Debian does not
                # ship: point it at libgcc.a.
                libgcc = subprocess.run([cc, "-print-libgcc-file-name"],
                                        capture_output=True, text=True,
                                        check=True).stdout.strip()
                (b / "gccpic" / "libgcc_pic.a").symlink_to(libgcc)
                run_logged([
                    "cmake", "-S", opkg_src, "-B", opkg_src / "build",
                    "-DCMAKE_C_COMPILER=" + cc, *cross, *OPKG_CMAKE,
                    "-DVERSION=%s (%s)" % (opkg["commit"], opkg["date"]),
                    "-DCMAKE_C_FLAGS=%s -I%s -D_LARGEFILE_SOURCE"
                    " -D_LARGEFILE64_SOURCE -D_FILE_OFFSET_BITS=64"
                    % (prefix, stage / "include"),
                    "-DCMAKE_EXE_LINKER_FLAGS=-L%s" % (b / "gccpic",),
                    "-DCMAKE_PREFIX_PATH=%s" % (stage,)], env, log)
                run_logged(["make", "-C", opkg_src / "build",
                            "-j%d" % jobs()], env, log)
                out.parent.mkdir(parents=True, exist_ok=True)
                run_logged([cc[:-len("gcc")] + "strip", "-o", out,
                            opkg_src / "build" / "src" / "opkg-cl"], env, log)
            except (subprocess.CalledProcessError, OSError) as e:
                logfile = self.cache / (name + "-build.log")
                logfile.write_text("".join(log))
                raise Unavailable("building it failed (%s; see %s)" % (
                    why(e), logfile)) from None
        info = {"sources": {k: {f: v[f] for f in ("url", "ref", "commit",
                                                  "date")}
                            for k, v in sources.items()},
                "patches": [p.name for p in patches],
                "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
                "want": self.want(name)}
        self.stamp(name).write_text(json.dumps(info, indent=1) + "\n")

    def requirements_sha(self):
        return hashlib.sha256((self.root / MOONRAKER_REQUIREMENTS
                               ).read_bytes()).hexdigest()

    def install_moonraker(self):
        """Moonraker with its exact pins in a virtual environment of its
        own (its pins are not the project's): .cache/moonraker."""
        d = self.moonraker_dir
        say("setting up %s" % (d,))
        shutil.rmtree(d, ignore_errors=True)
        req = self.root / MOONRAKER_REQUIREMENTS
        try:
            subprocess.run(["python3", "-m", "venv", d], check=True,
                           capture_output=True, text=True)
            subprocess.run([d / "bin" / "python", "-m", "pip", "install",
                            "-q", "--disable-pip-version-check", "-r", req],
                           check=True, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=1800)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired,
                OSError) as e:
            shutil.rmtree(d, ignore_errors=True)
            raise Unavailable("pip install -r %s failed (%s)" % (
                MOONRAKER_REQUIREMENTS, why(e))) from None
        (d / ".requirements.sha256").write_text(self.requirements_sha()
                                                 + "\n")

    def debs(self, names=None):
        """Debian packages the parts (default: the needed ones) still to
        fetch or build need."""
        wanted = []
        for name in names or self.needed():
            try:
                self.locate(name, fetch=False)
                continue
            except Unavailable:
                pass
            if PARTS[name].var in self.env:
                continue   # the user's path: nothing to install for it
            if name.startswith("klipper-"):
                wanted += GIT_DEBS
            elif name == "moonraker":
                wanted += MOONRAKER_DEBS
            else:
                arch = "aarch64" if name == "opkg-aarch64" else "x86_64"
                wanted += GIT_DEBS + OPKG_DEBS[arch]
        if "moonraker" in (names or self.needed()):
            wanted.append("libsodium23")   # Moonraker's libnacl loads it
        return list(dict.fromkeys(wanted))

    def prepare(self, names=None):
        """Find, fetch or build each part; [Unavailable] of those that
        could not be had."""
        failed = []
        for name in names or self.needed():
            try:
                self.locate(name)
            except Unavailable as e:
                failed.append(e)
        return failed

    # --- what was used ------------------------------------------------------

    def describe(self, name):
        """{part, title, origin, path, version} of a part found without
        fetching, or None."""
        try:
            found = self.locate(name, fetch=False)
        except Unavailable:
            return None
        return {"part": name, "title": PARTS[name].title,
                "origin": self.origin_text(found), "path": str(found.path),
                "version": self.version(found)}

    def origin_text(self, found):
        if found.origin != "fetched":
            return found.origin
        if found.name == "moonraker":
            return "pip, %s" % (MOONRAKER_REQUIREMENTS,)
        stamp = self.read_stamp(found.name) or {}
        if found.name.startswith("klipper-"):
            return "fetched from %s" % (stamp.get("url"),)
        sources = stamp.get("sources", {})
        return "built from %s" % (", ".join(
            "%s %s" % (k, v.get("commit", "?")[:12])
            for k, v in sources.items()),)

    def version(self, found):
        name, path = found.name, found.path
        if name.startswith("klipper-"):
            if found.origin == "fetched":
                stamp = self.read_stamp(name) or {}
                return "%s (%s)" % (stamp.get("commit"), stamp.get("date"))
            if found.origin == "../shared":
                return shared_klipper_commit(self.shared, name) or "unknown"
            try:
                return git_ok("rev-parse", "HEAD", cwd=path,
                              timeout=30).strip()
            except (subprocess.CalledProcessError, OSError,
                    subprocess.TimeoutExpired):
                return "unknown (not a git checkout)"
        if name == "moonraker":
            python = path.parent / "python"
            try:
                return subprocess.run(
                    [python, "-c", "import importlib.metadata as m;"
                     " print(m.version('moonraker'))"], capture_output=True,
                    text=True, check=True, timeout=60).stdout.strip()
            except (subprocess.CalledProcessError, OSError,
                    subprocess.TimeoutExpired):
                return "unknown"
        return opkg_version(path)


def shared_klipper_commit(shared, name):
    """The commit ../shared/klipper/README.md records for a tree."""
    folder = name.split("-", 1)[1]
    try:
        text = (shared / "klipper" / "README.md").read_text()
    except OSError:
        return None
    m = re.search(r"^\|\s*`%s/`.*?\b([0-9a-f]{40})\b(\s*\([0-9-]+\))?" % (
        re.escape(folder),), text, re.M)
    return (m.group(1) + (m.group(2) or "")) if m else None


def opkg_version(path):
    """What `opkg --version` says (read from the binary: the aarch64 one
    does not run here)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return "unknown"
    m = OPKG_VERSION_RE.search(data)
    return m.group(0).decode() if m else "unknown"


def host_multiarch():
    try:
        return subprocess.run(["gcc", "-dumpmachine"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "x86_64-linux-gnu"


def jobs():
    return max(1, min(os.cpu_count() or 1, 4))


def run_logged(cmd, env, log, cwd=None):
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd,
                          capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    log.append("$ %s\n%s%s" % (" ".join(map(str, cmd)), proc.stdout,
                               proc.stderr))
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd,
                                            proc.stdout, proc.stderr)


def say(text):
    print("parts: %s" % (text,), file=sys.stderr, flush=True)


# --- for pytest ----------------------------------------------------------

_parts = None


def parts():
    """The Parts of this checkout and environment, made once a process."""
    global _parts
    if _parts is None:
        _parts = Parts()
    return _parts


def need(layer, name=None, tree=None):
    """The path of part name for a test of layer: skipped when the layer
    is skipped on purpose (PANDA_SKIP), a one-line failure when the part
    cannot be had.  Without a name, only the skip."""
    import pytest
    try:
        p = parts()
    except BadSkip as e:
        pytest.fail(str(e), pytrace=False)
    reason = p.skip_reason(layer, tree)
    if reason:
        pytest.skip(reason)
    if name is None:
        return None
    try:
        return p.locate(name).path
    except Unavailable as e:
        pytest.fail(str(e), pytrace=False)


# --- command line ----------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m tests.realparts",
        description="Find, fetch or build the real parts the tests run.")
    sub = ap.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="fetch or build what is missing"
                          " (one line for each part that cannot be had)")
    debs = sub.add_parser("debs", help="print the Debian packages prepare"
                          " needs")
    for sp in (prep, debs):
        sp.add_argument("--part", action="append", choices=list(PARTS),
                        help="only this part (repeatable; default: every"
                        " part a layer that is not skipped needs)")
    desc = sub.add_parser("describe", help="the parts and their versions")
    desc.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        p = Parts()
    except BadSkip as e:
        print(e, file=sys.stderr)
        return 2
    if args.command == "debs":
        print(" ".join(p.debs(args.part)))
        return 0
    if args.command == "describe":
        found = [d for d in map(p.describe, PARTS) if d]
        if args.json:
            print(json.dumps({"skip": p.skip, "parts": found}, indent=1))
        else:
            for d in found:
                print("%s: %s (%s)" % (d["title"], d["version"],
                                       d["origin"]))
        return 0
    if p.skip:
        say("skipping on purpose (PANDA_SKIP): %s" % (", ".join(p.skip),))
    failed = p.prepare(args.part)
    for e in failed:
        print(e, file=sys.stderr)
    if not failed:
        for name in args.part or p.needed():
            d = p.describe(name)
            say("%s: %s (%s)" % (d["title"], d["version"], d["origin"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
