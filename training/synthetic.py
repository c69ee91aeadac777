"""Small generated datasets in each layout the stages read, for tests and `psi0 bench train`.

Actions follow smooth per-episode sinusoids and the camera image encodes the episode (a colour
and a moving square), so there is something to learn. Nothing here is downloaded.
- write_episodes: psi0_ros HDF5 episode files (DESIGN §5), JPEG frames
- write_lerobot: LeRobot v2.1 in the reference Psi0 layout (states 32, action 36, one mp4 per episode)
- write_humanoid_everyday: <category>/<task>/episode_*/data.json + jpg frames (G1, 28 joints)
- write_egodex: <root>/part1/<task>/<i>.hdf5 (+ <i>.mp4): transforms, intrinsics, description
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from psi0_ros.constants import ACTION_DIM, STATE_DIM, STATE_PADDED_DIM

TASKS = ("pick up the red cup", "open the drawer")


def _frame(height: int, width: int, episode: int, t: int) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[...] = ((37 * episode) % 200 + 30, (91 * episode) % 200 + 30, 120)
    size = max(2, min(height, width) // 4)
    top = (t * 3) % max(1, height - size)
    left = (t * 5 + 11 * episode) % max(1, width - size)
    image[top : top + size, left : left + size] = 255
    return image


def _jpeg(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _trajectory(episode: int, frames: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(frames)[:, None] / 30.0
    phase = rng.uniform(0, 2 * np.pi, dim)
    amplitude = rng.uniform(0.1, 0.6, dim)
    return (amplitude * np.sin(2 * np.pi * 0.5 * t + phase) + 0.05 * episode).astype(np.float32)


def write_episodes(
    root: Path, episodes: int = 3, frames: int = 40, size: tuple[int, int] = (48, 64), seed: int = 0
) -> list[Path]:
    """psi0_ros episode files written by psi0_ros.data's writer."""
    from psi0_ros.data.hdf5 import EpisodeData, write_episode
    from psi0_ros.layout import NUM_JOINTS

    root = Path(root)
    rng = np.random.default_rng(seed)
    paths = []
    for e in range(episodes):
        action = _trajectory(e, frames, ACTION_DIM, rng)
        state = np.zeros((frames, STATE_PADDED_DIM), dtype=np.float32)
        state[:, :STATE_DIM] = np.roll(action, 1, axis=0)[:, :STATE_DIM]
        images = [_jpeg(_frame(size[0], size[1], e, t)) for t in range(frames)]
        episode = EpisodeData(
            timestamps=np.arange(frames) / 30.0,
            action=action,
            state=state,
            joint_positions=np.zeros((frames, NUM_JOINTS)),
            images={"ego": images},
            image_offsets={"ego": np.zeros(frames, dtype=np.float32)},
            attrs={"task": TASKS[e % len(TASKS)], "episode_index": e, "fps": 30.0, "outcome": "success"},
        )
        paths.append(write_episode(episode, root / f"episode_{e:04d}.hdf5"))
    return paths


