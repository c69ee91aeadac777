"""48-D EgoDex hand actions: the camera-frame conventions, checked on constructed motions, and
the rotation convention against scipy's."""

from __future__ import annotations

import numpy as np
import pytest

from training.egodex import CAMERA, hand_actions_48d, joint_names, rpy_from_matrix


def _rotation(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def _pose(rotation: np.ndarray, position) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, position
    return pose


def _scene(camera: np.ndarray, left_wrist: np.ndarray) -> dict[str, np.ndarray]:
    """Camera (T,4,4) and a left wrist (T,4,4) with fingertips rigidly attached; right hand static."""
    frames = camera.shape[0]
    transforms = {CAMERA: camera}
    for hand, wrist in (("left", left_wrist), ("right", np.repeat(_pose(np.eye(3), [0.3, 0, 1])[None], frames, 0))):
        names = joint_names(hand)
        transforms[names[0]] = wrist
        for f, name in enumerate(names[1:]):
            offset = _pose(np.eye(3), [0.02 * f, 0.08, 0.0])
            transforms[name] = wrist @ offset
    return transforms


def test_rpy_matches_scipy_extrinsic_xyz():
    rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    angles = np.random.default_rng(0).uniform(-1.2, 1.2, (50, 3))
    matrices = rotation.from_euler("xyz", angles).as_matrix()
    np.testing.assert_allclose(rpy_from_matrix(matrices), rotation.from_matrix(matrices).as_euler("xyz"), atol=1e-9)


def test_a_hand_fixed_in_the_world_gives_zero_deltas_while_the_head_moves():
    frames = 12
    camera = np.stack(
        [_pose(_rotation("z", 0.1 * t) @ _rotation("x", 0.05 * t), [0.03 * t, 0.01 * t, 1.6]) for t in range(frames)]
    )
    wrist = np.repeat(_pose(_rotation("y", 0.4), [0.2, 0.1, 1.0])[None], frames, 0)
    actions = hand_actions_48d(_scene(camera, wrist))
    assert actions.shape == (frames, 48)
    np.testing.assert_allclose(actions, 0.0, atol=1e-5)


def test_motion_along_the_cameras_own_axes_shows_up_on_those_axes():
    frames = 6
    camera_rotation = _rotation("z", 0.9) @ _rotation("x", -0.4)  # the head is turned and tilted
    camera = np.repeat(_pose(camera_rotation, [0.5, -0.2, 1.5])[None], frames, 0)
    # The wrist moves 1 cm per frame along the camera's x axis and turns about the camera's z axis.
    wrist = np.stack(
        [
            _pose(camera_rotation @ _rotation("z", 0.02 * t), camera[0, :3, 3] + camera_rotation @ [0.01 * t, 0, 0.5])
            for t in range(frames)
        ]
    )
    actions = hand_actions_48d(_scene(camera, wrist), stride=2)
    left = actions[: frames - 2, :24]
    np.testing.assert_allclose(left[:, 0:3], [[0.02, 0, 0]] * (frames - 2), atol=1e-6)  # +dx in the camera frame
    np.testing.assert_allclose(left[:, 3:6], [[0, 0, 0.04]] * (frames - 2), atol=1e-6)  # d-yaw only
    assert not left[:, 6:9].any()  # the reference's three zero columns
    assert np.abs(left[:, 9:]).max() > 1e-3  # the fingertips swing with the wrist rotation
    assert not actions[frames - 2 :].any()  # no future frame: zero rows
    np.testing.assert_allclose(actions[:, 24:], 0.0, atol=1e-6)  # the right hand does not move


def test_humanoid_everyday_hand_actions_follow_the_same_layout(tmp_path):
    from training.he_hands import HEHandSource, he_hand_actions_48d
    from training.synthetic import write_humanoid_everyday

    frames = []
    for t in range(5):  # left wrist: +1 cm/frame along x and +0.02 rad/frame yaw; right hand still
        frames.append(
            {
                "action": {
                    "wrists": {
                        "left": {"xyz": [0.01 * t, 0.2, 0.1], "rpy": [0.3, -0.2, 0.02 * t]},
                        "right": {"xyz": [0.0, -0.2, 0.1], "rpy": [0.0, 0.0, 0.0]},
                    },
                    "hands": {"left_thumb": {"xyz": [0.0, 0.003 * t, 0.0]}},
                }
            }
        )
    actions = he_hand_actions_48d(frames, tmp_path / "data.json")
    np.testing.assert_allclose(actions[:4, 0:3], [[0.01, 0, 0]] * 4, atol=1e-7)
    # R(t+1) R(t)^T of an added yaw after fixed roll/pitch is a rotation about the world z axis.
    np.testing.assert_allclose(actions[:4, 3:6], [[0, 0, 0.02]] * 4, atol=1e-6)
    np.testing.assert_allclose(actions[:4, 9:12], [[0, 0.003, 0]] * 4, atol=1e-7)  # thumb tip
    assert not actions[:, 12:24].any() and not actions[:, 24:].any() and not actions[4].any()
    source = HEHandSource(write_humanoid_everyday(tmp_path / "he", episodes=2, frames=6))
    assert len(source.episodes) == 2 and source.episodes[0].actions.shape == (5, 48)
    assert source.image(1, 2).shape == (48, 64, 3) and source.episodes[0].instruction == "pick up the red cup"
