"""`psi0 convert --format lerobot`: a LeRobot v2.1 dataset that reads back with pyarrow/pandas/PyAV."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from psi0_ros.constants import ACTION_NAMES
from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.convert import convert_bags, export_lerobot
from psi0_ros.data.hdf5 import read_episode
from psi0_ros.data.synthetic import StreamSpec, SyntheticBag, SyntheticEpisode, write_synthetic_bag

EPISODES = (
    SyntheticEpisode(0.3, 1.0, task="stack the cups"),
    SyntheticEpisode(1.2, 1.5, discard=True),
    SyntheticEpisode(1.7, 2.4, task="wipe the table"),
)
COLUMNS = {
    "observation.state",
    "action",
    "observation.joint_positions",
    "timestamp",
    "frame_index",
    "episode_index",
    "index",
    "task_index",
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lerobot")
    bag = root / "bag"
    spec = SyntheticBag(
        duration_s=2.6, episodes=EPISODES, width=64, height=48, joint_states=StreamSpec(100.0), imu=StreamSpec(100.0)
    )
    write_synthetic_bag(bag, spec)
    out = root / "dataset"
    result = subprocess.run(
        [sys.executable, "-m", "psi0_ros.cli", "convert", str(bag), "-o", str(out), "--format", "lerobot", "-j", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return bag, out


def test_layout_and_meta(dataset):
    _, root = dataset
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v2.1" and info["fps"] == 30.0
    assert info["total_episodes"] == 2 and info["total_frames"] == 44 and info["total_tasks"] == 2
    assert info["features"]["action"]["names"] == list(ACTION_NAMES)
    assert info["features"]["observation.images.ego"]["dtype"] == "video"
    assert info["features"]["observation.images.ego"]["shape"] == [48, 64, 3]
    episodes = [json.loads(line) for line in (root / "meta" / "episodes.jsonl").read_text().splitlines()]
    assert episodes == [
        {"episode_index": 0, "tasks": ["stack the cups"], "length": 22},
        {"episode_index": 1, "tasks": ["wipe the table"], "length": 22},
    ]
    tasks = [json.loads(line) for line in (root / "meta" / "tasks.jsonl").read_text().splitlines()]
    assert tasks == [{"task_index": 0, "task": "stack the cups"}, {"task_index": 1, "task": "wipe the table"}]
    assert not (root / ".staging").exists()


def test_parquet_reads_back_with_the_expected_columns_and_frames(dataset):
    bag, root = dataset
    frames = []
    for index in (0, 1):
        path = root / "data" / "chunk-000" / f"episode_{index:06d}.parquet"
        table = pq.read_table(path)
        assert set(table.column_names) == COLUMNS
        frame = pd.read_parquet(path)
        assert len(frame) == 22
        assert frame["frame_index"].tolist() == list(range(22))
        assert (frame["episode_index"] == index).all() and (frame["task_index"] == index).all()
        assert np.allclose(frame["timestamp"], np.arange(22) / 30.0)
        assert np.stack(frame["action"]).shape == (22, 36) and np.stack(frame["observation.state"]).shape == (22, 36)
        frames.append(frame)
    assert pd.concat(frames)["index"].tolist() == list(range(44))
    # The same numbers as the HDF5 episode of the same bag.
    hdf5 = root.parent / "hdf5"
    assert convert_bags([bag], hdf5, ConvertConfig(), workers=1).ok
    episode = read_episode(hdf5 / "bag_episode_000002.hdf5", images=False)
    assert np.array_equal(np.stack(frames[1]["action"]), episode.action)
    assert np.array_equal(np.stack(frames[1]["observation.state"]), episode.state)


def test_videos_decode_to_one_frame_per_row(dataset):
    _, root = dataset
    for index in (0, 1):
        path = root / "videos" / "chunk-000" / "observation.images.ego" / f"episode_{index:06d}.mp4"
        with av.open(str(path)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(decoded) == 22 and decoded[0].shape == (48, 64, 3)


def test_stats_cover_every_feature(dataset):
    _, root = dataset
    lines = [json.loads(line) for line in (root / "meta" / "episodes_stats.jsonl").read_text().splitlines()]
    assert [line["episode_index"] for line in lines] == [0, 1]
    first = lines[0]["stats"]
    assert {"observation.state", "action", "observation.images.ego", "timestamp"} <= set(first)
    assert len(first["action"]["mean"]) == 36 and first["action"]["count"] == [22]
    assert np.array(first["observation.images.ego"]["mean"]).shape == (3, 1, 1)
    overall = json.loads((root / "meta" / "stats.json").read_text())
    assert overall["action"]["count"] == [44]
    assert np.allclose(overall["action"]["min"], np.minimum(first["action"]["min"], lines[1]["stats"]["action"]["min"]))


def test_an_existing_dataset_is_not_overwritten(dataset, tmp_path):
    bag, root = dataset
    with pytest.raises(FileExistsError, match="already holds a LeRobot dataset"):
        export_lerobot([bag], root, ConvertConfig(), workers=1)
