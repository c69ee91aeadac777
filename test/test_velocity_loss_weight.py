"""The base velocity dimensions' loss weight (data.velocity_loss_weight): the training samples'
weights carry it on vx, vy and vyaw only, every other dimension and the held-out scoring keep 1, and
the setting is checked."""

from __future__ import annotations

import numpy as np
import pytest

from psi0_ros.layout import ACTION_DIM, VELOCITY_DIMS
from training import synthetic
from training.run import build_config


def _samples(root, weight: float):
    from psi0_ros.policy.transforms import Normalizer
    from training.expert import ExpertSamples, compute_norm_stats, open_source

    source = open_source("episodes", str(root), "", False)
    normalizer = Normalizer(compute_norm_stats(source, "absolute"), "bounds", True)
    samples = ExpertSamples(source, normalizer, 8, "absolute", 0, None, False, velocity_weight=weight)
    samples.cache = np.zeros((len(samples), 4, 64), np.float16)  # features stand in for the VLM's
    return samples


def test_the_weight_multiplies_the_velocity_dimensions_only(tmp_path):
    synthetic.write_episodes(tmp_path, episodes=1, frames=12)
    plain, weighted = _samples(tmp_path, 1.0), _samples(tmp_path, 10.0)
    for index in (0, 9):  # a full chunk, and one that runs past the episode's end (padded rows weigh 0)
        a, b = plain[(index, 0)]["weights"].numpy(), weighted[(index, 0)]["weights"].numpy()
        assert a.shape == (8, ACTION_DIM)
        velocity = list(VELOCITY_DIMS)
        others = [d for d in range(ACTION_DIM) if d not in velocity]
        np.testing.assert_array_equal(b[:, velocity], 10.0 * a[:, velocity])
        np.testing.assert_array_equal(b[:, others], a[:, others])
        assert a[:, velocity].sum() > 0
    assert weighted[(9, 0)]["weights"].numpy()[-1].sum() == 0  # past the end: nothing counts


def test_the_setting_is_checked_and_defaults_to_psi0s_plain_average():
    assert build_config("stage3", "sim").data.velocity_loss_weight == 1.0
    assert build_config("stage3", "sim", ["data.velocity_loss_weight=5"]).data.velocity_loss_weight == 5.0
    with pytest.raises(ValueError, match="velocity_loss_weight must be > 0"):
        build_config("stage3", "sim", ["data.velocity_loss_weight=0"])
