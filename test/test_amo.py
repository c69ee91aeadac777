"""AMO (System-0): the observation term by term against a hand-computed one, histories, gait phase,
the in-place-stand rule, last action, targets and file loading; networks are TorchScript modules
with AMO's signatures, made here (shared/AMO.md)."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch
from helpers.amo_files import NORM, write_amo_files

from psi0_ros import g1
from psi0_ros.control import amo
from psi0_ros.control.amo import AmoCommand, AmoController, AmoState

# AMO's standing pose, written out from shared/AMO.md rather than taken from the module.
DEFAULT = np.array(
    [-0.1, 0, 0, 0.3, -0.2, 0, -0.1, 0, 0, 0.3, -0.2, 0, 0, 0, 0, 0.5, 0, 0.2, 0.3, 0.5, 0, -0.2, 0.3], dtype=float
)


def axis_quat(axis: int, angle: float) -> np.ndarray:
    quat = np.zeros(4)
    quat[0], quat[1 + axis] = math.cos(angle / 2), math.sin(angle / 2)
    return quat


def quat_from_yaw_pitch_roll(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """w, x, y, z of Rz(yaw) Ry(pitch) Rx(roll), composed with MuJoCo's quaternion product."""
    zy, zyx = np.zeros(4), np.zeros(4)
    mujoco.mju_mulQuat(zy, axis_quat(2, yaw), axis_quat(1, pitch))
    mujoco.mju_mulQuat(zyx, zy, axis_quat(0, roll))
    return zyx


def yaw_pitch_roll(quat: np.ndarray) -> tuple[float, float, float]:
    """From MuJoCo's rotation matrix of the quaternion (independent of amo.quat_to_rpy)."""
    r = np.zeros(9)
    mujoco.mju_quat2Mat(r, quat)
    r = r.reshape(3, 3)
    return math.atan2(r[1, 0], r[0, 0]), math.asin(-r[2, 0]), math.atan2(r[2, 1], r[2, 2])


def random_state(rng: np.random.Generator) -> AmoState:
    quat = quat_from_yaw_pitch_roll(rng.uniform(-3, 3), rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3))
    return AmoState(
        q=DEFAULT + rng.normal(0, 0.1, 23), dq=rng.normal(0, 1.0, 23), quat=quat, gyro=rng.normal(0, 0.5, 3)
    )


def hand_adapter(directory, state: AmoState, cmd: AmoCommand) -> np.ndarray:
    adapter = torch.jit.load(str(directory / amo.ADAPTER_FILE))
    x = np.r_[cmd.height, cmd.torso_yaw, cmd.torso_pitch, cmd.torso_roll, state.q[[15, 16, 17, 18, 19, 20, 21, 22]]]
    xn = (x - NORM["input_mean"]) / (NORM["input_std"] + 1e-8)
    y = adapter(torch.tensor(xn, dtype=torch.float32)[None]).detach().numpy()[0].astype(float)
    return y * NORM["output_std"] + NORM["output_mean"]


def hand_prop(directory, state, cmd, last_action, phase, yaw0, stand_before) -> np.ndarray:
    yaw, pitch, roll = yaw_pitch_roll(state.quat)
    dyaw = 0.0 if stand_before else (yaw - yaw0 - cmd.target_yaw + math.pi) % (2 * math.pi) - math.pi
    vel = state.dq.copy()
    for i in (4, 5, 10, 11, 13, 14):
        vel[i] = 0.0
    return np.r_[
        state.gyro * 0.25,
        roll,
        pitch,
        math.sin(dyaw),
        math.cos(dyaw),
        state.q - DEFAULT,
        vel * 0.05,
        last_action,
        math.sin(2 * math.pi * phase[0]),
        math.sin(2 * math.pi * phase[1]),
        hand_adapter(directory, state, cmd),
    ]


def split_prop(prop: np.ndarray) -> dict[str, np.ndarray]:
    out, i = {}, 0
    for name, size in amo.PROP_TERMS:
        out[name] = prop[i : i + size]
        i += size
    assert i == 93
    return out


@pytest.fixture
def amo_dir(tmp_path):
    write_amo_files(tmp_path)
    return tmp_path


def test_joint_view_is_motor_slots_0_18_and_22_25():
    assert amo.AMO_JOINTS == tuple(g1.BODY_JOINTS[i] for i in [*range(19), 22, 23, 24, 25])
    assert "wrist" not in " ".join(amo.AMO_JOINTS)
    np.testing.assert_array_equal(amo.DEFAULT_POSE, DEFAULT)


