"""docs/safety.md's policy table, rendered from the module's TABLE.

`python -m tests.policy_table --write` puts it between the markers in
docs/safety.md; tests/module/test_policy.py fails when the two differ,
so the table in the docs is always the one the code follows."""
import argparse
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "safety.md")
MODULE = os.path.join(ROOT, "klipper", "extras", "panda_breath.py")
BEGIN = "<!-- policy table: written by python -m tests.policy_table --write -->"
END = "<!-- end of policy table -->"


def load_module(path=MODULE):
    spec = importlib.util.spec_from_file_location("panda_breath_table",
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render(pb):
    lines = ["| When | and | the device is told | row |",
             "|---|---|---|---|"]
    last = None
    for rule, kinds, when, told in pb.TABLE:
        event = " / ".join(pb.EVENTS[k.strip()] for k in kinds.split(","))
        shown = "" if event == last else event[0].upper() + event[1:]
        last = event
        lines.append("| %s | %s | %s | `%s` |"
                     % (shown, when, pb.TOLD[told], rule))
    return "\n".join(lines) + "\n"


def block(text):
    """The table in a docs text, between the markers."""
    start = text.index(BEGIN) + len(BEGIN)
    return text[start:text.index(END, start)].strip("\n") + "\n"


def write(doc=DOC, pb=None):
    pb = pb or load_module()
    with open(doc) as f:
        text = f.read()
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END, start)
    text = text[:start] + "\n\n" + render(pb) + "\n" + text[end:]
    with open(doc, "w") as f:
        f.write(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true",
                        help="write the table into docs/safety.md")
    args = parser.parse_args(argv)
    if args.write:
        write()
    else:
        sys.stdout.write(render(load_module()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
