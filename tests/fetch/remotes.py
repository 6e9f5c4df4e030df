"""Local git remotes for the fetch of the real parts, and a lone clone.

These machines cannot reach GitHub, so each pinned repository gets a bare
stand-in remote here, made of the real part's own files: the Klipper
trees realparts found (../shared, a variable or the cache), opkg-lede and
libubox from ../shared/opkg/src's tarballs (or the sources realparts
fetched), and an Entware-shaped repository holding Entware's opkg patches
at package/system/opkg/patches.  Their commits are new, so the tests pass
them as PANDA_<REPO>_REF beside PANDA_<REPO>_URL.  Each remote also holds
a file outside what the fetch should take (`not-fetched/`)."""
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import realparts

AUTHOR = ["-c", "user.name=panda-breath tests",
          "-c", "user.email=tests@panda-breath.invalid"]
SOURCES = realparts.ROOT.parent / "shared" / "opkg" / "src"
SAFE = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *AUTHOR, *args],
                          check=True, capture_output=True, text=True
                          ).stdout.strip()


def bare_remote(work, bare):
    """Commit the folder work and serve it as the bare repository bare
    (partial fetches allowed, as on GitHub); its commit."""
    (work / "not-fetched").mkdir(exist_ok=True)
    (work / "not-fetched" / "big.txt").write_text("x" * 100000)
    git(work, "init", "-q")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "the real part's files")
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)],
                   check=True, capture_output=True)
    git(bare, "config", "uploadpack.allowFilter", "true")
    return git(bare, "rev-parse", "HEAD")


def copy_tree(src, dest):
    shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.pyc", "*.o", "out", ".config"))


def opkg_sources(tmp):
    """{key: folder} of opkg-lede, libubox and Entware's patches."""
    if SOURCES.is_dir():
        found = {}
        for key in ("opkg-lede", "libubox"):
            tarball = next(SOURCES.glob(key + "-*.tar.gz"))
            with tarfile.open(tarball) as t:
                t.extractall(tmp / "x", **SAFE)
            found[key] = tmp / "x" / tarball.name[:-len(".tar.gz")]
        found["patches"] = SOURCES / "patches"
        return found
    # No ../shared: the sources realparts fetches at the pins.
    try:
        sources, patches = realparts.parts().opkg_sources()
    except realparts.Unavailable as e:
        pytest.fail("opkg's sources unavailable for fetch: %s; or skip it"
                    " with PANDA_SKIP=fetch" % (e,), pytrace=False)
    return {"opkg-lede": Path(sources["opkg-lede"]["path"]),
            "libubox": Path(sources["libubox"]["path"]),
            "patches": patches[0].parent}


def make_remotes(tmp):
    """{PANDA_<REPO>_URL / _REF: value} of local remotes made in tmp."""
    env = {}

    def serve(key, work):
        repo = realparts.REPOS[key].key
        bare = tmp / (key + ".git")
        env["PANDA_%s_REF" % repo] = bare_remote(work, bare)
        env["PANDA_%s_URL" % repo] = "file://%s" % (bare,)

    for name in ("klipper-upstream", "klipper-u1"):
        work = tmp / "work" / name
        copy_tree(realparts.need("fetch", name), work)
        serve(name, work)
    sources = opkg_sources(tmp)
    for key in ("opkg-lede", "libubox"):
        work = tmp / "work" / key
        copy_tree(sources[key], work)
        serve(key, work)
    work = tmp / "work" / "entware"
    patches = work / realparts.ENTWARE_PATCHES
    patches.mkdir(parents=True)
    for patch in sorted(Path(sources["patches"]).glob("*.patch")):
        shutil.copy(patch, patches / patch.name)
    (work / "README.md").write_text("Entware, the parts the fetch uses\n")
    serve("entware", work)
    return env


def clean_env(**extra):
    """The environment with no PANDA_* variable (none of the user's paths,
    skips or remotes), plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PANDA_")}
    env.update(extra)
    return env


def lone_clone(parent):
    """A clone of this working tree (what git tracks and what is new,
    committed) at parent/panda-breath, with nothing beside it, sharing
    this checkout's .venv."""
    parent.mkdir(parents=True, exist_ok=True)
    clone = parent / "panda-breath"
    files = subprocess.run(
        ["git", "-C", str(realparts.ROOT), "ls-files", "-z", "-c", "-o",
         "--exclude-standard"], check=True, capture_output=True
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = realparts.ROOT / rel
        if src.is_file() or src.is_symlink():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / rel, follow_symlinks=False)
    git(clone, "init", "-q")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "the working tree")
    (clone / ".venv").symlink_to(realparts.ROOT / ".venv")
    assert sorted(p.name for p in parent.iterdir()) == ["panda-breath"]
    return clone
