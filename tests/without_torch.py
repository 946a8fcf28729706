"""pytest plugin of the Colab-version step of CI (.ci/run), which installs no torch.

    PYTHONPATH=tests python -m pytest -p without_torch ...

A test that fails only because torch or torchvision cannot be imported (the loader's tests
on IDX files, a notebook that runs torchvision) is reported as skipped, with that reason,
instead of failed. Every other failure stays a failure, and with torch installed the plugin
does nothing.
"""

import importlib.util

import pytest

MISSING = ("No module named 'torch'", "No module named 'torchvision'")
TORCH = all(importlib.util.find_spec(name) is not None for name in ("torch", "torchvision"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if TORCH or not report.failed or call.excinfo is None:
        return
    if any(message in str(report.longrepr) for message in MISSING):
        report.outcome = "skipped"
        report.longrepr = (
            str(item.path),
            item.location[1] or 0,
            "Skipped: needs torch (not installed in this step)",
        )
