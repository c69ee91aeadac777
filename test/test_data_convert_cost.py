"""What `psi0 convert` spends on a frame (`psi0 bench convert` measures it; these tests pin the
causes found there, none by timing):

- a bag's message definitions were parsed (~10 ms each, by rosbags) for every episode and every
  connection: now once per process and definition;
- camera frames went through rosbags' deserialiser, which copies the ~1 MB of pixels: the
  sensor_msgs/Image CDR fast path returns a view of them, agrees with rosbags on every field, and
  steps aside (None) when unsure.
"""

from __future__ import annotations

import numpy as np
import pytest

import psi0_ros.data.typestore as typestore_module
from psi0_ros.data.cdr import decode_image
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
