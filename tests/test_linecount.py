"""docs/development.md's line counts are those of the tree, against the
commit before the refactor (read from git: a clone with history)."""
import pathlib

import pytest

from tests import linecount

DOC = pathlib.Path(linecount.DOC)


def test_the_line_counts_in_the_docs_are_the_trees():
    try:
        rendered = linecount.render()
    except linecount.MissingHistory as err:
        pytest.fail(str(err))
    assert linecount.block(DOC.read_text()) == rendered, \
        "docs/development.md is out of date: python -m tests.linecount --doc"


def test_parts_are_counted_from_their_banners():
    bar = linecount.BANNER
    text = "\n".join(["import x", "", bar, "# Device protocol", bar, "a",
                      "", bar, "# Link: one connection", bar, "b",
                      "class PandaBreath:", "    def f(self):",
                      "        pass", "", "# tail"]) + "\n"
    assert linecount.module_parts(text) == [
        (linecount.HEAD, 2), ("Device protocol", 5), ("Link", 9)]
    assert linecount.class_lines(text, "PandaBreath") == 3
    cli = "#!/usr/bin/env python3\n# ---- protocol\nx\n\n# ---- config\ny\n"
    assert linecount.cli_parts(cli) == [
        (linecount.HEAD, 1), ("protocol", 3), ("config", 2)]


def test_a_clone_without_the_old_commit_is_told_so(monkeypatch, capsys):
    monkeypatch.setattr(linecount, "BEFORE", "0" * 40)
    with pytest.raises(linecount.MissingHistory,
                       match="is not in this clone .*git fetch --unshallow"):
        linecount.render()
    assert linecount.main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("linecount: commit 0000") and err.count("\n") == 1
