"""Streaming readers of the episode datasets the action expert trains on.

Every reader indexes its dataset once (episode lengths, instructions and the low-dimensional
state/action arrays, a few kB per episode) and reads images only when a sample asks for one, so
nothing loads a whole dataset's images into memory. Layouts (shared/RECIPE.md):
- "episodes": psi0_ros HDF5 episode files from `psi0 convert` (DESIGN §5), read through
  psi0_ros.data's episode reader;
- "lerobot": LeRobot v2.1 (meta/info.json, parquet per episode, mp4 per camera and episode), both
  the layout `psi0 convert --format lerobot` writes (observation.state, 36) and the reference's
  (states, 32);
- "humanoid_everyday": <category>/<task>/episode_*/data.json + jpg frames (G1, 28 joints).
Every reader maps its vectors to the 36-D action and the 36-D padded state (DESIGN §4). A
malformed file raises DatasetError naming the file and what is wrong.
"""

from __future__ import annotations

import io
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psi0_ros.constants import ACTION_ARMS, ACTION_DIM, ACTION_HANDS, STATE_PADDED_DIM
from psi0_ros.layout import pad_state
from training.video import DatasetError, VideoReader

LEROBOT_VERSION = "v2.1"
HE_G1_JOINTS = 28  # Humanoid Everyday G1: 14 hand + 14 arm joints
_OPEN_LIMIT = 2  # video files a reader keeps open per process
# Episode files a reader keeps loaded, by the bytes their images hold: training draws frames of
# every episode in random order, and with only two kept every sample re-read a whole episode
# (~10 ms for 465 JPEG frames), half the step time of end-to-end stage 3. JPEG episodes are
# ~7 MB each, so a few hundred fit; raw-frame episodes (~100 MB) keep about ten.
_EPISODE_BUDGET_BYTES = 1 << 30
EPISODE_SUFFIX = ".hdf5"  # what `psi0 convert` names episode files (DESIGN §5)


@dataclass(frozen=True)
class EpisodeEntry:
    source: Path  # the file or directory the episode comes from (for messages)
    length: int  # frames on the control grid
    instruction: str
    state: np.ndarray  # (T, 36) float32 physical units, DESIGN §4 padded state
    action: np.ndarray  # (T, 36) float32 physical units, DESIGN §4 action


def _check_vectors(source: Path, name: str, array: Any, dim: int | tuple[int, ...]) -> np.ndarray:
    try:
        array = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{source}: {name} is not numeric ({err})") from None
    dims = (dim,) if isinstance(dim, int) else dim
    if array.ndim != 2 or array.shape[1] not in dims or array.shape[0] == 0:
        raise DatasetError(f"{source}: {name} must be (T > 0, {' or '.join(map(str, dims))}), got {array.shape}")
    if not np.isfinite(array).all():
        raise DatasetError(f"{source}: {name} contains non-finite values")
    return array


def _decode_jpeg(data: bytes, source: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"{source}: image is not a readable JPEG/PNG ({err})") from None


def _image_bytes(value: Any) -> int:
    """Bytes the images of a loaded episode hold (1 for anything else: counted, not weighed)."""
    images = getattr(value, "images", None)
    if not isinstance(images, dict):
        return 1
    total = 0
    for frames in images.values():
        total += frames.nbytes if isinstance(frames, np.ndarray) else sum(len(f) for f in frames)
    return max(1, total)


class _LRU(OrderedDict):
    """Least recently used values; the oldest go (and are closed) past `limit` entries or, with
    `budget`, once the values weigh more than `budget` bytes (the newest always stays)."""

    def __init__(self, limit: int = _OPEN_LIMIT, budget: int | None = None):
        super().__init__()
        self.limit, self.budget = limit, budget
        self.weights: dict[Any, int] = {}

    def get_or(self, key: Any, make: Any) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        self.weights[key] = _image_bytes(value) if self.budget is not None else 1
        while len(self) > 1 and (
            len(self) > self.limit or (self.budget is not None and sum(self.weights.values()) > self.budget)
        ):
            old_key, old = self.popitem(last=False)
            self.weights.pop(old_key, None)
            close = getattr(old, "close", None)
            if close is not None:
                close()
        return value

    def __reduce__(self) -> Any:
        return (_LRU, (self.limit, self.budget))


