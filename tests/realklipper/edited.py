"""Real Klipper running an edited copy of the module, for tests that prove
a check fails when the module misbehaves.  The copy is made at test time
in a temporary tree; the module itself is never changed."""
import ast
import shutil

from realklipper.trees import MODULE

# Calls through which an extra hands Klipper a callback to run on the
# reactor thread (setup_callback: a Klipper sensor's readings).
REGISTERS = ("register_timer", "register_callback", "register_async_callback",
             "register_fd", "register_event_handler", "register_command",
             "register_mux_command", "register_endpoint",
             "register_mux_endpoint", "register_output_handler",
             "setup_callback")

STALL_HOOK = '''


def _panda_test_stall():
    # Added by tests/realklipper/edited.py: when the file named by
    # $PANDA_TEST_STALL exists, the first callback to find it takes it and
    # sleeps ("sleep SECONDS") or keeps the CPU busy ("spin SECONDS" of
    # its own CPU time).
    import os as _os
    import time as _time
    flag = _os.environ.get("PANDA_TEST_STALL")
    if not flag:
        return
    try:
        with open(flag) as f:
            how, seconds = f.read().split()
        _os.unlink(flag)
    except (OSError, ValueError):
        return
    if how == "sleep":
        _time.sleep(float(seconds))
    else:
        end = _time.thread_time() + float(seconds)
        while _time.thread_time() < end:
            pass
'''


def module_source():
    return MODULE.read_text()


def tree_with_module(tree, dest, source):
    """A tree at dest that runs source as klippy/extras/panda_breath.py:
    the built tree's klippy/ copied, the rest (its MCU build) linked."""
    dest.mkdir(parents=True)
    for entry in tree.iterdir():
        if entry.name == "klippy":
            shutil.copytree(entry, dest / "klippy", symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / entry.name).symlink_to(entry)
    module = dest / "klippy" / "extras" / "panda_breath.py"
    module.unlink()
    module.write_text(source)
    return dest


def without_method(source, name):
    """source with every method called name cut out."""
    lines = source.splitlines(keepends=True)
    cuts = [(node.lineno, node.end_lineno)
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef) and node.name == name]
    for start, end in sorted(cuts, reverse=True):
        del lines[start - 1:end]
    return "".join(lines)


def reactor_callbacks(tree, registers=REGISTERS):
    """Names of the functions the module hands Klipper as callbacks
    through the calls named registers (self.NAME, or a local function
    NAME), and get_status when registers is every one."""
    names = {"get_status"} if registers == REGISTERS else set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)\
                and node.func.attr in registers:
            for arg in list(node.args) + [k.value for k in node.keywords]:
                if isinstance(arg, ast.Attribute) and isinstance(
                        arg.value, ast.Name) and arg.value.id == "self":
                    names.add(arg.attr)
                elif isinstance(arg, ast.Name):
                    names.add(arg.id)
    return names


def with_stall_hook(source, registers=REGISTERS):
    """(edited source, hooked function names): every callback the module
    hands Klipper through registers starts by calling the stall hook
    (STALL_HOOK)."""
    tree = ast.parse(source)
    names = reactor_callbacks(tree, registers)
    lines = source.splitlines(keepends=True)
    hooked = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef) or node.name not in names:
            continue
        first = node.body[0]
        if first.lineno == node.lineno:
            continue    # a one-line def: nowhere to add a line
        hooked.append((first.lineno, first.col_offset, node.name))
    for lineno, col, _ in sorted(hooked, reverse=True):
        lines.insert(lineno - 1, " " * col + "_panda_test_stall()\n")
    edited = "".join(lines) + STALL_HOOK
    ast.parse(edited)
    return edited, sorted({name for _, _, name in hooked})