def test_observation_term_by_term_over_several_steps(amo_dir):
    controller = AmoController.load(amo_dir)
    policy = torch.jit.load(str(amo_dir / amo.POLICY_FILE))
    rng = np.random.default_rng(3)
    commands = [
        AmoCommand(
            vx=0.3, vy=0.05, vyaw=0.0, target_yaw=0.4, torso_roll=0.1, torso_pitch=0.2, torso_yaw=-0.3, height=0.7
        ),
        AmoCommand(
            vx=0.3, vy=-0.2, vyaw=0.2, target_yaw=-2.9, torso_roll=-0.1, torso_pitch=0.3, torso_yaw=0.5, height=0.8
        ),
        AmoCommand(
            vx=0.0, vy=0.0, vyaw=0.05, target_yaw=0.1, torso_roll=0.0, torso_pitch=0.0, torso_yaw=0.0, height=0.75
        ),
    ]
    last_action = np.zeros(23)
    phase = np.array([0.25, 0.25])
    stand_before = True
    props: list[np.ndarray] = []
    yaw0 = None
    clipped = 0
    for step, cmd in enumerate(commands * 2):
        state = random_state(rng)
        if yaw0 is None:
            yaw0 = yaw_pitch_roll(state.quat)[0]
        targets = controller.step(state, cmd)
        obs, extra = controller.last_obs, controller.last_extra_hist
        assert obs.shape == (1043,) and extra.shape == (2325,)

        expected = hand_prop(amo_dir, state, cmd, last_action, phase, yaw0, stand_before)
        got_terms, want_terms = split_prop(obs[:93]), split_prop(expected)
        for name in got_terms:
            np.testing.assert_allclose(got_terms[name], want_terms[name], atol=1e-5, err_msg=f"step {step} {name}")
        demo = obs[93:110]
        np.testing.assert_allclose(demo[:8], state.q[15:23], atol=1e-12)
        np.testing.assert_allclose(
            demo[8:], [cmd.vx, cmd.vy, 0, cmd.torso_yaw, cmd.torso_pitch, cmd.torso_roll] + [cmd.height] * 3
        )
        np.testing.assert_array_equal(obs[110:113], 0.0)
        # history: the 10 previous frames, oldest first, zeros before the start
        history = ([np.zeros(93)] * 10 + props)[-10:]
        np.testing.assert_allclose(obs[113:], np.concatenate(history), atol=1e-5)
        props.append(expected)
        extra_frames = ([np.zeros(93)] * 25 + props)[-25:]
        np.testing.assert_allclose(extra, np.concatenate(extra_frames), atol=1e-5)

        raw = policy(torch.tensor(obs, dtype=torch.float32)[None], torch.tensor(extra, dtype=torch.float32)[None])
        raw = np.clip(raw.detach().numpy()[0].astype(float), -40, 40)
        np.testing.assert_allclose(targets, DEFAULT[:15] + 0.25 * raw, atol=1e-4)
        clipped += int(np.sum(np.abs(raw) == 40.0))

        # bookkeeping as AMO does it, for the next step
        last_action = np.r_[raw, (state.q[15:23] - DEFAULT[15:23]) / 0.25]
        stand_before = abs(cmd.vx) < 0.1 and abs(cmd.vy) < 0.1 and abs(cmd.vyaw) < 0.1
        phase = (phase + 0.02 * 1.3) % 1.0
        near = np.abs(phase - 0.25) < 0.05
        if stand_before and near.any():
            phase = np.array([0.25, 0.25])
        if not stand_before and near.all():
            phase = np.array([0.25, 0.75])
    assert 0 < clipped < 6 * 15, "the test policy should exercise the +-40 clip on some outputs, not all"


def test_gait_phase_and_stand_rule():
    obs = amo.AmoObservation()
    state = AmoState(q=DEFAULT.copy(), dq=np.zeros(23), quat=np.array([1.0, 0, 0, 0]), gyro=np.zeros(3))
    walk = AmoCommand(vx=0.3)
    obs.build(state, walk, np.zeros(15))
    # moving from (0.25, 0.25): both near 0.25 after one step -> walking phase (0.25, 0.75)
    np.testing.assert_allclose(obs.gait_phase, [0.25, 0.75])
    for _ in range(10):
        obs.build(state, walk, np.zeros(15))
    np.testing.assert_allclose(obs.gait_phase, np.remainder([0.25 + 10 * 0.026, 0.75 + 10 * 0.026], 1.0))
    # standing: keeps advancing until one phase comes within 0.05 of 0.25, then snaps to (0.25, 0.25)
    snapped_at = None
    for i in range(60):
        obs.build(state, AmoCommand(vyaw=0.05), np.zeros(15))
        if np.allclose(obs.gait_phase, [0.25, 0.25]):
            snapped_at = i
            break
    assert snapped_at is not None and snapped_at > 0
    # vyaw alone above 0.1 counts as moving (Psi0's real rule, not AMO's sim |vx| rule)
    obs.build(state, AmoCommand(vyaw=0.5), np.zeros(15))
    assert obs.in_place_stand is False


