"""What `psi0 convert` spends on a frame (`psi0 bench convert` measures it; these tests pin the
causes found there, none by timing):

- a bag's message definitions were parsed (~10 ms each, by rosbags) for every episode and every
  connection: now once per process and definition;
- camera frames went through rosbags' deserialiser, which copies the ~1 MB of pixels: the
  sensor_msgs/Image CDR fast path returns a view of them, agrees with rosbags on every field, and
  steps aside (None) when unsure;
- the 2 s look-back for the commands in force at START was read for every stream, camera frames
  included, and dropped: only the commands are read that far back now;
- frames in the margins around an episode were JPEG-encoded whether or not a tick chose them:
  now only when one does;
- a worker's first full garbage collection walked every object it inherited from the parent
  (~70 ms, and a copy of nearly every page they live on): the workers inherit them frozen.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import psi0_ros.data.typestore as typestore_module
from psi0_ros.data.align import control_grid
from psi0_ros.data.aligners import CameraAligner
from psi0_ros.data.bags import BagReader, Stamped
from psi0_ros.data.cdr import ImageSample, decode_image
from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.extract import extract_episode
from psi0_ros.data.jpeg import encode_jpeg
from psi0_ros.data.planning import plan_episodes
from psi0_ros.data.synthetic import StreamSpec, SyntheticBag, SyntheticEpisode, write_synthetic_bag
from psi0_ros.data.typestore import bag_definition_store, make_typestore

STORE = make_typestore()
T = STORE.types
IMAGE = "sensor_msgs/msg/Image"


def _image(frame_id: str, encoding: str, width: int, height: int, channels: int, pad: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    step = width * channels + pad
    msg = T[IMAGE](
        header=T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=seed, nanosec=7 * seed), frame_id=frame_id
        ),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=rng.integers(0, 256, step * height, dtype=np.uint8),
    )
    return bytes(STORE.serialize_cdr(msg, IMAGE))


# frame_id and encoding lengths move every later field across the 4-byte alignments
@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "head_camera"])
@pytest.mark.parametrize(
    ("encoding", "channels", "pad"), [("rgb8", 3, 0), ("bgr8", 3, 1), ("mono8", 1, 3), ("rgba8", 4, 0)]
)
def test_image_fast_path_matches_rosbags(frame_id, encoding, channels, pad):
    raw = _image(frame_id, encoding, 5, 3, channels, pad, seed=len(frame_id) + pad)
    fast, ref = decode_image(raw), STORE.deserialize_cdr(raw, IMAGE)
    assert fast is not None
    assert fast.stamp_ns == ref.header.stamp.sec * 10**9 + ref.header.stamp.nanosec
    assert (fast.height, fast.width, fast.encoding, fast.is_bigendian, fast.step) == (
        ref.height,
        ref.width,
        ref.encoding,
        ref.is_bigendian,
        ref.step,
    )
    assert fast.data.dtype == np.uint8 and np.array_equal(fast.data, ref.data)
    assert not hasattr(fast, "format")  # the camera aligner tells CompressedImage apart by that field


def test_the_pixels_are_a_view_of_the_message():
    raw = bytearray(_image("cam", "rgb8", 64, 48, 3, 0, seed=1))
    sample = decode_image(raw)
    assert sample is not None and not sample.data.flags.owndata
    assert np.shares_memory(sample.data, np.frombuffer(raw, dtype=np.uint8))


def test_what_the_fast_path_does_not_read_falls_back_to_rosbags():
    raw = _image("cam", "rgb8", 4, 4, 3, 0, seed=2)
    assert decode_image(raw[: len(raw) - 1]) is None  # pixels cut off
    assert decode_image(raw[:20]) is None  # cut off in the fields
    assert decode_image(b"\x01\x01" + raw[2:]) is None  # big-endian CDR


def test_a_bag_definition_is_parsed_once_per_process():
    text = "float64 value\nstring label\n"
    first = bag_definition_store(text, "demo_msgs/msg/Reading")
    assert bag_definition_store(text, "demo_msgs/msg/Reading") is first
    assert "demo_msgs/msg/Reading" in first.types


def test_converting_parses_each_bag_definition_once(tmp_path, monkeypatch):
    """Two bags of two episodes each, converted in this process: every definition the bags carry
    is parsed once, not once per bag and episode (8 parses of each before)."""
    from psi0_ros.data.config import ConvertConfig
    from psi0_ros.data.convert import convert_bags
    from psi0_ros.data.synthetic import SyntheticBag, SyntheticEpisode, write_synthetic_bag

    episodes = (SyntheticEpisode(0.3, 1.0), SyntheticEpisode(1.3, 2.0))
    bags = [tmp_path / "a", tmp_path / "b"]
    for bag in bags:
        write_synthetic_bag(bag, SyntheticBag(duration_s=2.3, episodes=episodes, width=32, height=24))
    typestore_module.bag_definition_store.cache_clear()
    parsed: list[tuple[str, str]] = []
    real = typestore_module.get_types_from_msg

    def counting(text: str, name: str):
        parsed.append((name, text))
        return real(text, name)

    monkeypatch.setattr(typestore_module, "get_types_from_msg", counting)
    summary = convert_bags(bags, tmp_path / "episodes", ConvertConfig(), workers=1)
    assert summary.ok and len(summary.episodes) == 4
    assert parsed and len(parsed) == len(set(parsed)), sorted(name for name, _ in parsed)


def _bytes_read() -> int:
    """Bytes this process has read through read(2)/pread(2) so far (Linux /proc/self/io)."""
    lines = Path("/proc/self/io").read_text().splitlines()
    return int(next(line for line in lines if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_the_look_back_reads_no_camera_frame(tmp_path):
    """An episode 2.5-3.0 s into a 4 s bag of 640x480 frames (0.9 MB each): its commands are read
    from lookback_s (2 s) before START, its other streams from 0.5 s before. The frames of the
    look-back are not read at all; before, 1.5 s of them (45 frames) were read and dropped."""
    width, height, rate = 640, 480, 30.0
    spec = SyntheticBag(
        duration_s=4.0,
        episodes=(SyntheticEpisode(2.5, 3.0),),
        image=StreamSpec(rate, latency_s=0.010),
        joint_states=StreamSpec(100.0),
        imu=StreamSpec(100.0),
        width=width,
        height=height,
    )
    write_synthetic_bag(tmp_path / "bag", spec)
    config = ConvertConfig()
    with BagReader(tmp_path / "bag") as reader:
        span = plan_episodes(reader, config).episodes[0]
        before = _bytes_read()
        episode = extract_episode(reader, span, config)
        read = _bytes_read() - before
    assert episode.num_frames == 16
    # at most the frames from 0.5 s before START to the end of the bag, and 4 MB for the rest
    allowed = (4.0 - (2.5 - 0.5)) * rate * width * height * 3 + 4e6
    assert read < allowed, (read, allowed)


def _frame(stamp_ns: int, seed: int) -> Stamped:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    return Stamped(stamp_ns, stamp_ns, ImageSample(stamp_ns, 24, 32, "rgb8", 0, 32 * 3, pixels.reshape(-1)))


def test_frames_in_the_margins_are_encoded_only_when_a_tick_selects_them():
    """START 1.0 s, STOP 2.0 s, frames every 25 ms from 0.895 to 2.095 s (40 Hz, against the
    30 Hz grid): of the frames in the margins before START and after STOP, the one 5 ms before
    START is selected and encoded, the others never are; every selected frame is the JPEG of its
    pixels."""
    config = ConvertConfig()
    start, stop = 1_000_000_000, 2_000_000_000
    camera = CameraAligner("ego", "/camera/ego/image_raw", config, start, stop)
    frames = [_frame(895_000_000 + 25_000_000 * i, i) for i in range(49)]
    for m in frames:
        camera.add(m)
    ticks = control_grid(start, stop, config.fps)
    index, _, valid = camera.align(ticks)
    assert valid.all()
    jpegs = camera.frames(index)
    kept = [m for m in frames if camera.lo <= m.receive_ns <= camera.hi]  # the aligner's frames, in order
    assert jpegs == [encode_jpeg(kept[i].msg.data.reshape(24, 32, 3), config.jpeg_quality) for i in index]
    selected = set(index.tolist())
    margins = {i for i, m in enumerate(kept) if not start <= m.receive_ns <= stop}
    assert margins - selected and margins & selected, "some margin frames are selected, some not"
    encoded = {i for i, value in enumerate(camera.samples.values) if isinstance(value, bytes)}
    assert encoded == selected | (set(range(len(kept))) - margins)


@dataclass(frozen=True)
class _FreezeProbeSink:
    """Writes the episode as `psi0 convert` does and notes, per episode, how many objects the
    worker process that wrote it holds frozen (gc.get_freeze_count)."""

    notes: Path

    def __call__(self, episode, job) -> Path:
        from psi0_ros.data.hdf5 import write_episode

        (self.notes / f"{job.span.index}.frozen").write_text(str(gc.get_freeze_count()))
        return write_episode(episode, job.output)


def test_workers_never_collect_what_they_inherit(tmp_path):
    """Episodes converted by 2 workers: in each worker the objects inherited from the parent are
    frozen (a full collection there does not walk them), and the parent's own are not (it collects
    them as before)."""
    from psi0_ros.data.jobs import run_jobs
    from psi0_ros.data.planning import plan

    episodes = (SyntheticEpisode(0.3, 1.0), SyntheticEpisode(1.3, 2.0), SyntheticEpisode(2.3, 3.0))
    bag = tmp_path / "bag"
    write_synthetic_bag(bag, SyntheticBag(duration_s=3.3, episodes=episodes, width=32, height=24))
    config = ConvertConfig()
    _, jobs, _ = plan([bag], tmp_path / "episodes", config)
    notes = tmp_path / "notes"
    notes.mkdir()
    inherited = len(gc.get_objects())
    done = run_jobs(jobs, config, _FreezeProbeSink(notes), workers=2)
    assert [r.status for r in done.results] == ["ok"] * 3, [r.error for r in done.results]
    frozen = {p.stem: int(p.read_text()) for p in notes.iterdir()}
    assert len(frozen) == 3 and all(count >= inherited // 2 for count in frozen.values()), (frozen, inherited)
    assert gc.get_freeze_count() == 0
