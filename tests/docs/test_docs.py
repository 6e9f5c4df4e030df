"""The documentation stays true: its config snippets load in real Klipper
(the upstream tree: the snippets use nothing the U1 fork treats
differently), its shell commands exist, its links and anchors resolve, and
the README names exactly the two developer commands."""
import configparser
import contextlib
import importlib.machinery
import importlib.util
import io
import pathlib
import re
import shlex
import socket
import tempfile
import textwrap

import pytest
from realklipper import trees
from realklipper.printer import Printer, StartupError, tracebacks

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SHIPPED = ROOT / "klipper" / "config" / "panda_breath.cfg"
CLI = ROOT / "package" / "panda-breath" / "panda-breath"
SETUP_COMMANDS = ["./build.sh", "./build.sh test"]
EXPECT_ERROR = re.compile(r'<!--\s*docs-test:\s*error\s+"([^"]+)"\s*-->')


# --- reading Markdown -------------------------------------------------------

class Block:
    def __init__(self, path, line, lang, text, expect_error):
        self.path, self.line, self.lang = path, line, lang
        self.text, self.expect_error = text, expect_error

    def __repr__(self):
        return "%s:%d" % (self.path.relative_to(ROOT), self.line)


def fenced_blocks(path):
    """Every ``` block of a Markdown file, with the docs-test marker in
    the HTML comment right above it, if any."""
    blocks, lines = [], path.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"\s*```(\S*)", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        end = i + 1
        while end < len(lines) and not re.match(r"\s*```\s*$", lines[end]):
            end += 1
        marker = EXPECT_ERROR.search(lines[start - 1]) if start else None
        text = textwrap.dedent("\n".join(lines[start + 1:end]))
        blocks.append(Block(path, start + 1, lang, text + "\n",
                            marker.group(1) if marker else None))
        i = end + 1
    return blocks


