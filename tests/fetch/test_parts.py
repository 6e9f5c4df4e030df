"""Where each real part is looked for, which layers need it, and what a
missing one or a skipped layer says (realparts.Parts on a made-up
checkout; nothing is fetched here)."""
import pytest
import realparts
from realparts import BadSkip, Parts, Unavailable

README = """\
| folder | what | commit |
|---|---|---|
| `upstream/` | Klipper3d/klipper `master` | {up} (2026-08-07) |
| `u1/` | Snapmaker's U1 fork | {u1} (2026-07-03) |
"""


def klipper(path):
    (path / "klippy").mkdir(parents=True)
    (path / "klippy" / "klippy.py").write_text("# klippy\n")
    return path


def checkout(tmp_path, shared=True):
    """tmp/work/panda-breath, with ../shared holding both trees."""
    root = tmp_path / "work" / "panda-breath"
    root.mkdir(parents=True)
    if shared:
        for name in ("upstream", "u1"):
            klipper(tmp_path / "work" / "shared" / "klipper" / name)
        (tmp_path / "work" / "shared" / "klipper" / "README.md").write_text(
            README.format(up="a" * 40, u1="b" * 40))
    return root


def test_shared_is_used_and_its_recorded_commit_named(tmp_path):
    parts = Parts(checkout(tmp_path), env={})
    found = parts.describe("klipper-u1")
    assert found["origin"] == "../shared"
    assert found["version"] == "b" * 40 + " (2026-07-03)"
    assert found["path"] == str(tmp_path / "work/shared/klipper/u1")


def test_a_variable_comes_before_shared(tmp_path):
    mine = klipper(tmp_path / "mine")
    parts = Parts(checkout(tmp_path),
                  env={"PANDA_KLIPPER_UPSTREAM": str(mine)})
    found = parts.locate("klipper-upstream")
    assert (found.path, found.origin) == (mine, "$PANDA_KLIPPER_UPSTREAM")
    assert parts.describe("klipper-upstream")["version"] == \
        "unknown (not a git checkout)"


def test_a_variable_naming_no_tree_is_not_passed_over(tmp_path):
    parts = Parts(checkout(tmp_path),
                  env={"PANDA_KLIPPER_UPSTREAM": str(tmp_path / "typo")})
    with pytest.raises(Unavailable) as e:
        parts.locate("klipper-upstream")
    assert str(e.value) == (
        "real Klipper (upstream) unavailable for klipper, safety,"
        " docs-config, install-sh, bench, fetch: PANDA_KLIPPER_UPSTREAM=%s"
        " is not a Klipper checkout; set PANDA_KLIPPER_UPSTREAM to a Klipper"
        " checkout, or skip them with PANDA_SKIP=klipper-upstream,"
        "docs-config,install-sh,bench,fetch" % (tmp_path / "typo",))
    assert e.value.part == "klipper-upstream"


def test_without_shared_the_cache_is_next(tmp_path):
    parts = Parts(checkout(tmp_path, shared=False), env={})
    with pytest.raises(Unavailable, match="not fetched yet"):
        parts.locate("opkg", fetch=False)
    # a look without fetching is not remembered as a failure
    assert "opkg" not in parts._failed
    assert parts.debs() == [
        "git", "ca-certificates", "gcc", "libc6-dev", "make", "cmake",
        "pkg-config", "patch", "libjson-c-dev", "gcc-aarch64-linux-gnu",
        "libc6-dev-arm64-cross", "python3-venv", "libsodium23"]


def test_one_tree_skipped_leaves_its_other_users():
    parts = Parts(env={"PANDA_SKIP": "klipper-u1"})
    assert parts.skip_reason("klipper", "u1") == \
        "klipper in u1 skipped on purpose (PANDA_SKIP=klipper-u1)"
    assert parts.skip_reason("safety", "u1")
    assert parts.skip_reason("klipper", "upstream") is None
    assert parts.skip_reason("qemu") is None
    assert parts.users("klipper-u1") == (["qemu", "fetch"],
                                         ["qemu", "fetch"])
    assert parts.users("klipper-upstream")[0] == [
        "klipper", "safety", "docs-config", "install-sh", "bench", "fetch"]


def test_skipping_every_user_of_a_part_means_it_is_not_needed():
    parts = Parts(env={"PANDA_SKIP": "qemu, klipper-u1,fetch"})
    assert parts.skip == ["qemu", "klipper-u1", "fetch"]
    assert "klipper-u1" not in parts.needed()
    # the opkg path is part of the stage
    assert "opkg-aarch64" not in parts.needed()
    assert parts.skip_reason("qemu-opkg") == \
        "qemu-opkg skipped on purpose (PANDA_SKIP=qemu,klipper-u1,fetch)"
    assert parts.needed() == ["klipper-upstream", "opkg", "moonraker"]


def test_unknown_layer_is_refused():
    with pytest.raises(BadSkip) as e:
        Parts(env={"PANDA_SKIP": "klipper,kliper"})
    assert str(e.value).startswith("PANDA_SKIP: unknown layer 'kliper' "
                                   "(layers: klipper, klipper-upstream,")


def test_the_variables_override_remote_and_commit():
    parts = Parts(env={"PANDA_ENTWARE_URL": "file:///x.git",
                       "PANDA_ENTWARE_REF": "main"})
    assert parts.repo("entware") == ("file:///x.git", "main")
    assert parts.repo("libubox") == (
        "https://github.com/openwrt/libubox.git",
        "1aa36ee774c8db4d7a396903e0d2e1fb79ee8bf1")


def test_a_test_of_a_skipped_layer_is_skipped(monkeypatch):
    monkeypatch.setattr(realparts, "_parts",
                        Parts(env={"PANDA_SKIP": "docs-config"}))
    with pytest.raises(pytest.skip.Exception, match="docs-config skipped"
                       r" on purpose \(PANDA_SKIP=docs-config\)"):
        realparts.need("docs-config", "klipper-upstream")


def test_a_test_whose_part_is_missing_fails_with_one_line(tmp_path,
                                                          monkeypatch):
    parts = Parts(checkout(tmp_path), env={
        "PANDA_OPKG": str(tmp_path / "no-opkg")})
    monkeypatch.setattr(realparts, "_parts", parts)
    with pytest.raises(pytest.fail.Exception) as e:
        realparts.need("opkg", "opkg")
    assert e.value.pytrace is False
    assert str(e.value) == (
        "the real opkg (x86_64) unavailable for opkg: PANDA_OPKG=%s is not"
        " an opkg-lede binary; set PANDA_OPKG to an opkg-lede binary, or"
        " skip it with PANDA_SKIP=opkg" % (tmp_path / "no-opkg",))


def test_the_docs_name_the_pinned_commits():
    text = (realparts.ROOT / "docs" / "development.md").read_text()
    for repo in realparts.REPOS.values():
        assert "`%s`" % (repo.ref[:8],) in text, repo.url
