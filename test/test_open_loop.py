"""Open-loop metrics on hand-made chunks, and `psi0 eval --open-loop` end to end on a tiny
checkpoint and generated episodes (no ROS)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from psi0_ros.constants import ACTION_ARMS, ACTION_DIM, ACTION_HANDS
from psi0_ros.open_loop import (
    LOWER_VELOCITY,
    NearestFrames,
    OpenLoopScores,
    WalkDrift,
    bias_and_spread,
    chunk_errors,
    executed_velocities,
    expert_chunk,
    first_walk,
    hold_state_chunk,
    integrate_base,
    jitter,
    metric_key,
)

HORIZON = 6


def _ramp(frames: int) -> np.ndarray:
    """Actions that move every dim at a constant rate (zero second difference)."""
    return (np.arange(frames)[:, None] * 0.01 + np.linspace(-1, 1, ACTION_DIM)[None]).astype(np.float64)


@dataclass
class _Episode:
    name: str
    state: np.ndarray
    action: np.ndarray
    instruction: str = ""

    def image(self, frame: int) -> np.ndarray:
        return np.zeros((8, 8, 3), np.uint8)


def test_metric_keys_carry_units():
    assert metric_key("arms", "first") == "arms_first_rad"
    assert metric_key("lower_velocity", "first") == "lower_velocity_first"
    assert metric_key("arms", prefix="bias_") == "bias_arms_rad"
    assert metric_key("hands", "chunk", "hold_state_") == "hold_state_hands_chunk_rad"


def test_a_perfect_predictor_scores_zero_and_the_chunk_is_clipped_at_the_episode_end():
    actions = _ramp(20)
    for frame in (0, 17):  # the second chunk runs past the end: 3 recorded ticks
        expert = expert_chunk(actions, frame, HORIZON)
        predicted = np.concatenate([expert, np.full((HORIZON - len(expert), ACTION_DIM), 99.0)])
        assert chunk_errors(predicted, expert, ACTION_ARMS) == (0.0, 0.0)
    scores = OpenLoopScores()
    scores.add_frame(np.repeat(expert_chunk(actions, 2, HORIZON)[None], 3, axis=0), expert_chunk(actions, 2, HORIZON))
    summary = scores.summary()
    for key in ("arms_first_rad", "arms_chunk_rad", "hands_first_rad", "lower_velocity_first", "bias_arms_rad"):
        assert summary[key] == pytest.approx(0.0, abs=1e-12), key
    assert summary["spread_arms_rad"] == pytest.approx(0.0, abs=1e-12) and summary["frames"] == 1


def test_a_constant_offset_scores_the_offset_and_bias_and_spread_separate():
    expert = expert_chunk(_ramp(30), 4, HORIZON)
    first, whole = chunk_errors(expert + 0.25, expert, ACTION_HANDS)
    assert first == pytest.approx(0.25) and whole == pytest.approx(0.25)
    # Two samples at +-0.1 around an offset of 0.3: bias 0.3, spread 0.1, each sample 0.2 / 0.4 off.
    samples = np.stack([expert + 0.2, expert + 0.4])
    bias, spread = bias_and_spread(samples, expert, ACTION_ARMS)
    assert bias == pytest.approx(0.3) and spread == pytest.approx(0.1)
    scores = OpenLoopScores()
    scores.add_frame(samples, expert)
    summary = scores.summary()
    assert summary["arms_first_rad"] == pytest.approx(0.3)  # mean of the two draws' errors
    assert summary["bias_arms_rad"] == pytest.approx(0.3) and summary["spread_arms_rad"] == pytest.approx(0.1)


def test_jitter_of_a_smooth_ramp_is_zero_and_of_a_zigzag_is_not():
    ramp = _ramp(10)
    assert jitter(ramp, ACTION_ARMS) == pytest.approx(0.0, abs=1e-12)
    zigzag = ramp.copy()
    zigzag[1::2, ACTION_ARMS] += 0.1  # +-0.1 alternating: second difference 0.2 in size
    assert jitter(zigzag, ACTION_ARMS) == pytest.approx(0.2)
    assert np.isnan(jitter(ramp[:2], ACTION_ARMS))
    scores = OpenLoopScores()
    scores.add_frame(zigzag[None, :HORIZON], ramp[:HORIZON])
    summary = scores.summary()
    assert summary["jitter_arms"] == pytest.approx(0.2)
    assert summary["expert_jitter_arms"] == pytest.approx(0.0, abs=1e-12)


def test_hold_state_baseline_on_a_hand_made_episode():
    actions = _ramp(12)
    state = np.zeros(32)
    state[:28] = actions[3, :28] - 0.05  # the state lags the command by 0.05 rad at frame 3
    expert = expert_chunk(actions, 3, HORIZON)
    held = hold_state_chunk(state, expert, HORIZON)
    assert held.shape == (HORIZON, ACTION_DIM)
    np.testing.assert_allclose(held[:, :28], np.repeat(state[None, :28], HORIZON, axis=0))
    assert (held[:, LOWER_VELOCITY] == 0).all() and (held[:, 34] == 0).all()
    first, whole = chunk_errors(held, expert, ACTION_ARMS)
    assert first == pytest.approx(0.05)
    assert whole == pytest.approx(0.05 + 0.01 * np.arange(HORIZON).mean())  # the ramp moves on, the hold does not
    scores = OpenLoopScores()
    scores.add_frame(expert[None], expert, state=state)
    summary = scores.summary()
    assert summary["hold_state_arms_first_rad"] == pytest.approx(0.05)
    assert summary["hold_state_lower_velocity_first"] == pytest.approx(np.abs(expert[0, LOWER_VELOCITY]).mean())


def test_nearest_frame_baseline_picks_the_closest_state_of_another_episode():
    a = _Episode("a", np.zeros((5, 36)), np.full((5, 36), 1.0))
    b = _Episode("b", np.full((4, 36), 0.5), np.arange(4)[:, None] * np.ones((1, 36)))
    nearest = NearestFrames([a, b])
    chunk = nearest.chunk(np.full(36, 0.45), HORIZON)
    np.testing.assert_allclose(chunk[:, 0], [0, 1, 2, 3, 3, 3])  # padded with the last action
    np.testing.assert_allclose(nearest.chunk(np.full(36, 0.45), HORIZON, exclude="b")[:, 0], 1.0)
    with pytest.raises(ValueError, match="only training episode"):
        NearestFrames([a]).chunk(np.zeros(36), HORIZON, exclude="a")


def _walk_episode(vx: float, vy: float, start: int = 40, ticks: int = 36, frames: int = 120) -> np.ndarray:
    """Recorded actions: stand, walk at (vx, vy) for `ticks`, stand (the grasp), walk again."""
    actions = np.zeros((frames, ACTION_DIM))
    actions[start : start + ticks, 32:34] = (vx, vy)
    actions[start + ticks + 30 : start + ticks + 50, 32] = 0.2  # a second walk is not the first
    return actions


def test_the_base_integrates_by_the_kinematic_rules():
    rate = 30.0
    below = np.tile([0.09, -0.05, 0.05], (60, 1))  # every component under the stand speed
    assert np.all(integrate_base(below, rate) == 0.0)
    walk = np.zeros((90, 3))
    walk[:60, 0] = 0.3
    path = integrate_base(walk, rate)
    # 0.3 m/s for 2 s, less the acceleration ramp (0.3 s at 1 m/s^2 each way: 0.3^2 / 2 / 1 per ramp end)
    assert path[-1, 0] == pytest.approx(0.3 * 2.0, abs=0.02) and path[-1, 1] == 0.0
    assert path[-1, 0] == pytest.approx(path[70, 0])  # at rest 10 ticks after the last command
    assert first_walk(walk) == (0, 59) and first_walk(below) is None


def test_executed_velocities_follow_each_chunk_for_its_execution_horizon():
    def chunk_at(tick: int) -> np.ndarray:
        chunk = np.zeros((HORIZON, ACTION_DIM))
        chunk[:, 32] = tick + np.arange(HORIZON)  # row r of the chunk planned at t is for tick t + r
        return chunk

    executed = executed_velocities(chunk_at, 10, every=4)
    assert executed[:, 0].tolist() == list(range(10))  # rows 0-3 of the chunks at 0, 4, 8 (cut at the end)


def test_walk_drift_is_zero_for_the_recording_and_a_bias_for_a_biased_walk():
    episodes = [_walk_episode(0.3, vy) for vy in (-0.12, 0.0, 0.04, 0.1)]

    def replay(actions: np.ndarray, offset: float = 0.0, mean_walk: bool = False):
        def chunk_at(tick: int) -> np.ndarray:
            chunk = padded_chunk_of(actions, tick)
            walking = np.abs(chunk[:, 32:34]).max(axis=1) >= 0.1
            if mean_walk:
                chunk[walking, 33] = 0.005  # the average layout's walk, whatever this one's
            chunk[walking, 33] += offset
            return chunk

        return chunk_at

    perfect, biased, average = WalkDrift(15), WalkDrift(15), WalkDrift(15)
    for actions in episodes:
        perfect.add(actions, replay(actions))
        biased.add(actions, replay(actions, offset=0.03))
        average.add(actions, replay(actions, mean_walk=True))
    exact = perfect.summary()
    assert exact["walk_drift_m"] == pytest.approx(0.0, abs=1e-12) and exact["walk_drift_within_15mm"] == 1.0
    assert exact["walk_vy_spread_ratio"] == pytest.approx(1.0) and exact["walk_vy_corr"] == pytest.approx(1.0)
    assert exact["walk_episodes"] == 4 and exact["walk_every"] == 15
    # vy 0.03 m/s too high for the 36 ticks (1.2 s) of the first walk: 3.6 cm to the side
    assert biased.summary()["walk_drift_m"] == pytest.approx(0.03 * 36 / 30.0, abs=2e-3)
    assert biased.summary()["walk_drift_within_15mm"] == 0.0
    assert average.summary()["walk_vy_spread_ratio"] == 0.0 and "walk_vy_corr" not in average.summary()
    standing = WalkDrift(15)
    standing.add(np.zeros((60, ACTION_DIM)), lambda tick: np.zeros((HORIZON, ACTION_DIM)))
    assert standing.summary() == {"walk_episodes": 0, "walk_every": 15}


def padded_chunk_of(actions: np.ndarray, tick: int) -> np.ndarray:
    steps = np.minimum(tick + np.arange(HORIZON * 3), len(actions) - 1)
    return actions[steps].copy()


def test_psi0_eval_open_loop_end_to_end(tmp_path: Path, single_thread):
    from psi0_ros.commands import eval as eval_command
    from psi0_ros.policy.tiny import write_tiny_checkpoint
    from training import synthetic

    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt")
    synthetic.write_episodes(tmp_path / "train", episodes=2, frames=12, size=(32, 32))
    held_out = synthetic.write_episodes(tmp_path / "held_out", episodes=1, frames=12, size=(32, 32), seed=5)
    out = tmp_path / "open_loop.json"
    parser = argparse.ArgumentParser()
    eval_command.configure(parser)

    def main(argv: list[str]) -> int:
        return eval_command.run(parser.parse_args(argv))

    argv = ["--open-loop", str(held_out[0]), "--checkpoint", str(checkpoint), "--json", str(out)]
    argv += ["--samples", "2", "--stride", "4", "--train-episodes", str(tmp_path / "train"), "--train-split"]
    assert main(argv) == 0
    summary = json.loads(out.read_text())
    required = (
        "arms_first_rad",
        "arms_chunk_rad",
        "hands_first_rad",
        "hands_chunk_rad",
        "lower_velocity_first",
        "hold_state_arms_first_rad",
        "hold_state_arms_chunk_rad",
        "nearest_arms_first_rad",
        "bias_arms_rad",
        "spread_arms_rad",
        "jitter_arms",
        "expert_jitter_arms",
        "frames",
        "walk_drift_m",  # the generated episodes walk from their first tick
        "walk_episodes",
    )
    for split, frames in (("held_out", 3), ("train", 6)):
        assert all(key in summary[split] for key in required), sorted(summary[split])
        assert summary[split]["frames"] == frames
        assert all(np.isfinite(v) for v in summary[split].values())
        assert summary[split]["spread_arms_rad"] > 0  # two draws from different noise
    assert main(argv) == 0  # reproducible: policy.reset() per episode
    assert json.loads(out.read_text()) == summary
