"""`psi0 inspect`: summary and validation of episode files, bags and datasets; exit 1 when invalid."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from psi0_ros.constants import TOPIC_LOWER_BODY_COMMAND
from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.convert import convert_bags
from psi0_ros.data.synthetic import StreamSpec, SyntheticBag, SyntheticEpisode, write_synthetic_bag
from psi0_ros.data.validate import validate_episode

SMALL = {"width": 48, "height": 32, "joint_states": StreamSpec(100.0), "imu": StreamSpec(100.0)}


def _inspect(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "psi0_ros.cli", "inspect", *map(str, paths)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inspect")
    bag = root / "bag"
    write_synthetic_bag(bag, SyntheticBag(duration_s=1.5, episodes=(SyntheticEpisode(0.2, 1.2),), **SMALL))
    summary = convert_bags([bag], root / "episodes", ConvertConfig(), workers=1)
    assert summary.ok
    return bag, Path(summary.episodes[0].output)


def _damaged(episode: Path, tmp_path: Path, damage) -> Path:
    copy = tmp_path / episode.name
    shutil.copy(episode, copy)
    with h5py.File(copy, "r+") as f:
        damage(f)
    return copy


def test_a_good_episode_and_bag_are_valid(converted):
    bag, episode = converted
    result = _inspect(episode, bag)
    assert result.returncode == 0, result.stdout
    assert "frames=31" in result.stdout and "rate_hz=30.0" in result.stdout and "2 valid, 0 invalid" in result.stdout
    report = validate_episode(episode, decode_all=True)
    assert report.valid and report.summary["cameras"]["ego"]["shape"] == [32, 48, 3]


def _set(name: str, change):
    def damage(f: h5py.File) -> None:
        data = f[name][()]
        change(data)
        f[name][...] = data

    return damage


@pytest.mark.parametrize(
    "damage,message",
    [
        (_set("action", lambda a: a.__setitem__((3, 5), np.nan)), "/action: 1 NaN/inf value(s), first at row 3"),
        (_set("observations/state", lambda a: a.__setitem__((0, 1), np.inf)), "/observations/state: 1 NaN/inf"),
        (_set("timestamps", lambda t: t.__setitem__(10, t[9])), "timestamps not strictly increasing at 9"),
        (_set("timestamps", lambda t: t.__setitem__(slice(20, None), t[20:] + 0.5)), "gap(s), largest 0.533 s"),
        (_set("timestamps", lambda t: t.__imul__(2.0)), "rate 15.000 Hz, declared 30.0 Hz"),
        (_set("observations/state", lambda a: a.__setitem__((2, 33), 1.0)), "state padding (dims 32-35) is not zero"),
        (lambda f: f["observations/images/ego"].__setitem__(4, np.frombuffer(b"not a jpeg", np.uint8)), "frame 4"),
        (lambda f: f.attrs.__setitem__("fps", 0.0), "fps attribute 0.0 is not a positive rate"),
        (lambda f: f.__delitem__("observations/joint_positions"), "no /observations/joint_positions"),
    ],
)
def test_each_defect_is_reported(converted, tmp_path, damage, message):
    _, episode = converted
    broken = _damaged(episode, tmp_path, damage)
    report = validate_episode(broken, decode_all=True)
    assert not report.valid and any(message in e for e in report.errors), report.errors
    result = _inspect(broken)
    assert result.returncode == 1 and "INVALID" in result.stdout


def test_a_directory_with_leftovers_and_a_bad_bag(converted, tmp_path):
    bag, episode = converted
    shutil.copy(episode, tmp_path / episode.name)
    (tmp_path / f".{episode.name}.tmp-4242").write_bytes(b"partial")
    result = _inspect(tmp_path)
    assert result.returncode == 0 and "temporary from an interrupted conversion" in result.stdout
    broken_bag = tmp_path / "bag_without_lower_body"
    write_synthetic_bag(
        broken_bag, SyntheticBag(duration_s=1.0, events=False, omit_topics=(TOPIC_LOWER_BODY_COMMAND,), **SMALL)
    )
    result = _inspect(broken_bag)
    assert result.returncode == 1 and "missing topic /psi0/lower_body_command" in result.stdout
    assert _inspect(tmp_path / "nothing_here").returncode == 1


def test_implausible_values_written_with_valid_checksums_fail(converted, tmp_path):
    """Actions overwritten with 12345 rad (and written properly, checksums and all) are not OK."""
    from psi0_ros.data.hdf5 import read_episode, write_episode

    _, episode = converted
    data = read_episode(episode)
    data.action[:] = 12345.0
    broken = write_episode(data, tmp_path / "implausible.hdf5")
    report = validate_episode(broken)
    assert not report.valid
    assert any("/action" in e and "outside the plausible range" in e and "12345" in e for e in report.errors)
    assert not any("checksum" in e for e in report.errors)  # the file itself is intact
    data = read_episode(episode)
    data.joint_positions[5, 3] = 3.5  # a knee far past its URDF limit
    report = validate_episode(write_episode(data, tmp_path / "knee.hdf5"))
    assert any("/observations/joint_positions" in e and "row 5" in e for e in report.errors), report.errors


def test_flipped_bytes_are_found_by_the_checksums(converted, tmp_path):
    """A flipped low mantissa byte leaves every value finite and plausible: only the CRC sees it;
    a flipped byte inside a JPEG frame is found without decoding the frames."""
    _, episode = converted
    copy = tmp_path / episode.name
    shutil.copy(episode, copy)
    with h5py.File(copy, "r") as f:
        offset = f["observations/joint_positions"].id.get_offset()
    raw = bytearray(copy.read_bytes())
    raw[offset + 8 * 10] ^= 0x01  # least significant byte of one float64
    copy.write_bytes(bytes(raw))
    report = validate_episode(copy)
    assert not report.valid, report.to_dict()
    assert report.errors == [
        "/observations/joint_positions: bytes differ from the checksum written with the file (corrupted)"
    ]
    assert validate_episode(episode).valid and not validate_episode(episode).warnings[1:]