class EpisodeSource:
    """Base: entries (one per episode) and image(episode, frame) -> (H, W, 3) uint8 RGB."""

    kind = ""

    def __init__(self) -> None:
        self.entries: list[EpisodeEntry] = []
        self.skipped: list[Path] = []  # episodes left out (HDF5: marked outcome "failure")
        self._open = _LRU()

    def image(self, episode: int, frame: int) -> np.ndarray:
        raise NotImplementedError

    @property
    def num_frames(self) -> int:
        return sum(e.length for e in self.entries)

    def _require(self, root: Path, what: str) -> Path:
        root = Path(root).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"{what} not found: {root}")
        return root


class HDF5EpisodeSource(EpisodeSource):
    """psi0_ros episode files (*.hdf5 under root, temporaries skipped)."""

    kind = "episodes"

    def __init__(self, root: Path, camera: str = "", include_failures: bool = False):
        """Episodes marked outcome "failure" (`psi0 convert` from the recorder's FAILURE event, or a
        sim demo whose task check failed) are left out unless include_failures: a policy learns
        what was demonstrated. They are listed in self.skipped."""
        super().__init__()
        self._open = _LRU(limit=1 << 16, budget=_EPISODE_BUDGET_BYTES)  # loaded episodes, weighed by images
        from psi0_ros.data.hdf5 import is_temp_file, read_episode

        self._read = read_episode
        root = self._require(root, "episode directory")
        files = [root] if root.is_file() else sorted(p for p in root.rglob(f"*{EPISODE_SUFFIX}") if not is_temp_file(p))
        if not files:
            raise DatasetError(f"{root}: no episode files (*{EPISODE_SUFFIX})")
        self.cameras: list[str] = []
        for path in files:
            episode = self._load(path, images=False)
            if not include_failures and str(episode.attrs.get("outcome", "")) == "failure":
                self.skipped.append(path)
                continue
            cameras = sorted(episode.camera_info)
            if not cameras:
                raise DatasetError(f"{path}: episode has no camera images (/observations/images/*)")
            self.cameras.append(self._pick_camera(path, cameras, camera))
            action = _check_vectors(path, "/action", episode.action, ACTION_DIM)
            state = pad_state(_check_vectors(path, "/observations/state", episode.state, (32, STATE_PADDED_DIM)))
            if state.shape[0] != action.shape[0]:
                raise DatasetError(f"{path}: /observations/state has {state.shape[0]} rows, /action {action.shape[0]}")
            task = str(episode.attrs.get("task", "") or "")
            self.entries.append(EpisodeEntry(path, action.shape[0], task, state, action))
        if not self.entries:
            raise DatasetError(
                f"{root}: all {len(self.skipped)} episodes are marked outcome 'failure' "
                "(--set data.include_failures=true trains on them anyway)"
            )

    @staticmethod
    def _pick_camera(path: Path, cameras: list[str], wanted: str) -> str:
        if wanted:
            if wanted not in cameras:
                raise DatasetError(f"{path}: no camera {wanted!r} (cameras: {cameras})")
            return wanted
        return cameras[0]

    def _load(self, path: Path, images: bool) -> Any:
        try:
            return self._read(path, images=images)
        except (OSError, KeyError, ValueError) as err:
            raise DatasetError(f"{path}: not a readable psi0_ros episode file ({type(err).__name__}: {err})") from None

    def image(self, episode: int, frame: int) -> np.ndarray:
        entry = self.entries[episode]
        data = self._open.get_or(entry.source, lambda: self._load(entry.source, images=True))
        frames = data.images[self.cameras[episode]]
        if len(frames) != entry.length:
            raise DatasetError(
                f"{entry.source}: camera {self.cameras[episode]} has {len(frames)} frames for {entry.length} ticks"
            )
        if isinstance(frames, np.ndarray):
            return np.ascontiguousarray(frames[frame])
        return _decode_jpeg(frames[frame], f"{entry.source} frame {frame}")


