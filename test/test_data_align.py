"""Alignment: the rules of align.py, and jittered 30/60/100 Hz streams with drops landing on the
30 Hz grid as docs/data.md says (state interpolated or held, action = command in force, image =
nearest frame or the episode is flagged)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from psi0_ros.constants import (
    TOPIC_IMAGE,
    TOPIC_JOINT_STATES,
    TOPIC_LOWER_BODY_COMMAND,
    TOPIC_UPPER_BODY_COMMAND,
)
from psi0_ros.data.align import control_grid, hold, interpolate, nearest
from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.convert import convert_bags
from psi0_ros.data.hdf5 import read_episode
from psi0_ros.data.synthetic import (
    _FREQ,
    BAG_START_NS,
    SceneRenderer,
    StreamSpec,
    SyntheticBag,
    SyntheticEpisode,
    joint_positions_at,
    write_synthetic_bag,
)
from psi0_ros.g1 import table
from psi0_ros.layout import STATE_JOINT_COLUMNS

MS = 1_000_000


def _encode(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.int16)


def test_control_grid_is_inclusive_and_exact():
    ticks = control_grid(0, 1_000_000_000, 30.0)
    assert ticks.size == 31 and ticks[0] == 0 and ticks[-1] == 1_000_000_000
    assert np.all(np.diff(ticks) >= 33_333_333) and np.all(np.diff(ticks) <= 33_333_334)
    assert control_grid(5, 4, 30.0).size == 0


def test_hold_takes_the_newest_sample_at_or_before():
    times = np.array([10, 20, 20, 40]) * MS
    values = np.array([[1.0], [2.0], [3.0], [4.0]])
    held = hold(times, values, np.array([5, 10, 25, 40, 90]) * MS)
    assert held.valid.tolist() == [False, True, True, True, True]
    assert held.values[:, 0].tolist() == [0.0, 1.0, 3.0, 4.0, 4.0]  # ties: the later message
    assert (held.age_ns // MS).tolist() == [0, 0, 5, 0, 50]


def test_interpolate_is_exact_on_samples_and_linear_between():
    times = np.array([0, 10, 30]) * MS
    values = np.array([[0.0, 1.0], [10.0, 1.0], [30.0, -1.0]])
    out = interpolate(times, values, np.array([-1, 0, 5, 10, 20, 30, 31]) * MS)
    assert out.valid.tolist() == [False, True, True, True, True, True, False]
    assert out.values[1:6, 0].tolist() == [0.0, 5.0, 10.0, 20.0, 30.0]
    assert out.values[4, 1] == 0.0
    assert (out.span_ns // MS).tolist() == [0, 0, 10, 0, 20, 0, 0]


def test_nearest_prefers_the_earlier_frame_on_a_tie():
    found = nearest(np.array([0, 10, 20]) * MS, np.array([4, 5, 6, 25]) * MS)
    assert found.index.tolist() == [0, 0, 1, 2]
    assert (found.offset_ns // MS).tolist() == [-4, -5, 4, -5]


def _in_force(stamps: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Index of the newest stamp at or before each tick (the test's own statement of the rule)."""
    order = np.argsort(stamps, kind="stable")
    return order[np.searchsorted(stamps[order], ticks, side="right") - 1]


