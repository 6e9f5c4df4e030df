"""docs/development.md's line counts of the module and of the
`panda-breath` command, part by part, before the refactor of issue 19
(commit e97df4b) and in the tree now.

The module's parts are its banner comments (`# Device protocol` between
two rows of '#'), the command's its `# ---- name` comments; what comes
before the first is the head (docstring, imports, constants).  The old
column is read from git, so this needs a clone with history.
`python -m tests.linecount --doc` writes the tables between the markers
in docs/development.md; tests/test_linecount.py fails when they differ
from what this prints for the tree."""
import argparse
import ast
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "development.md")
BEGIN = "<!-- line counts: written by python -m tests.linecount --doc -->"
END = "<!-- end of line counts -->"
BEFORE = "e97df4b"
MODULE = "klipper/extras/panda_breath.py"
CLI = "package/panda-breath/panda-breath"
CLASS = "PandaBreath"
HEAD = "head (docstring, imports, constants)"
BANNER = "#" * 70
CLI_SECTION = re.compile(r"^# -{3,} (\S.*)$")


class MissingHistory(Exception):
    """The old version cannot be read from git."""


def old_text(path):
    """path as it was at BEFORE."""
    result = subprocess.run(
        ["git", "-C", ROOT, "show", "%s:%s" % (BEFORE, path)],
        capture_output=True, text=True)
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or ["git failed"])[0]
        raise MissingHistory(
            "commit %s (the module and the command before the refactor of "
            "issue 19) is not in this clone (%s): the line counts need the "
            "full history, e.g. git fetch --unshallow" % (BEFORE, why))
    return result.stdout


def new_text(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def module_parts(text):
    """[(part, lines)] of the module: its banner-comment parts, named by
    their title up to a colon."""
    lines = text.splitlines()
    starts = [i for i in range(len(lines) - 2) if lines[i] == BANNER
              and lines[i + 2] == BANNER and lines[i + 1].startswith("# ")]
    return _split(lines, [(i, lines[i + 1][2:].split(":")[0])
                          for i in starts])


def cli_parts(text):
    """[(part, lines)] of the command: its `# ---- name` sections."""
    lines = text.splitlines()
    return _split(lines, [(i, CLI_SECTION.match(line).group(1))
                          for i, line in enumerate(lines)
                          if CLI_SECTION.match(line)])


def _split(lines, starts):
    bounds = [(0, HEAD)] + starts + [(len(lines), None)]
    return [(name, end - start) for (start, name), (end, _) in
            zip(bounds, bounds[1:], strict=False)]


def class_lines(text, name):
    """The lines of a top-level class, from its `class` line to its last
    statement."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node.end_lineno - node.lineno + 1
    return None


def table(title, old, new, extra=()):
    before, now = dict(old), dict(new)
    names = [n for n, _ in new] + [n for n, _ in old if n not in now]
    rows = ["| %s | before (%s) | now |" % (title, BEFORE), "|---|---|---|"]
    for name in names:
        rows.append("| %s | %s | %s |" % (
            name, before.get(name, "–"), now.get(name, "–")))
    rows.append("| **total** | **%d** | **%d** |" % (
        sum(before.values()), sum(now.values())))
    for name, was, is_ in extra:
        rows.append("| %s | %s | %s |" % (name, was or "–", is_ or "–"))
    return "\n".join(rows) + "\n"


def render():
    module_old, module_new = old_text(MODULE), new_text(MODULE)
    cli_old, cli_new = old_text(CLI), new_text(CLI)
    return (table("`%s` part" % (MODULE,), module_parts(module_old),
                  module_parts(module_new),
                  [("of which `class %s`" % (CLASS,),
                    class_lines(module_old, CLASS),
                    class_lines(module_new, CLASS))])
            + "\n" + table("`%s` part" % (CLI,), cli_parts(cli_old),
                           cli_parts(cli_new)))


def block(text):
    """The tables in a docs text, between the markers."""
    start = text.index(BEGIN) + len(BEGIN)
    return text[start:text.index(END, start)].strip("\n") + "\n"


def write(doc=DOC):
    with open(doc) as f:
        text = f.read()
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END, start)
    text = text[:start] + "\n\n" + render() + "\n" + text[end:]
    with open(doc, "w") as f:
        f.write(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--doc", action="store_true",
                        help="write the tables into docs/development.md")
    args = parser.parse_args(argv)
    try:
        if args.doc:
            write()
        else:
            sys.stdout.write(render())
    except MissingHistory as err:
        print("linecount: %s" % (err,), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
