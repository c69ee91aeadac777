"""Vector layout, statistics from episode files, and normalisation to [-1, 1]."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from psi0_ros.constants import ACTION_DIM, ACTION_NAMES, STATE_DIM
from psi0_ros.layout import pad_state
from psi0_ros.policy.transforms import (
    ArrayStats,
    Normalizer,
    NormStats,
    compute_stats,
    stats_from_episodes,
    stats_from_reference,
)


def _write_episode(path: Path, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    actions = rng.normal(0.0, 0.5, (frames, ACTION_DIM)).astype(np.float32)
    actions[:, 35] = 0.25  # a command that never changes in these demos
    states = np.zeros((frames, 36), np.float32)
    states[:, :STATE_DIM] = rng.normal(0.0, 0.3, (frames, STATE_DIM))
    with h5py.File(path, "w") as episode:
        episode["/action"] = actions
        episode["/observations/state"] = states
    return actions, states


def test_state_is_zero_padded_to_the_action_width():
    state = np.arange(32, dtype=np.float32)
    padded = pad_state(state)
    assert padded.shape == (36,) and np.array_equal(padded[:32], state) and not padded[32:].any()
    assert np.array_equal(pad_state(padded), padded)
    assert pad_state(np.ones((5, 32))).shape == (5, 36)
    with pytest.raises(ValueError, match="32"):
        pad_state(np.ones(31))


def test_statistics_from_episode_files(tmp_path):
    a1, s1 = _write_episode(tmp_path / "episode_0.h5", 50, seed=1)
    a2, s2 = _write_episode(tmp_path / "episode_1.h5", 70, seed=2)
    stats = stats_from_episodes([tmp_path / "episode_0.h5", tmp_path / "episode_1.h5"])
    actions = np.concatenate([a1, a2]).astype(np.float64)
    assert stats.action.count == 120
    assert np.allclose(stats.action.min, actions.min(0)) and np.allclose(stats.action.max, actions.max(0))
    assert np.allclose(stats.action.q99, np.quantile(actions, 0.99, axis=0))
    assert np.allclose(stats.state.mean, np.concatenate([s1, s2]).mean(0))
    loaded = NormStats.load(_saved(stats, tmp_path / "normalization.json"))
    assert np.array_equal(loaded.action.q01, stats.action.q01) and loaded.state.count == 120


def _saved(stats: NormStats, path: Path) -> Path:
    stats.save(path)
    return path


def test_bad_episodes_and_statistics_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        stats_from_episodes([tmp_path / "missing.h5"])
    with h5py.File(tmp_path / "no_action.h5", "w") as episode:
        episode["/observations/state"] = np.zeros((3, 36))
    with pytest.raises(ValueError, match="no /action"):
        stats_from_episodes([tmp_path / "no_action.h5"])
    with pytest.raises(ValueError, match="non-finite"):
        compute_stats([np.array([[np.nan, 1.0]])])
    (tmp_path / "bad.json").write_text('{"schema_version": 1, "action_names": ["x"]}')
    with pytest.raises(ValueError, match="action layout"):
        NormStats.load(tmp_path / "bad.json")


def _stats() -> NormStats:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-2.0, 3.0, (500, ACTION_DIM))
    actions[:, 35] = 0.25  # flat
    actions[0, 0] = 50.0  # an outlier that only the q99 bounds ignore
    states = np.zeros((500, 36))
    states[:, :32] = rng.uniform(-1.0, 1.0, (500, 32))
    return NormStats(action=compute_stats([actions]), state=compute_stats([states]))


def test_bounds_normalisation_maps_min_max_to_minus_one_one():
    stats = _stats()
    norm = Normalizer(stats, "bounds")
    low, high = stats.action.min.astype(np.float32), stats.action.max.astype(np.float32)
    assert np.allclose(norm.normalize_actions(low)[:35], -1.0) and np.allclose(norm.normalize_actions(high)[:35], 1.0)
    assert norm.normalize_actions(high + 10.0)[:35].max() == 1.0  # clipped
    middle = (low + high) / 2
    assert np.allclose(norm.denormalize_actions(norm.normalize_actions(middle))[:35], middle[:35], atol=1e-5)
    # a flat dimension keeps its raw value on the way in, and is its constant on the way out (Psi0)
    assert norm.normalize_actions(middle)[35] == pytest.approx(0.25)
    assert norm.denormalize_actions(np.zeros(ACTION_DIM, np.float32))[35] == pytest.approx(0.25)
    # denormalised model output never leaves the training bounds
    wild = norm.denormalize_actions(np.full(ACTION_DIM, 7.0, np.float32))
    assert np.allclose(wild[:35], high[:35])


def test_q99_normalisation_ignores_outliers_and_state_padding_is_zero():
    stats = _stats()
    bounds, q99 = Normalizer(stats, "bounds"), Normalizer(stats, "q99")
    typical = np.full(ACTION_DIM, 2.9, np.float32)
    assert q99.normalize_actions(typical)[0] > bounds.normalize_actions(typical)[0] + 0.5
    state = np.full(32, 0.5, np.float32)
    normalized = q99.normalize_state(state)
    assert normalized.shape == (36,) and not normalized[32:].any() and (np.abs(normalized[:32]) <= 1).all()
    assert np.array_equal(Normalizer(stats, "bounds", normalize_state=False).normalize_state(state), pad_state(state))
    with pytest.raises(ValueError, match="non-finite"):
        q99.normalize_state(np.full(32, np.nan))
    with pytest.raises(ValueError, match=ACTION_NAMES[3]):
        q99.normalize_actions(np.where(np.arange(36) == 3, np.inf, 0.0))


def test_stats_reject_wrong_widths():
    flat = ArrayStats(*(np.zeros(10) for _ in range(6)), count=1)
    with pytest.raises(ValueError, match="36-D"):
        NormStats(action=flat, state=flat)


def test_psi0_stats_files_are_padded_and_checked():
    data = {"action": {"min": [-1.0] * 36, "max": [1.0] * 36, "q01": [-0.5] * 36, "q99": [0.5] * 36}}
    data["states"] = {"min": [-2.0] * 32, "max": [2.0] * 32}
    stats = stats_from_reference(data)
    assert stats.state.dim == 36 and not stats.state.max[32:].any() and stats.state.q99[0] == 2.0
    assert Normalizer(stats, "q99").normalize_actions(np.full(36, 0.25, np.float32))[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="'states'"):
        stats_from_reference({"action": data["action"]})
    with pytest.raises(ValueError, match="40 dimensions"):
        stats_from_reference({**data, "action": {"min": [0.0] * 40, "max": [1.0] * 40}})


def test_delta_actions_are_next_minus_current_over_hands_and_arms():
    from psi0_ros.layout import DELTA_ACTION_MASK, actions_to_deltas

    rng = np.random.default_rng(3)
    actions = rng.normal(0.0, 0.5, (17, ACTION_DIM)).astype(np.float32)  # chunk 16 needs 17 frames
    deltas = actions_to_deltas(actions)
    assert deltas.shape == (16, ACTION_DIM)
    for t in range(16):  # Psi0 stage 2: a[t+1] - a[t] on the 28 hand + arm joints, written out per step
        for d in range(28):
            assert deltas[t, d] == np.float32(actions[t + 1, d] - actions[t, d])
    assert not deltas[:, 28:].any()  # the lower body is not modelled in stage 2
    assert DELTA_ACTION_MASK.sum() == 28 and DELTA_ACTION_MASK[:28].all()
    assert [ACTION_NAMES[i] for i in np.nonzero(DELTA_ACTION_MASK)[0]][0].startswith("left_hand_")
    # A batch of chunks; an episode end padded by repeating the last frame gives zero deltas.
    padded = np.concatenate([actions[:10], np.repeat(actions[9:10], 7, axis=0)])
    batch = actions_to_deltas(np.stack([actions, padded]))
    assert batch.shape == (2, 16, ACTION_DIM) and np.array_equal(batch[0], deltas)
    assert not batch[1, 9:].any() and batch[1, :9, :28].any()
    with pytest.raises(ValueError, match="at least 2"):
        actions_to_deltas(actions[:1])
    with pytest.raises(ValueError, match="36"):
        actions_to_deltas(actions[:, :28])


def test_deltas_integrate_back_from_the_current_state():
    from psi0_ros.layout import actions_to_deltas, deltas_to_actions

    rng = np.random.default_rng(4)
    actions = rng.normal(0.0, 0.5, (2, 17, ACTION_DIM)).astype(np.float32)
    state = np.zeros((2, STATE_DIM), np.float32)
    state[:, :28] = actions[:, 0, :28]  # hands + arms of the state = a[0]
    state[:, 28:] = 9.0  # torso values must not leak into the hand/arm columns
    lower_body = np.array([[0.1, 0.0, 0.0, 0.75, 0.2, 0.0, 0.0, 0.3], [0.0] * 8], np.float32)
    restored = deltas_to_actions(actions_to_deltas(actions), state, lower_body)
    assert restored.shape == (2, 16, ACTION_DIM)
    assert np.allclose(restored[..., :28], actions[:, 1:, :28], atol=1e-5)
    assert np.array_equal(restored[0, :, 28:], np.repeat(lower_body[:1], 16, axis=0))
    # start may also be the 28 hand + arm values or the padded state.
    assert np.array_equal(deltas_to_actions(actions_to_deltas(actions), state[:, :28], lower_body), restored)
    assert np.array_equal(deltas_to_actions(actions_to_deltas(actions), pad_state(state), lower_body), restored)
    # One step by hand: a[1] = a[0] + d[0]
    deltas = np.zeros((3, ACTION_DIM), np.float32)
    deltas[:, 14] = 0.1  # left shoulder pitch, +0.1 rad per step
    out = deltas_to_actions(deltas, np.zeros(28, np.float32), np.zeros(8, np.float32))
    assert np.allclose(out[:, 14], [0.1, 0.2, 0.3]) and not out[:, :14].any()
    with pytest.raises(ValueError, match="start"):
        deltas_to_actions(deltas, np.zeros(27), np.zeros(8))
    with pytest.raises(ValueError, match="lower_body"):
        deltas_to_actions(deltas, np.zeros(28), np.zeros(7))
    with pytest.raises(ValueError, match="start contains non-finite"):
        deltas_to_actions(deltas, np.full(28, np.nan), np.zeros(8))
