"""Hooks for every test layer."""
# No process outlives the run: see leaks.py.
from leaks import (  # noqa: F401
    pytest_configure,
    pytest_runtest_protocol,
    pytest_sessionfinish,
)
