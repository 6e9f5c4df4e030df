#!/usr/bin/env python3
"""The Extended Firmware's /usr/local/bin/extended-config.py, as the
Firmware Config setting uses it, for running the setting's commands
here.  The firmware's own file cannot be shipped or fetched in tests;
this one is written from its observed behaviour (02-firmware-config,
read in the firmware repository), which the setting relies on:

- a section's first block runs from its header line (which starts with
  '[') to the first blank line or the next header;
- add FILE SECTION KEY VALUE replaces `KEY:` in that block with
  `KEY: VALUE`, or inserts it at the end of the block (a missing
  section is appended);
- comment FILE NAME puts '# ' before each uncommented line from the
  header `[NAME]` to the first blank line; uncomment FILE NAME strips
  the leading '#' (and spaces) of each comment line from `# [NAME]` to
  the first blank line;
- get FILE SECTION KEY [DEFAULT] prints the value as Python's
  configparser reads it, and fails without a default;
- has FILE SECTION prints yes (exit 0) or no (exit 1)."""
import configparser
import re
import sys


def lines_of(path):
    try:
        with open(path) as f:
            return f.readlines()
    except FileNotFoundError:
        sys.exit(f"ERROR: Config file '{path}' does not exist")


def write(path, lines):
    with open(path, "w") as f:
        f.writelines(lines)


def header(name):
    return re.compile(r"\[\s*" + re.escape(name) + r"\s*\]\s*$")


def add(path, section, key, value):
    lines = lines_of(path)
    any_header = re.compile(r"\s*\[.*\]\s*$")
    mine, option = header(section), re.compile(
        r"\s*" + re.escape(key) + r"\s*[=:]")
    inside, done, at = False, False, len(lines)
    for i, line in enumerate(lines):
        if inside and (any_header.match(line) or not line.strip()):
            at = i
            break
        if mine.match(line):
            inside = True
        elif inside and option.match(line):
            if done:
                sys.exit(f"ERROR: Duplicate key '{key}' found in section "
                         f"'{section}'")
            lines[i] = f"{key}: {value}\n"
            done = True
    if not inside:
        lines[at:at] = (["\n"] if lines else []) + [f"[{section}]\n"]
        at = len(lines)
    if not done:
        lines.insert(at, f"{key}: {value}\n")
    write(path, lines)
    print(f"[{section}] {key}: {value}")


def comment(path, name):
    lines = lines_of(path)
    mine, inside = header(name), False
    for i, line in enumerate(lines):
        inside = inside or bool(mine.match(line))
        if not inside:
            continue
        if not line.strip():
            break
        if not line.lstrip().startswith("#"):
            lines[i] = "# " + line
    write(path, lines)
    print("OK" if inside else "No section found to comment")


def uncomment(path, name):
    lines = lines_of(path)
    mine = re.compile(r"#\s*\[" + re.escape(name) + r"\]\s*$")
    lead, inside = re.compile(r"#\s*"), False
    for i, line in enumerate(lines):
        inside = inside or bool(mine.match(line))
        if not inside:
            continue
        if lead.match(line):
            lines[i] = lead.sub("", line, count=1)
        elif not line.strip():
            break
    write(path, lines)
    print("OK" if inside else "No section found to uncomment")


def get(path, section, key, default=None):
    parser = configparser.ConfigParser()
    parser.read(path)
    if default is None:
        value = parser[section][key]     # KeyError: exit 1, as there
    else:
        value = parser.get(section, key, fallback=default)
    print(value.strip())


def has(path, section):
    mine = re.compile(r"\s*\[\s*" + re.escape(section) + r"\s*\]\s*$")
    if any(mine.match(line) for line in lines_of(path)):
        print("yes")
    else:
        print("no")
        sys.exit(1)


OPERATIONS = {("add", 4): add, ("comment", 2): comment,
              ("uncomment", 2): uncomment, ("get", 3): get, ("get", 4): get,
              ("has", 2): has}

if __name__ == "__main__":
    operation = OPERATIONS.get((sys.argv[1] if len(sys.argv) > 1 else "",
                                len(sys.argv) - 2))
    if operation is None:
        sys.exit("ERROR: Invalid arguments")
    operation(*sys.argv[2:])