def prose(text):
    """The text outside fenced blocks and inline code."""
    text = re.sub(r"^\s*```.*?^\s*```\s*$", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def all_blocks(lang):
    return [b for path in DOCS for b in fenced_blocks(path)
            if b.lang == lang]


# --- config snippets --------------------------------------------------------

def closed_port():
    """A loopback port nobody listens on: the link is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expand_includes(text):
    def include(m):
        shipped = SHIPPED.parent / m.group(1).strip()
        assert shipped.is_file(), "include of unknown file %s" % (shipped,)
        return shipped.read_text()
    return re.sub(r"^\[include ([^\]]+)\]\s*$", include, text, flags=re.M)


def parse_config_text(text):
    # As Klipper reads printer.cfg
    config = configparser.RawConfigParser(
        strict=False, inline_comment_prefixes=(";", "#"))
    config.read_string(text)
    return config


def render(fileconfig):
    out = io.StringIO()
    fileconfig.write(out)
    return out.getvalue()


def sensor_file():
    """A /sys-style temperature file (35 C) for temperature_host."""
    path = pathlib.Path(tempfile.gettempdir()) / "panda-docs-sensor"
    path.write_text("  35000\n")
    return path


def snippet_config(block, port):
    """The snippet as a printer.cfg on loopback.  A snippet that shows
    only some sections is laid over the shipped config, as a user would
    edit it; a snippet expected to fail is loaded on its own."""
    snippet = parse_config_text(expand_includes(block.text))
    if block.expect_error:
        config = snippet
    else:
        config = parse_config_text(SHIPPED.read_text())
        for section in snippet.sections():
            if not config.has_section(section):
                config.add_section(section)
            for option, value in snippet.items(section):
                config.set(section, option, value)
    if config.has_section("panda_breath"):
        config.set("panda_breath", "host", "127.0.0.1")
        config.set("panda_breath", "port", str(port))
    for section in config.sections():
        # a /sys file this machine may not have: one the test writes
        if config.get(section, "sensor_type", fallback="") == \
                "temperature_host":
            config.set(section, "sensor_path", str(sensor_file()))
    return render(config)


@pytest.fixture(scope="module")
def klipper():
    return trees.need("docs-config", "upstream")


@pytest.fixture
def load(klipper, tmp_path):
    """load(config_text): start upstream Klipper with it; raise
    StartupError with Klipper's message if it does not become ready."""
    started = []

    def load(config_text):
        p = Printer(klipper, "upstream", config_text,
                    tmp_path / ("run%d" % len(started)))
        started.append(p)
        p.start()
        assert not tracebacks(p.log()), tracebacks(p.log())
    yield load
    for p in started:
        p.stop()


@pytest.mark.parametrize("block", all_blocks("ini"), ids=repr)
def test_config_snippet_loads_in_klipper(block, load):
    config = snippet_config(block, closed_port())
    if block.expect_error:
        with pytest.raises(StartupError,
                           match=re.escape(block.expect_error)):
            load(config)
    else:
        load(config)


def test_docs_have_config_snippets():
    assert len(all_blocks("ini")) >= 5


def test_snippet_check_rejects_a_bad_option(load):
    bad = Block(ROOT / "README.md", 1, "ini",
                "[panda_breath]\nhost: 192.168.1.50\nreconect_delay: 1\n",
                None)
    with pytest.raises(StartupError, match="reconect_delay"):
        load(snippet_config(bad, closed_port()))


# --- shell commands ---------------------------------------------------------

def build_sh_commands():
    text = (ROOT / "build.sh").read_text()
    case = text[text.index('case "${1:-build}" in'):]
    return {name for pattern in re.findall(r"^\s+([\w|-]+)\)", case, re.M)
            for name in pattern.split("|")}


@pytest.fixture(scope="module")
def cli_parser():
    loader = importlib.machinery.SourceFileLoader("panda_breath_cli",
                                                  str(CLI))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    cli = importlib.util.module_from_spec(spec)
    loader.exec_module(cli)
    return cli.build_parser()


def package_names():
    names = set()
    for control in (ROOT / "package").glob("*/control"):
        m = re.search(r"^Package:\s*(\S+)", control.read_text(), re.M)
        names.add(m.group(1))
    return names


def pinned_websocket_client():
    text = (ROOT / "requirements-dev.txt").read_text()
    return re.search(r"^websocket-client==(\S+)", text, re.M).group(1)


def shell_commands(block):
    """Each simple command of a sh block as a token list: continuation
    lines joined, comments dropped, split at && || ; and |."""
    text = block.text.replace("\\\n", " ")
    for line in text.split("\n"):
        line = re.sub(r"<([^>]+)>", r"\1", line)   # <printer-ip> etc.
        tokens = shlex.split(line, comments=True)
        command = []
        for token in tokens + [";"]:
            if token in ("&&", "||", ";", "|"):
                if command:
                    yield command
                command = []
            else:
                command.append(token)


def simulator_parser():
    from simulator.cli import build_parser
    return build_parser()


def parse_problems(parser, args, name):
    # argparse exits; the simulator's parser raises its UsageError
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            parser.parse_args(args)
        except (SystemExit, Exception) as e:
            why = err.getvalue().strip().split("\n")[-1] or str(e)
            return ["%s %s: %s" % (name, " ".join(args), why)]
    return []


def repo_path(token):
    """A path into a checkout of this repository, as the docs write it."""
    for prefix in ("~/panda-breath/", "panda-breath/"):
        if token.startswith(prefix):
            return token[len(prefix):]
    return None


def command_problems(command, parser, subcommands):
    """What is wrong with one documented command ([] when it is real)."""
    problems = []
    for token in command:
        rel = repo_path(token)
        if rel is not None and not (ROOT / rel).exists():
            problems.append("no file %s in the repository" % (rel,))
        m = re.match(r"websocket-client==(\S+)$", token)
        if m and m.group(1) != pinned_websocket_client():
            problems.append("websocket-client %s is not the pinned %s"
                            % (m.group(1), pinned_websocket_client()))
    head = command[0]
    if head == "./build.sh":
        sub = command[1] if len(command) > 1 else "build"
        if sub not in subcommands:
            problems.append("./build.sh has no command '%s'" % (sub,))
        elif sub == "sim":
            problems += parse_problems(simulator_parser(), command[2:],
                                       "./build.sh sim")
    # the command itself, or its file run by a Python
    cli_at = [i for i, t in enumerate(command[:2])
              if t == "panda-breath" or t.endswith("/panda-breath")]
    if cli_at and (cli_at[0] == 0 or "python" in head):
        problems += parse_problems(parser, command[cli_at[0] + 1:],
                                   "panda-breath")
    if head == "opkg" and len(command) > 2 and command[1] == "install":
        for name in command[2:]:
            if not name.startswith(("-", ".", "/")) and \
                    name not in package_names():
                problems.append("no package named %s" % (name,))
    if "pytest" in command:
        for token in command:
            if token.startswith("tests/") and not (ROOT / token).exists():
                problems.append("no test layer %s" % (token,))
    return problems


@pytest.mark.parametrize("block", all_blocks("sh"), ids=repr)
def test_shell_commands_exist(block, cli_parser):
    problems = []
    for command in shell_commands(block):
        problems += command_problems(command, cli_parser,
                                     build_sh_commands())
    assert problems == []


def test_command_check_rejects_made_up_commands(cli_parser):
    subcommands = build_sh_commands()
    assert command_problems(["./build.sh", "deploy"], cli_parser,
                            subcommands)
    assert command_problems(["panda-breath", "setup", "--ip", "1.2.3.4"],
                            cli_parser, subcommands)
    assert command_problems(["opkg", "install", "panda-breathe"],
                            cli_parser, subcommands)
    assert command_problems(["./build.sh", "sim", "--speeed", "2"],
                            cli_parser, subcommands)
    assert not command_problems(
        ["panda-breath", "setup", "--host", "192.168.1.50"], cli_parser,
        subcommands)


def test_readme_names_exactly_two_setup_commands():
    readme = ROOT / "README.md"
    found = []
    for block in fenced_blocks(readme):
        if block.lang != "sh":
            continue
        for command in shell_commands(block):
            if command[0] == "./build.sh":
                line = " ".join(command)
                if line not in found:
                    found.append(line)
    assert found == SETUP_COMMANDS
    developers = readme.read_text().split("## For developers")[1]
    block = re.search(r"```sh\n(.*?)```", developers, re.S).group(1)
    lines = [line.split("#")[0].strip() for line in block.split("\n")]
    assert [line for line in lines if line] == SETUP_COMMANDS


# --- links ------------------------------------------------------------------

def slug(heading):
    """GitHub's anchor for a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    seen, result = {}, set()
    for line in prose(path.read_text()).split("\n"):
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        result.add(base if n == 0 else "%s-%d" % (base, n))
    return result


def links(path):
    for m in re.finditer(r"\]\(([^)\s]+)\)", prose(path.read_text())):
        yield m.group(1)


def broken_links(path):
    broken = []
    for target in links(path):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(target)
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(target)
    return broken


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_internal_links_resolve(path):
    assert broken_links(path) == []


def test_link_check_finds_a_broken_file_and_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Real part\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](other.md#real-part) [ok](#page)\n"
                    "[gone](missing.md) [bad](other.md#no-such-part)\n"
                    "`[code](missing.md)` [web](https://example.org)\n")
    assert broken_links(page) == ["missing.md", "other.md#no-such-part"]


def test_slugs_match_github():
    assert slug("1. Snapmaker U1: Extended Firmware build") == \
        "1-snapmaker-u1-extended-firmware-build"
    assert slug("[panda_breath] options") == "panda_breath-options"
    assert slug("The device heats although Klipper's target is 0") == \
        "the-device-heats-although-klippers-target-is-0"
    assert slug("The `panda-breath` command") == "the-panda-breath-command"


# --- the option table -------------------------------------------------------

REQUIRED = object()


def module_options():
    """{option: (default, minval, maxval)} as PandaBreath reads them; a
    bound that is another option is given by that option's name."""
    import ast
    tree = ast.parse((ROOT / "klipper" / "extras" /
                      "panda_breath.py").read_text())
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            call = node.value
            if call.args and isinstance(call.args[0], ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        names[target.id] = call.args[0].value

    def value(node):
        if node is None:
            return None
        if isinstance(node, ast.Name):
            return names[node.id]
        return ast.literal_eval(node)

    options = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr.startswith("get")
                and node.func.attr != "get_prefix_options"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "config"
                and node.args and isinstance(node.args[0], ast.Constant)):
            continue
        kw = {k.arg: k.value for k in node.keywords}
        default = value(node.args[1]) if len(node.args) > 1 else REQUIRED
        name = node.args[0].value
        assert name not in options, "option %s is read twice" % (name,)
        options[name] = (
            default, value(kw.get("minval")), value(kw.get("maxval")))
    return options


def option_rows():
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("## [panda_breath] options")[1].split("\n## ")[0]
    rows = {}
    for m in re.finditer(r"^\| `(\w+)` \| ([^|]*) \| ([^|]*) \|", section,
                         re.M):
        rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def shown(bound):
    return bound if isinstance(bound, str) else "%g" % (bound,)


def test_every_module_option_is_documented_with_default_and_bounds():
    options, rows = module_options(), option_rows()
    assert set(options) == set(rows)
    for name, (default, minval, maxval) in options.items():
        default_cell, allowed = rows[name]
        if default is REQUIRED:
            assert "required" in default_cell, name
        elif default is None:
            assert "unset" in default_cell, name
        else:
            assert "`%s`" % (shown(default),) in default_cell, name
        if minval is not None:
            assert re.search(r"(^|[ `])%s[` ]+to %s\b" % (
                re.escape(shown(minval)), re.escape(shown(maxval))),
                allowed), (name, allowed)


# --- quoted console messages ------------------------------------------------

WILD, ELIDED = object(), object()


def words(text, placeholders):
    tokens = []
    for m in re.finditer(r"%[-.\d]*[sdf]|\.\.\.|[\w'.-]+", text):
        t = m.group(0)
        if placeholders and t.startswith("%"):
            tokens.append(WILD)
        elif t == "...":
            tokens.append(ELIDED)
        else:
            tokens.append(t.strip(".").lower())
    return [t for t in tokens if t != ""]


def quote_matches(quote, message):
    """The quote is the message with its %s filled in, and '...' where
    the docs leave part of it out."""
    q, m = words(quote, False), words(message, True)
    seen = {}

    def match(i, j):
        if (i, j) in seen:
            return seen[i, j]
        if i == len(q):
            ok = j == len(m)
        elif q[i] is ELIDED:
            ok = any(match(i + 1, k) for k in range(j, len(m) + 1))
        elif j == len(m):
            ok = False
        elif m[j] is WILD:
            # a filled-in value: a few words at most
            ok = any(match(k, j + 1)
                     for k in range(i + 1, min(i + 3, len(q)) + 1)
                     if all(t is not ELIDED for t in q[i:k]))
        else:
            ok = q[i] == m[j] and match(i + 1, j + 1)
        seen[i, j] = ok
        return ok
    return match(0, 0)


# The module's console lines are whole strings, or go through say() and
# respond(), which put "Panda Breath: " in front.
PREFIXED = ("say", "respond")


def module_messages():
    import ast
    tree = ast.parse((ROOT / "klipper" / "extras" /
                      "panda_breath.py").read_text())
    found = [node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and node.value.lower().startswith("panda")]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and node.args
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in PREFIXED):
            text = node.args[0]
            if isinstance(text, ast.BinOp):
                text = text.left
            if isinstance(text, ast.Constant) and isinstance(text.value,
                                                             str):
                found.append("Panda Breath: " + text.value)
    return found


def quoted_messages():
    for path in DOCS:
        text = re.sub(r"^\s*```.*?^\s*```\s*$", "", path.read_text(),
                      flags=re.M | re.S)
        for m in re.finditer(r"`((?:Panda Breath|panda_breath)[^`]*)`",
                             text):
            if len(m.group(1).split()) >= 4:
                yield path.name, m.group(1)


def test_quoted_console_messages_are_the_modules():
    messages = module_messages()
    wrong = [(name, quote) for name, quote in quoted_messages()
             if not any(quote_matches(quote, msg) for msg in messages)]
    assert wrong == []


def test_message_check_sees_a_changed_message():
    message = "Panda Breath: target %.1f sent as %d (the device accepts)"
    assert quote_matches("Panda Breath: target 65.0 sent as 60 (the device"
                         " accepts)", message)
    assert quote_matches("Panda Breath: target ... accepts)", message)
    assert not quote_matches("Panda Breath: target 65.0 is sent as 60",
                             message)
    status = "Panda Breath %s: %s; device %s; Klipper target %.0f"
    assert not quote_matches("Panda Breath: ... set the target again",
                             status)