def _write_mp4(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"g": "2", "crf": "18", "preset": "ultrafast"})
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_lerobot(
    root: Path, episodes: int = 3, frames: int = 40, size: tuple[int, int] = (48, 64), seed: int = 0
) -> Path:
    """LeRobot v2.1 in the reference layout (what Psi0's raw_to_lerobot writes): columns states (32),
    action (36), timestamp, frame_index, episode_index, index, next.done, task_index; one video
    observation.images.egocentric per episode."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    rng = np.random.default_rng(seed)
    fps = 30
    key = "observation.images.egocentric"
    data_path = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    video_path = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    total = 0
    episode_rows, task_rows = [], [{"task_index": i, "task": t} for i, t in enumerate(TASKS)]
    for e in range(episodes):
        action = _trajectory(e, frames, ACTION_DIM, rng)
        states = np.roll(action, 1, axis=0)[:, :STATE_DIM]
        task_index = e % len(TASKS)
        columns = {
            "states": pa.array(list(states), type=pa.list_(pa.float32())),
            "action": pa.array(list(action), type=pa.list_(pa.float32())),
            "timestamp": pa.array(np.arange(frames, dtype=np.float32) / fps),
            "frame_index": pa.array(np.arange(frames, dtype=np.int64)),
            "episode_index": pa.array(np.full(frames, e, dtype=np.int64)),
            "index": pa.array(total + np.arange(frames, dtype=np.int64)),
            "next.done": pa.array(np.arange(frames) == frames - 1),
            "task_index": pa.array(np.full(frames, task_index, dtype=np.int64)),
        }
        path = root / data_path.format(episode_chunk=0, episode_index=e)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), path)
        video = root / video_path.format(episode_chunk=0, video_key=key, episode_index=e)
        _write_mp4(video, [_frame(size[0], size[1], e, t) for t in range(frames)], fps)
        episode_rows.append({"episode_index": e, "tasks": [TASKS[task_index]], "length": frames})
        total += frames
    info = {
        "codebase_version": "v2.1",
        "robot_type": "g1",
        "total_episodes": episodes,
        "total_frames": total,
        "fps": fps,
        "chunks_size": 1000,
        "data_path": data_path,
        "video_path": video_path,
        "features": {
            key: {"dtype": "video", "shape": [size[0], size[1], 3], "names": ["height", "width", "channel"]},
            "states": {"dtype": "float32", "shape": [STATE_DIM]},
            "action": {"dtype": "float32", "shape": [ACTION_DIM]},
        },
    }
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "info.json").write_text(json.dumps(info, indent=1))
    (meta / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in episode_rows))
    (meta / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in task_rows))
    return root


def write_humanoid_everyday(
    root: Path, episodes: int = 3, frames: int = 40, size: tuple[int, int] = (48, 64), seed: int = 0
) -> Path:
    """Humanoid Everyday G1 episodes: data.json frames with image, states, action.joint_angles (28)
    and the wrist / fingertip targets stage 1 reads (action.wrists, action.hands)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    descriptions = {}
    for e in range(episodes):
        task = ("pick_cup", "wipe_table")[e % 2]
        descriptions[task] = TASKS[e % 2]
        directory = root / "kitchen" / task / f"episode_{e}"
        (directory / "color").mkdir(parents=True, exist_ok=True)
        joints = _trajectory(e, frames, 28, rng)
        data = []
        for t in range(frames):
            name = f"color/frame_{t:06d}.jpg"
            (directory / name).write_bytes(_jpeg(_frame(size[0], size[1], e, t)))
            state = joints[max(0, t - 1)]
            data.append(
                {
                    "image": name,
                    "states": {"hand_state": state[:14].tolist(), "arm_state": state[14:].tolist(), "robot_type": "g1"},
                    "action": {
                        "joint_angles": joints[t].tolist(),
                        "wrists": {
                            side: {
                                "xyz": (joints[t, k : k + 3] * 0.2).tolist(),
                                "rpy": joints[t, k + 3 : k + 6].tolist(),
                            }
                            for side, k in (("left", 0), ("right", 14))
                        },
                        "hands": {
                            f"{side}_{finger}": {"xyz": (joints[t, k + j : k + j + 3] * 0.1).tolist()}
                            for side, k in (("left", 0), ("right", 14))
                            for j, finger in enumerate(("thumb", "index", "middle", "ring_finger", "little_finger"))
                        },
                    },
                }
            )
        (directory / "data.json").write_text(json.dumps(data))
    (root / "task_description_dict.json").write_text(json.dumps(descriptions))
    return root


def _pose(rotation_z: float, translation: np.ndarray) -> np.ndarray:
    c, s = np.cos(rotation_z), np.sin(rotation_z)
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    pose[:3, 3] = translation
    return pose


def egodex_transforms(frames: int, episode: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """World poses (T, 4, 4) of a moving head camera and two moving hands with fingertips."""
    from training.egodex import CAMERA, joint_names

    t = np.arange(frames) / 30.0
    transforms = {
        CAMERA: np.stack([_pose(0.3 * np.sin(0.7 * x), np.array([0.1 * x, 0.0, 1.5])) for x in t]),
    }
    for h, hand in enumerate(("left", "right")):
        phase = rng.uniform(0, 2 * np.pi)
        wrist = np.stack(
            [
                _pose(0.5 * np.sin(2 * x + phase), np.array([0.2 * np.sin(3 * x + phase), 0.3 * h - 0.15, 1.0]))
                for x in t
            ]
        )
        names = joint_names(hand)
        transforms[names[0]] = wrist
        for f, name in enumerate(names[1:]):
            offset = np.eye(4)
            offset[:3, 3] = [0.02 * f, 0.05 + 0.01 * np.sin(4 * f), 0.0]
            transforms[name] = wrist @ offset
    return transforms


def write_egodex(
    root: Path, episodes: int = 2, frames: int = 40, size: tuple[int, int] = (48, 64), seed: int = 0
) -> Path:
    """EgoDex-like <root>/part1/<task>/<i>.hdf5 + <i>.mp4 (transforms, intrinsics, description)."""
    import h5py

    root = Path(root)
    rng = np.random.default_rng(seed)
    for e in range(episodes):
        directory = root / "part1" / ("assemble_blocks", "fold_towel")[e % 2]
        directory.mkdir(parents=True, exist_ok=True)
        with h5py.File(directory / f"{e}.hdf5", "w") as f:
            group = f.create_group("transforms")
            for name, value in egodex_transforms(frames, e, rng).items():
                group.create_dataset(name, data=value.astype(np.float32))
            f.create_group("camera").create_dataset(
                "intrinsic", data=np.array([[736.6, 0, 960.0], [0, 736.6, 540.0], [0, 0, 1]], dtype=np.float32)
            )
            f.attrs["llm_description"] = TASKS[e % len(TASKS)]
            f.attrs["llm_type"] = "static"
        _write_mp4(directory / f"{e}.mp4", [_frame(size[0], size[1], e, t) for t in range(frames)], 30)
    return root