def test_heading_is_relative_to_the_first_step_and_wrapped():
    obs = amo.AmoObservation()

    def state_with_yaw(yaw: float) -> AmoState:
        return AmoState(
            DEFAULT.copy(), np.zeros(23), np.array([math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)]), np.zeros(3)
        )

    first, _ = obs.build(state_with_yaw(3.0), AmoCommand(vx=0.3, target_yaw=0.5), np.zeros(15))
    np.testing.assert_allclose(first[5:7], [0.0, 1.0])  # previous step was standing: dyaw = 0
    second, _ = obs.build(state_with_yaw(-3.0), AmoCommand(vx=0.3, target_yaw=0.5), np.zeros(15))
    dyaw = (-3.0 - 3.0 - 0.5 + math.pi) % (2 * math.pi) - math.pi
    np.testing.assert_allclose(second[5:7], [math.sin(dyaw), math.cos(dyaw)], atol=1e-12)


def test_commands_are_clipped_into_amo_ranges_and_quantised_only_on_request(amo_dir):
    controller = AmoController.load(amo_dir)
    cmd = controller.prepare_command(AmoCommand(vx=0.9, vy=-1.0, torso_pitch=2.0, height=0.2))
    assert (cmd.vx, cmd.vy, cmd.torso_pitch, cmd.height) == (0.5, -0.4, 1.57, 0.25)
    assert set(controller.last_clipped) == {"vx", "vy", "torso_pitch", "height"}
    assert controller.prepare_command(AmoCommand(vx=-0.3, vy=0.2)).vx == -0.3  # no hidden filter
    quantised = AmoController.load(amo_dir, quantize=True)
    cmd = quantised.prepare_command(AmoCommand(vx=-0.3, vy=0.35, vyaw=0.7))
    assert (cmd.vx, cmd.vy, cmd.vyaw) == (0.0, 0.4, 0.7)  # vy quantised to 0.5, then clipped to 0.4
    assert quantised.prepare_command(AmoCommand(vx=0.3)).vx == 0.35


def test_command_vector_order_matches_the_action_layout():
    from psi0_ros.constants import LOWER_BODY_COMMAND_NAMES

    values = np.arange(8, dtype=float) + 0.5
    cmd = AmoCommand.from_vector(values)
    for name, value in zip(LOWER_BODY_COMMAND_NAMES, values, strict=True):
        field = {"torso_height": "height"}.get(name, name)
        assert getattr(cmd, field) == value


def test_non_finite_input_is_refused_and_changes_nothing(amo_dir):
    controller = AmoController.load(amo_dir)
    rng = np.random.default_rng(0)
    good = random_state(rng)
    controller.step(good, AmoCommand())
    before = (controller.observation.gait_phase.copy(), list(controller.observation.prop_history))
    bad = AmoState(good.q.copy(), good.dq, good.quat, good.gyro)
    bad.q[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        controller.step(bad, AmoCommand())
    with pytest.raises(ValueError, match="NaN"):
        controller.step(good, AmoCommand(vx=float("nan")))
    np.testing.assert_array_equal(controller.observation.gait_phase, before[0])
    assert all(a is b for a, b in zip(controller.observation.prop_history, before[1], strict=True))


def test_missing_files_are_each_named(tmp_path):
    torch.save(dict(NORM), str(tmp_path / amo.NORM_STATS_FILE))
    with pytest.raises(FileNotFoundError) as err:
        AmoController.load(tmp_path)
    message = str(err.value)
    assert "amo_jit.pt" in message and "adapter_jit.pt" in message and "adapter_norm_stats.pt" not in message


def test_norm_stats_with_wrong_keys_or_sizes_are_refused(tmp_path):
    write_amo_files(tmp_path)
    torch.save({"mean": np.zeros(12)}, str(tmp_path / amo.NORM_STATS_FILE))
    with pytest.raises(ValueError, match="input_mean"):
        AmoController.load(tmp_path)
    torch.save({**NORM, "output_std": np.ones(14)}, str(tmp_path / amo.NORM_STATS_FILE))
    with pytest.raises(ValueError, match="output_std"):
        AmoController.load(tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (device: cuda)")
def test_cuda_device_gives_the_cpu_targets(amo_dir):
    cpu, gpu = AmoController.load(amo_dir), AmoController.load(amo_dir, device="cuda")
    rng = np.random.default_rng(11)
    for cmd in (AmoCommand(), AmoCommand(vx=0.3, target_yaw=0.2), AmoCommand(vy=0.3, height=0.7)) * 3:
        state = random_state(rng)
        np.testing.assert_allclose(gpu.step(state, cmd), cpu.step(state, cmd), atol=1e-3)
        np.testing.assert_allclose(gpu.last_obs, cpu.last_obs, atol=1e-4)