@pytest.mark.parametrize("camera_hz", [30.0, 60.0])
def test_jittered_streams_with_drops_land_on_the_grid(tmp_path, camera_hz):
    spec = SyntheticBag(
        duration_s=3.0,
        episodes=(SyntheticEpisode(0.4, 2.6),),
        image=StreamSpec(camera_hz, jitter_s=0.003, drop=0.1, latency_s=0.012),
        joint_states=StreamSpec(100.0, jitter_s=0.001, drop=0.1),
        imu=StreamSpec(100.0, jitter_s=0.001),
        upper_body=StreamSpec(30.0, jitter_s=0.004, drop=0.1),
        lower_body=StreamSpec(60.0, jitter_s=0.002, drop=0.1),
        width=64,
        height=48,
        seed=int(camera_hz),
    )
    record = write_synthetic_bag(tmp_path / "bag", spec)
    ticks = control_grid(BAG_START_NS + 400 * MS, BAG_START_NS + 2600 * MS, 30.0)
    results = {}
    for rule in ("interpolate", "hold"):
        out = tmp_path / rule
        summary = convert_bags([record.path], out, ConvertConfig(state_rule=rule), workers=1)
        assert summary.ok, summary.to_dict()
        results[rule] = read_episode(out / "bag_episode_000000.hdf5")
    episode = results["interpolate"]
    # The grid: every tick from START to STOP (data exists before START, so nothing is trimmed).
    assert episode.num_frames == ticks.size == 67
    assert np.allclose(episode.timestamps, np.arange(67) / 30.0, atol=1e-9)

    # Action: exactly the command in force (newest header stamp at or before the tick).
    for topic, columns in ((TOPIC_UPPER_BODY_COMMAND, slice(0, 28)), (TOPIC_LOWER_BODY_COMMAND, slice(28, 36))):
        stamps, _ = record.streams[topic].arrays()
        values = np.array(record.streams[topic].values)
        expected = values[_in_force(stamps, ticks)].astype(np.float32)
        assert np.array_equal(episode.action[:, columns], expected), topic
        assert np.array_equal(results["hold"].action[:, columns], expected)

    # State, interpolated: within the linear-interpolation error bound of the true trajectory.
    js_stamps, _ = record.streams[TOPIC_JOINT_STATES].arrays()
    t_ticks = (ticks - BAG_START_NS) / 1e9
    truth = joint_positions_at(t_ticks)
    h = np.diff(np.sort(js_stamps)).max() / 1e9  # widest bracket, drops included
    amplitude = 0.4 * (table("upper") - table("lower")) / 2.0
    bound = amplitude * (2 * np.pi * _FREQ) ** 2 * h**2 / 8 + 1e-9
    assert np.all(np.abs(episode.joint_positions - truth) <= bound)
    assert np.all(np.abs(episode.state[:, :28] - truth[:, STATE_JOINT_COLUMNS]) <= bound[STATE_JOINT_COLUMNS] + 1e-6)
    # State, held: exactly the newest sample at or before the tick.
    js_values = np.array(record.streams[TOPIC_JOINT_STATES].values)
    held = js_values[_in_force(js_stamps, ticks)]
    assert np.array_equal(results["hold"].joint_positions, held)
    assert np.array_equal(results["hold"].state[:, :28], held[:, STATE_JOINT_COLUMNS].astype(np.float32))
    # Torso roll/pitch/yaw/height of the state: the lower-body command in force, not the waist joints.
    assert np.array_equal(episode.state[:, 28:32], episode.action[:, 28:32])
    assert not np.array_equal(results["hold"].joint_positions, episode.joint_positions)

    # Image: the nearest frame (ties to the earlier), its offset recorded, content within JPEG error.
    cam_stamps, _ = record.streams[TOPIC_IMAGE].arrays()
    frame_ids = np.array(record.streams[TOPIC_IMAGE].values)
    distance = np.abs(cam_stamps[None, :] - ticks[:, None])
    chosen = np.argmin(distance, axis=1)  # argmin returns the first (earlier) on ties
    assert np.allclose(episode.image_offsets["ego"], (cam_stamps[chosen] - ticks) / 1e9, atol=1e-6)
    renderer = SceneRenderer(64, 48, spec.seed)

    def frame(i: int) -> np.ndarray:
        return renderer.frame((cam_stamps[i] - BAG_START_NS) / 1e9, int(frame_ids[i])).astype(np.int16)

    for k in (0, 33, 66):
        decoded = _decode(episode.images["ego"][k])
        # Within JPEG tolerance: no further from the frame than JPEG q90 itself puts it.
        jpeg_error = np.abs(_decode(_encode(frame(chosen[k]).astype(np.uint8))) - frame(chosen[k])).mean()
        error = np.abs(decoded - frame(chosen[k])).mean()
        assert error <= jpeg_error + 0.5
        neighbour = chosen[k] + 1 if chosen[k] + 1 < cam_stamps.size else chosen[k] - 1
        assert error < np.abs(decoded - frame(neighbour)).mean()  # and it is that frame, not the next
    late = np.abs(episode.image_offsets["ego"]) > 0.05
    flagged = [f for f in episode.attrs["flags"] if f.startswith("image_gap")]
    assert bool(flagged) == bool(late.any())


