"""For every layer: PANDA_SKIP is checked once (an unknown layer stops
the run with one line), and the summary names the layers it skipped on
purpose (tests/realparts.py)."""
import pytest
import realparts


def pytest_configure(config):
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
