"""No process outlives a test run.

Every process a run starts carries the run's token in its environment
(PANDA_TEST_RUN, a space-separated chain: a run started inside another,
such as a pytest session started by a test or by `./build.sh test`, adds
its own token, so each run finds what it started and what its inner runs
started).  PANDA_TEST_NODE names the test that was running when the
process was started.

At the end of a pytest session (tests/conftest.py) and of `./build.sh
test` (its EXIT trap runs `python3 tests/leaks.py TOKEN`), every process
still alive with the run's token is a leftover: it is killed, named, and
the run fails.  Whatever a test starts (klippy, its MCU, the simulator,
Moonraker, QEMU) is therefore stopped, even when its start failed or the
test was killed.

Standard library only: build.sh runs it with the system python3."""
import os
import secrets
import signal
import sys
import time

RUN = "PANDA_TEST_RUN"
NODE = "PANDA_TEST_NODE"
GRACE = 3.0     # seconds a process that is already ending may take


def new_token(prefix):
    return "%s-%d-%s" % (prefix, os.getpid(), secrets.token_hex(4))


def join(token):
    """Add token to this process's chain, for every process it starts;
    returns the chain."""
    chain = os.environ.get(RUN, "").split() + [token]
    os.environ[RUN] = " ".join(chain)
    return chain


def _environ(pid):
    try:
        with open("/proc/%d/environ" % (pid,), "rb") as f:
            data = f.read()
    except OSError:
        return None
    env = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(
                errors="replace")
    return env


def _alive(pid):
    """Running (not a zombie waiting for its parent)."""
    try:
        with open("/proc/%d/stat" % (pid,), "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % (pid,), "rb") as f:
            return f.read().replace(b"\0", b" ").decode(
                errors="replace").strip()
    except OSError:
        return "?"


class Process:
    def __init__(self, pid, chain, node):
        self.pid, self.chain, self.node = pid, chain, node
        self.cmdline = _cmdline(pid)

    def __str__(self):
        return "pid %d (%s) started in %s: %s" % (
            self.pid, " ".join(self.chain),
            self.node or "no test (a fixture or the session)",
            self.cmdline[:300])


def tagged(token, skip=lambda chain: False):
    """The live processes carrying token, but this one and those whose
    chain skip(chain) excludes."""
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        env = _environ(pid)
        if not env or RUN not in env:
            continue
        chain = env[RUN].split()
        if token not in chain or skip(chain) or not _alive(pid):
            continue
        found.append(Process(pid, chain, env.get(NODE)))
    return found


def sweep(token, skip=lambda chain: False, grace=GRACE):
    """Kill what is left of run token; return the leftovers.  Processes
    that end by themselves within grace seconds (a child whose parent was
    just stopped) are not leftovers."""
    deadline = time.monotonic() + grace
    while True:
        left = tagged(token, skip)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    for process in left:
        try:
            os.kill(process.pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
            _alive(p.pid) for p in left):
        time.sleep(0.05)
    return left


def report(left, what):
    lines = ["%s left %d process%s running; killed now:" % (
        what, len(left), "" if len(left) == 1 else "es")]
    lines += ["  %s" % (p,) for p in left]
    return "\n".join(lines)


# pytest hooks, used by tests/conftest.py (or as a plugin: -p leaks)

try:
    import pytest
except ImportError:     # build.sh's trap: the plain functions only
    pytest = None

_session = {}

def configure(config):
    """At pytest_configure: this session's token joins the chain."""
    worker = hasattr(config, "workerinput")
    _session["token"] = new_token("worker" if worker else "pytest")
    join(_session["token"])


if pytest is not None:
    def pytest_configure(config):   # as a plugin: pytest -p leaks
        configure(config)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        os.environ[NODE] = item.nodeid
        try:
            return (yield)
        finally:
            os.environ.pop(NODE, None)

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(session, exitstatus):
        result = yield
        config = session.config
        if hasattr(config, "workerinput"):
            return result   # the controller sweeps, after its workers
        token = _session["token"]
        if getattr(config.option, "numprocesses", None):
            # xdist's workers carry the chain up to this session's token
            # and end with the session; what they start adds their own
            def skip(chain):
                return chain[-1] == token
        else:
            def skip(chain):
                return False
        left = sweep(token, skip)
        if left:
            text = report(left, "the test session")
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.section("leftover processes", red=True, bold=True)
                reporter.line(text, red=True)
            else:
                print(text, file=sys.stderr)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return result


def main(argv):
    """python3 tests/leaks.py TOKEN [WHAT]: kill and list what is left
    of run TOKEN; exit 1 if anything was."""
    if len(argv) not in (2, 3):
        print("usage: leaks.py TOKEN [WHAT]", file=sys.stderr)
        return 2
    left = sweep(argv[1])
    if left:
        print(report(left, argv[2] if len(argv) > 2 else "the run"),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
