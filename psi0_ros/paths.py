"""Where psi0_ros finds its own config/ and launch/ files, installed or in a checkout."""

from __future__ import annotations

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]


def share_dir() -> Path:
    """The directory holding config/ and launch/.

    A source checkout (package.xml next to psi0_ros/) wins, so edits take effect at once; then
    the ament index of a sourced ROS 2 workspace; then <prefix>/share/psi0_ros of a pip install.
    """
    if (_CHECKOUT / "package.xml").is_file() and (_CHECKOUT / "config").is_dir():
        return _CHECKOUT
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory("psi0_ros"))
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    candidate = Path(sys.prefix) / "share" / "psi0_ros"
    if (candidate / "config").is_dir():
        return candidate
    raise FileNotFoundError(
        f"psi0_ros share directory not found (looked in {_CHECKOUT}, the ament index and {candidate})"
    )


def config_path(name: str) -> Path:
    """Path of config/<name> (e.g. "deploy.yaml"), with a clear error when it is missing."""
    path = share_dir() / "config" / name
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    return path
