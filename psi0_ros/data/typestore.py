"""A rosbags Typestore that knows the project's messages as well as sensor_msgs, std_msgs & co.

rosbags ships the standard ROS 2 message definitions per distro; psi0_ros's own types are parsed
from the package's msg/*.msg files (never re-typed here), so the bag reader and the recorder use
exactly the definitions rosidl generated the Python messages from.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

PACKAGE = "psi0_ros"


def message_definition_dir() -> Path:
    """The directory holding psi0_ros's msg/*.msg files (checkout, ROS 2 install or pip prefix)."""
    candidates: list[Path] = []
    try:
        from psi0_ros.paths import share_dir

        candidates.append(share_dir() / "msg")
    except FileNotFoundError:
        pass
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / "msg")
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("*.msg")):
            return candidate
    raise FileNotFoundError(
        "psi0_ros message definitions (msg/*.msg) not found in: " + ", ".join(str(c) for c in candidates)
    )


def project_types(msg_dir: Path | None = None) -> dict:
    """Parse every msg/<Name>.msg into rosbags type definitions named psi0_ros/msg/<Name>."""
    directory = msg_dir or message_definition_dir()
    types: dict = {}
    for path in sorted(directory.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    if not types:
        raise FileNotFoundError(f"no .msg files in {directory}")
    return types


def distro_store(distro: str | None = None) -> Stores:
    """The rosbags store of a ROS 2 distro name ("humble", ...); $ROS_DISTRO, else the latest."""
    name = (distro or os.environ.get("ROS_DISTRO") or "").strip().lower()
    if not name:
        return Stores.LATEST
    try:
        return Stores(f"ros2_{name}")
    except ValueError:
        known = sorted(s.value[5:] for s in Stores if s.value.startswith("ros2_"))
        raise ValueError(f"unknown ROS 2 distro {name!r}; rosbags knows {known}") from None


def make_typestore(distro: str | None = None, msg_dir: Path | None = None) -> Typestore:
    """A fresh Typestore: the distro's standard types plus psi0_ros/msg/*.

    Where the msg files are not installed (a pip install of an older layout) the store has the
    standard types only: readers then take psi0_ros types from the definitions stored in the bag
    (mcap bags carry them), and writers report the type as undefined. An explicit msg_dir must exist.
    """
    store = get_typestore(distro_store(distro))
    try:
        types = project_types(msg_dir)
    except FileNotFoundError:
        if msg_dir is not None:
            raise
        return store
    store.register(types)
    return store


@functools.lru_cache(maxsize=4)
def shared_typestore(distro: str | None = None) -> Typestore:
    """One Typestore per process and distro, for readers that never register into it.

    rosbags generates (de)serialiser code per type on first use; sharing the store keeps that
    work to once per process instead of once per bag or episode.
    """
    return make_typestore(distro)


@functools.lru_cache(maxsize=256)
def bag_definition_store(definition: str, msgtype: str) -> Typestore:
    """A Typestore holding msgtype as a bag's own .msg definition text declares it (and the types
    it uses). Parsing a definition takes ~10 ms, so each distinct one is parsed once per process,
    not once per bag and episode. Raises what rosbags raises for a definition it cannot parse."""
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(definition, msgtype))
    store.get_msgdef(msgtype)
    return store