class LeRobotSource(EpisodeSource):
    """LeRobot v2.1 datasets: ours (observation.state, 36) and the reference's (states, 32)."""

    kind = "lerobot"
    STATE_COLUMNS = ("observation.state", "states")

    def __init__(self, root: Path, camera: str = ""):
        super().__init__()
        import pyarrow.parquet as pq

        root = self._require(root, "LeRobot dataset")
        info_path = root / "meta" / "info.json"
        info = self._json(info_path)
        if info.get("codebase_version") != LEROBOT_VERSION:
            raise DatasetError(
                f"{info_path}: codebase_version {info.get('codebase_version')!r}, expected {LEROBOT_VERSION!r}"
            )
        for key in ("fps", "data_path", "features"):
            if key not in info:
                raise DatasetError(f"{info_path}: no {key!r}")
        self.root, self.fps = root, float(info["fps"])
        self.video_path = info.get("video_path")
        videos = sorted(k for k, v in info["features"].items() if v.get("dtype") == "video")
        if camera:
            key = camera if camera.startswith("observation.images.") else f"observation.images.{camera}"
            if key not in videos:
                raise DatasetError(f"{info_path}: no video feature {key!r} (videos: {videos})")
        elif videos:
            key = videos[0]
        else:
            raise DatasetError(f"{info_path}: the dataset has no video feature")
        self.video_key = key
        self.chunks_size = int(info.get("chunks_size", 1000))
        tasks = {int(r["task_index"]): r["task"] for r in self._jsonl(root / "meta" / "tasks.jsonl")}
        self.indices: list[int] = []
        for row in self._jsonl(root / "meta" / "episodes.jsonl"):
            index = int(row["episode_index"])
            path = root / info["data_path"].format(episode_chunk=index // self.chunks_size, episode_index=index)
            try:
                table = pq.read_table(path)
            except (OSError, ValueError) as err:
                raise DatasetError(f"{path}: not a readable parquet file ({err})") from None
            names = set(table.column_names)
            state_column = next((c for c in self.STATE_COLUMNS if c in names), None)
            if state_column is None or "action" not in names:
                raise DatasetError(f"{path}: needs columns action and one of {self.STATE_COLUMNS}, has {sorted(names)}")
            action = _check_vectors(
                path, "action", np.stack(table.column("action").to_numpy(zero_copy_only=False)), ACTION_DIM
            )
            raw_state = np.stack(table.column(state_column).to_numpy(zero_copy_only=False))
            state = pad_state(_check_vectors(path, state_column, raw_state, (32, STATE_PADDED_DIM)))
            task = ""
            if "task_index" in names and table.num_rows:
                task = tasks.get(int(table.column("task_index")[0].as_py()), "")
            task = task or (row.get("tasks") or [""])[0]
            self.indices.append(index)
            self.entries.append(EpisodeEntry(path, action.shape[0], task, state, action))
        if not self.entries:
            raise DatasetError(f"{root / 'meta' / 'episodes.jsonl'}: no episodes")

    @staticmethod
    def _json(path: Path) -> dict:
        if not path.is_file():
            raise DatasetError(f"{path}: missing (is this a LeRobot v2.1 dataset?)")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}: not valid JSON ({err})") from None

    @staticmethod
    def _jsonl(path: Path) -> list[dict]:
        if not path.is_file():
            raise DatasetError(f"{path}: missing")
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DatasetError(f"{path}:{number}: not valid JSON ({err})") from None
        return rows

    def _video(self, episode: int) -> Path:
        index = self.indices[episode]
        if not self.video_path:
            raise DatasetError(f"{self.root / 'meta' / 'info.json'}: no video_path")
        return self.root / self.video_path.format(
            episode_chunk=index // self.chunks_size, video_key=self.video_key, episode_index=index
        )

    def image(self, episode: int, frame: int) -> np.ndarray:
        path = self._video(episode)
        return self._open.get_or(path, lambda: VideoReader(path, self.fps)).frame(frame)


