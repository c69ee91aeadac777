"""Test tiers that cannot pass silently: a missing ROS 2 / MuJoCo tier fails the run in CI.

`pytest.importorskip` turns a broken venv into a run of skips that CI reports as green. require()
skips (with the reason in the summary) on a developer machine without the package, but fails
when CI=true, where every tier is installed and a missing one is a broken environment.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(module: str, why: str = "") -> ModuleType:
    """Import `module`; where it is missing: fail under CI=true, else skip the module's tests visibly."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        reason = f"{module} is not importable ({err}){': ' + why if why else ''}"
        if in_ci():
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
