"""What ./build.sh leaves in dist/: reproducible packages, a feed opkg can
use, and clear failures on bad inputs."""
import gzip
import hashlib
import subprocess
import sys
import tarfile

import pytest
from pkgtools import CACHE, ROOT, Ipk, commit, git, make_checkout

from package import build, version, wheel


def feed_paragraphs(feed_dir):
    text = (feed_dir / "Packages").read_text()
    paragraphs = []
    for block in text.strip("\n").split("\n\n"):
        paragraphs.append(dict(line.split(": ", 1)
                               for line in block.splitlines()))
    return paragraphs


def test_rebuild_is_byte_identical(checkout, dist, tmp_path):
    build.build(checkout, tmp_path, CACHE)
    first = sorted(p.relative_to(dist) for p in dist.rglob("*")
                   if p.is_file())
    second = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")
                    if p.is_file())
    assert first == second
    for rel in first:
        assert (dist / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_every_member_has_the_last_commit_time(checkout, u1_ipks):
    stamp = version.source_date_epoch(checkout)
    for ipk in u1_ipks.values():
        for tar in (ipk.outer, ipk.data, ipk.control_tar):
            assert {m.mtime for m in tar.getmembers()} == {stamp}


def test_feed_lists_every_package_with_its_size_and_sha256(dist):
    feed = dist / "feed"
    paragraphs = feed_paragraphs(feed)
    assert sorted(p["Filename"] for p in paragraphs) == sorted(
        p.name for p in feed.glob("*.ipk"))
    for paragraph in paragraphs:
        data = (feed / paragraph["Filename"]).read_bytes()
        assert int(paragraph["Size"]) == len(data)
        assert paragraph["SHA256sum"] == hashlib.sha256(data).hexdigest()
        fields = Ipk(feed / paragraph["Filename"]).fields
        for key, value in fields.items():
            assert paragraph[key] == value


def test_packages_gz_is_packages(dist):
    feed = dist / "feed"
    raw = (feed / "Packages.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0"
    assert gzip.decompress(raw) == (feed / "Packages").read_bytes()


def test_u1_packages_in_dist_are_the_feed_ones(dist, u1_ipks):
    for ipk in u1_ipks.values():
        assert ipk.raw == (dist / "feed" / ipk.path.name).read_bytes()
        assert ipk.fields["Architecture"] == build.U1_ARCH


def test_overlay_tarball_carries_the_overlay_and_the_u1_packages(
        dist, u1_ipks):
    [tarball] = dist.glob("panda-breath-overlay-*.tar.gz")
    version_ = u1_ipks["panda-breath"].fields["Version"]
    assert tarball.name == f"panda-breath-overlay-{version_}.tar.gz"
    prefix = "overlays/" + build.OVERLAY
    assert gzip.decompress(tarball.read_bytes())[257:265] == b"ustar  \0"
    with tarfile.open(tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for ipk in u1_ipks.values():
            packed = tar.extractfile(f"{prefix}/packages/{ipk.path.name}")
            assert packed.read() == ipk.raw
        script = members[f"{prefix}/scripts/02-install-panda-breath.sh"]
        assert script.mode == 0o755
        assert f"{prefix}/root/usr/local/share/firmware-config/functions/" \
            "26_settings_snapmaker_components_chamber_heater_panda.yaml" \
            in members
        for member in members.values():
            assert (member.uid, member.gid) == (0, 0)
    committed = ROOT / "overlay" / build.OVERLAY
    assert not list(committed.rglob("*.ipk"))


def fresh_checkout(tmp_path):
    return make_checkout(tmp_path / "checkout")


def run_build(repo, dist, cache=CACHE, *args):
    return subprocess.run(
        [sys.executable, "-m", "package.build", "--dist", str(dist),
         "--cache", str(cache), *args],
        cwd=repo, capture_output=True, text=True, timeout=60)


def test_version_follows_git_tags(tmp_path):
    repo = fresh_checkout(tmp_path)
    untagged = version.package_version(repo)
    assert untagged.startswith("0.0.0+git1.")
    git(repo, "tag", "v1.2.3")
    assert version.package_version(repo) == "1.2.3"
    commit(repo)
    commit(repo)
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=7",
                          "HEAD"], capture_output=True, text=True).stdout
    assert version.package_version(repo) == f"1.2.3+git2.{sha.strip()}"


def test_build_prints_a_short_summary(tmp_path):
    repo = fresh_checkout(tmp_path)
    result = run_build(repo, tmp_path / "dist")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("wrote ") for line in
                                   lines)
    assert result.stderr == ""


def test_missing_module_fails_clearly(tmp_path):
    repo = fresh_checkout(tmp_path)
    (repo / "klipper" / "extras" / "panda_breath.py").unlink()
    result = run_build(repo, tmp_path / "dist")
    assert result.returncode == 1
    assert result.stderr.startswith("build: the Klipper module is missing")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "dist" / "feed").exists()


def test_wheel_with_wrong_hash_is_refused(tmp_path):
    repo = fresh_checkout(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    bad = (CACHE / wheel.WHEEL).read_bytes() + b"tampered"
    (cache / wheel.WHEEL).write_bytes(bad)
    result = run_build(repo, tmp_path / "dist", cache)
    assert result.returncode == 1
    assert "does not match the pinned" in result.stderr
    assert "Traceback" not in result.stderr


def test_maintainer_script_without_shebang_is_refused(tmp_path):
    repo = fresh_checkout(tmp_path)
    postinst = repo / "package" / "panda-breath" / "postinst"
    postinst.write_text(postinst.read_text().split("\n", 1)[1])
    result = run_build(repo, tmp_path / "dist")
    assert result.returncode == 1
    assert "shebang" in result.stderr


@pytest.mark.parametrize("bad", ["abc", "-5"])
def test_bad_source_date_epoch_is_refused(tmp_path, monkeypatch, bad):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", bad)
    with pytest.raises(version.VersionError, match="SOURCE_DATE_EPOCH"):
        version.source_date_epoch(ROOT)


def test_set_version_builds_the_packages_with_those_versions(tmp_path):
    repo = fresh_checkout(tmp_path)
    result = run_build(repo, tmp_path / "dist", CACHE, "--set-version",
                       "panda-breath=2.0.0~rc1", "--set-version",
                       "python3-websocket=1.9.2-7")
    assert result.returncode == 0, result.stderr
    versions = {Ipk(p).fields["Package"]: Ipk(p).fields["Version"]
                for p in (tmp_path / "dist").glob("*.ipk")}
    assert versions == {"panda-breath": "2.0.0~rc1",
                        "python3-websocket": "1.9.2-7"}
    assert (tmp_path / "dist" / "panda-breath-overlay-2.0.0~rc1.tar.gz"
            ).is_file()


@pytest.mark.parametrize("arg, says", [
    ("panda-breath=v1.0", "'v1.0' is not an opkg version for panda-breath"),
    ("panda-breath=1.0 beta", "is not an opkg version"),
    ("klipper=1.0", "no package 'klipper' to set the version of"),
    ("panda-breath", "--set-version wants PACKAGE=VERSION"),
])
def test_bad_set_version_is_refused(tmp_path, arg, says):
    repo = fresh_checkout(tmp_path)
    result = run_build(repo, tmp_path / "dist", CACHE, "--set-version", arg)
    assert result.returncode != 0
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "dist").exists()
