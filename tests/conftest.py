"""For every layer: PANDA_SKIP is checked once (an unknown layer stops
the run with one line), the summary names the layers it skipped on
purpose (tests/realparts.py), and no process outlives the run
(tests/leaks.py)."""
import leaks
import pytest
import realparts
from leaks import pytest_runtest_protocol, pytest_sessionfinish  # noqa: F401


def pytest_configure(config):
    leaks.configure(config)
    try:
        realparts.parts()
    except realparts.BadSkip as e:
        raise pytest.UsageError(str(e)) from None


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    skip = realparts.parts().skip
    if skip:
        terminalreporter.write_line(
            "layers skipped on purpose (PANDA_SKIP): %s" % (", ".join(skip),))