class HumanoidEverydaySource(EpisodeSource):
    """Humanoid Everyday: <category>/<task>/episode_*/data.json, frames {image, states, action}."""

    kind = "humanoid_everyday"

    def __init__(self, root: Path, camera: str = ""):
        super().__init__()
        root = self._require(root, "Humanoid Everyday root")
        files = sorted(root.glob("*/*/episode_*/data.json"))
        if not files:
            raise DatasetError(f"{root}: no <category>/<task>/episode_*/data.json files")
        descriptions: dict[str, Any] = {}
        described = root / "task_description_dict.json"
        if described.is_file():
            try:
                descriptions = json.loads(described.read_text())
            except json.JSONDecodeError as err:
                raise DatasetError(f"{described}: not valid JSON ({err})") from None
        self.image_files: list[list[Path]] = []
        for path in files:
            frames = self._frames(path)
            states, actions, images = [], [], []
            for number, frame in enumerate(frames):
                where = f"{path} frame {number}"
                try:
                    hand, arm = frame["states"]["hand_state"], frame["states"]["arm_state"]
                    joints = frame["action"]["joint_angles"]
                    images.append(path.parent / frame["image"])
                except (KeyError, TypeError) as err:
                    raise DatasetError(f"{where}: missing field {err}") from None
                if len(joints) != HE_G1_JOINTS or len(hand) + len(arm) != HE_G1_JOINTS:
                    raise DatasetError(
                        f"{where}: expected the G1 layout ({HE_G1_JOINTS} joint_angles, 14 + 14 states), got "
                        f"{len(joints)} joint_angles and {len(hand)} + {len(arm)} states"
                    )
                states.append(list(hand) + list(arm))
                actions.append(joints)
            upper = _check_vectors(path, "action.joint_angles", actions, HE_G1_JOINTS)
            joint_state = _check_vectors(path, "states", states, HE_G1_JOINTS)
            action = np.zeros((upper.shape[0], ACTION_DIM), dtype=np.float32)
            action[:, ACTION_HANDS] = upper[:, :14]
            action[:, ACTION_ARMS] = upper[:, 14:]
            state = np.zeros((upper.shape[0], STATE_PADDED_DIM), dtype=np.float32)
            state[:, :HE_G1_JOINTS] = joint_state  # hands 14 + arms 14, as the 32-D state starts
            task = path.parent.parent.name
            text = descriptions.get(task, task.replace("_", " "))
            if isinstance(text, list):
                text = text[0] if text else task
            self.image_files.append(images)
            self.entries.append(EpisodeEntry(path, upper.shape[0], str(text), state, action))

    @staticmethod
    def _frames(path: Path) -> list:
        try:
            frames = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(frames, list) or not frames:
            raise DatasetError(f"{path}: expected a non-empty list of frames, got {type(frames).__name__}")
        return frames

    def image(self, episode: int, frame: int) -> np.ndarray:
        path = self.image_files[episode][frame]
        if not path.is_file():
            raise DatasetError(f"{path}: image missing (episode {self.entries[episode].source})")
        return _decode_jpeg(path.read_bytes(), str(path))


SOURCES = {"episodes": HDF5EpisodeSource, "lerobot": LeRobotSource, "humanoid_everyday": HumanoidEverydaySource}


def open_source(kind: str, root: str, camera: str = "", include_failures: bool = False) -> EpisodeSource:
    """include_failures: psi0_ros episodes marked outcome "failure" are read too (other formats
    carry no outcome)."""
    if not root:
        raise ValueError("data.root is empty: pass --set data.root=DIR")
    if kind not in SOURCES:
        raise ValueError(f"unknown data.format {kind!r}; known: {sorted(SOURCES)}")
    if kind == "episodes":
        return HDF5EpisodeSource(Path(root), camera, include_failures)
    return SOURCES[kind](Path(root), camera)