def test_a_camera_gap_flags_the_episode_and_keeps_the_nearest_frame(tmp_path):
    spec = SyntheticBag(
        duration_s=3.0,
        episodes=(SyntheticEpisode(0.3, 2.7),),
        image=StreamSpec(30.0, drop=0.6),  # long runs of dropped frames
        joint_states=StreamSpec(100.0),
        imu=None,
        width=32,
        height=24,
        seed=5,
    )
    record = write_synthetic_bag(tmp_path / "bag", spec)
    out = tmp_path / "out"
    assert convert_bags([record.path], out, ConvertConfig(image_tolerance_s=0.04), workers=1).ok
    episode = read_episode(out / "bag_episode_000000.hdf5")
    late = np.abs(episode.image_offsets["ego"]) > 0.04
    assert late.any()
    flags = [f for f in episode.attrs["flags"] if f.startswith("image_gap ego")]
    assert flags and f"{int(late.sum())} of {episode.num_frames} ticks" in flags[0]
    assert episode.imu is None  # no IMU topic: no IMU group, nothing invented


def test_clock_choice_keeps_header_stamps_of_a_lagging_recorder():
    from psi0_ros.data.clocks import choose_times

    config = ConvertConfig()
    header = np.arange(0, 3_000_000_000, 33_333_333, dtype=np.int64) + 1_700_000_000 * 10**9
    # Received 1.4 s late (a recorder falling behind): still the recorder's clock, keep the stamps.
    times, clock = choose_times(header + 1_400_000_000, header, config)
    assert clock == "header" and times is header
    # Stamps from another clock (sim time, 5 s into a simulation): align on receive time.
    sim_stamps = header - 1_700_000_000 * 10**9 + 5_000_000_000
    times, clock = choose_times(header, sim_stamps, config)
    assert clock.startswith("receive (header clock off by") and np.array_equal(times, header)
    # Stamps 3 s ahead of the receive time: a clock that is not the recorder's.
    assert choose_times(header, header + 3_000_000_000, config)[1].startswith("receive (header clock off")
    # Zero stamps and an explicit choice.
    assert choose_times(header, np.zeros_like(header), config)[1] == "receive (zero header stamps)"
    assert choose_times(header + 5, header, ConvertConfig(time_source="receive"))[1] == "receive"


def test_state_torso_is_the_previously_commanded_lower_body_not_the_waist():
    from psi0_ros.constants import STATE_NAMES
    from psi0_ros.g1 import ALL_JOINTS, JOINT_INDEX
    from psi0_ros.layout import build_state

    joints = np.random.default_rng(0).uniform(-0.5, 0.5, (3, len(ALL_JOINTS)))
    command = np.array([[0.1, 0.2, 0.3, 0.7, 0.4, 0.0, 0.1, 0.5]] * 3)  # roll, pitch, yaw, height, vx, vy, vyaw, yaw
    state = build_state(joints, command)
    assert STATE_NAMES[28:32] == ("torso_roll", "torso_pitch", "torso_yaw", "torso_height")
    assert np.allclose(state[:, 28:32], command[:, :4])  # Psi0: previously commanded torso values
    assert np.allclose(state[:, :28], joints[:, [JOINT_INDEX[n] for n in STATE_NAMES[:28]]])
    assert not state[:, 32:].any()
