"""Checkpoints: bit-identical round trip, clear errors for missing or wrong files, and loading
weights stored under Psi0's own parameter names."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from psi0_ros.policy.checkpoint import (
    CONFIG_FILE,
    NORMALIZATION_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    convert_reference_checkpoint,
    expert_to_reference_state_dict,
    load_checkpoint,
    load_reference_expert,
    reference_to_expert_state_dict,
)
from psi0_ros.policy.config import ExpertConfig, PolicyConfig, RTCConfig, expert_preset
from psi0_ros.policy.interface import Observation, Policy
from psi0_ros.policy.mmdit import ActionExpert, Conditioning, sinusoidal_positions
from psi0_ros.policy.tiny import randomize_modulation, write_tiny_checkpoint
from psi0_ros.policy.transforms import Normalizer


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=3)


def _observation(seed: int = 0, vlm_dim: int = 64) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(
        state=rng.uniform(-0.5, 0.5, 32).astype(np.float32),
        vlm_features=rng.normal(size=(12, vlm_dim)).astype(np.float32),
    )


def test_round_trip_gives_bit_identical_chunks(checkpoint_dir, tmp_path):
    first = Policy.from_checkpoint(checkpoint_dir, load_vlm=False, seed=5)
    copy = tmp_path / "copy"
    from psi0_ros.policy.checkpoint import save_checkpoint

    save_checkpoint(copy, first.expert, first.config, first.normalizer.stats)
    second = Policy.from_checkpoint(copy, load_vlm=False, seed=5)
    for a, b in zip(first.expert.state_dict().values(), second.expert.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    observation = _observation()
    chunk_a, chunk_b = first.infer(observation), second.infer(observation)
    assert chunk_a.shape == (16, 36) and np.array_equal(chunk_a, chunk_b)


def test_round_trip_with_the_vlm_gives_identical_chunks_from_images(checkpoint_dir):
    frame = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    observation = Observation(state=np.zeros(32, np.float32), image=frame, instruction="pick up the cup")
    one = Policy.from_checkpoint(checkpoint_dir, seed=1).infer(observation)
    two = Policy.from_checkpoint(checkpoint_dir, seed=1).infer(observation)
    assert np.array_equal(one, two)


@pytest.mark.parametrize("missing", [CONFIG_FILE, WEIGHTS_FILE, NORMALIZATION_FILE])
def test_missing_file_is_named(checkpoint_dir, tmp_path, missing):
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint_dir, broken)
    (broken / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing.replace(".", "\\.")):
        load_checkpoint(broken)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere")


def test_wrong_shapes_and_corrupt_files_are_clear_errors(checkpoint_dir, tmp_path):
    wrong = tmp_path / "wrong-shape"
    shutil.copytree(checkpoint_dir, wrong)
    state = load_file(str(wrong / WEIGHTS_FILE))
    state["action_pos"] = torch.zeros(8, 64)
    save_file(state, str(wrong / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match=r"action_pos: \(8, 64\) \(expected \(16, 64\)\)"):
        load_checkpoint(wrong)

    missing_key = tmp_path / "missing-key"
    shutil.copytree(checkpoint_dir, missing_key)
    state = load_file(str(missing_key / WEIGHTS_FILE))
    del state["final_out.bias"]
    save_file(state, str(missing_key / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match="missing \\['final_out.bias'\\]"):
        load_checkpoint(missing_key)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(checkpoint_dir, corrupt)
    (corrupt / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(corrupt)

    other_format = tmp_path / "other-format"
    shutil.copytree(checkpoint_dir, other_format)
    document = json.loads((other_format / CONFIG_FILE).read_text())
    (other_format / CONFIG_FILE).write_text(json.dumps({**document, "format_version": 99}))
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(other_format)

    no_vlm = tmp_path / "no-vlm"
    shutil.copytree(checkpoint_dir, no_vlm)
    shutil.rmtree(no_vlm / "vlm")
    with pytest.raises(FileNotFoundError, match="vlm"):
        load_checkpoint(no_vlm)


def _reference_state(expert: ActionExpert, config: ExpertConfig) -> dict[str, torch.Tensor]:
    """Our weights as Psi0 stores them, with its fixed tables and its unused last-block query."""
    state = {f"action_header.{k}": v.clone() for k, v in expert_to_reference_state_dict(expert).items()}
    half = config.time_freq_dim // 2
    state["action_header.time_ins_embed.w"] = torch.exp(torch.arange(half) * (-math.log(10000.0) / (half - 1)))
    pe = sinusoidal_positions(5000, config.hidden, torch.device("cpu"), torch.float32)
    state["action_header.obs_proj.enc_pos.pe"] = pe[:, None, :]
    last = config.num_blocks - 1
    state[f"action_header.transformer_blocks.{last}.attn.add_q_proj.weight"] = torch.zeros(config.hidden, config.hidden)
    state[f"action_header.transformer_blocks.{last}.attn.add_q_proj.bias"] = torch.zeros(config.hidden)
    state["vlm_model.model.language_model.norm.weight"] = torch.ones(4)  # a full training checkpoint's VLM part
    return state


def test_weights_under_psi0_names_load_and_give_the_same_output(tmp_path):
    config = expert_preset("tiny")
    torch.manual_seed(0)
    expert = randomize_modulation(ActionExpert(config)).eval()
    path = tmp_path / "model.safetensors"
    save_file(_reference_state(expert, config), str(path))
    loaded = load_reference_expert(path, config)
    cond = Conditioning(torch.randn(1, 5, 64), None, torch.randn(1, 36))
    x, sigma = torch.randn(1, 16, 36), torch.rand(1)
    with torch.no_grad():
        assert torch.equal(expert(x, sigma, cond), loaded(x, sigma, cond))


def test_the_reference_table_covers_every_parameter_of_the_full_expert():
    config = ExpertConfig()
    with torch.device("meta"):
        expert = ActionExpert(config)
    reference = expert_to_reference_state_dict(expert)
    assert len(reference) == len(expert.state_dict())
    assert "transformer_blocks.5.norm1_obs.linear.weight" in reference  # AdaLayerNormContinuous in the last block
    assert (
        "transformer_blocks.4.attn.to_add_out.weight" in reference
        and "transformer_blocks.5.ff_act.net.0.proj.weight" in reference
    )
    assert set(reference_to_expert_state_dict(reference, config)) == set(expert.state_dict())


def test_unknown_or_inconsistent_reference_weights_are_errors():
    config = expert_preset("tiny")
    state = _reference_state(ActionExpert(config), config)
    with pytest.raises(CheckpointError, match="obs_proj.traj_proj.weight"):
        reference_to_expert_state_dict({**state, "action_header.obs_proj.traj_proj.weight": torch.zeros(1)}, config)
    bad_positions = dict(state)
    bad_positions["action_header.obs_proj.enc_pos.pe"] = torch.zeros(5000, 1, 64)
    with pytest.raises(CheckpointError, match="enc_pos.pe"):
        reference_to_expert_state_dict(bad_positions, config)


def test_psi0_release_converts_to_a_checkpoint(tmp_path):
    config = expert_preset("tiny", horizon=12)
    torch.manual_seed(1)
    expert = randomize_modulation(ActionExpert(config)).eval()
    weights = tmp_path / "model.safetensors"
    save_file(
        {k[len("action_header.") :]: v for k, v in _reference_state(expert, config).items() if "vlm_model" not in k},
        str(weights),
    )
    rng = np.random.default_rng(0)
    low_a, low_s = rng.uniform(-2, -1, 36), rng.uniform(-1, -0.5, 32)
    stats_file = tmp_path / "stats_psi0.json"
    stats_file.write_text(
        json.dumps(
            {
                "action": {"min": low_a.tolist(), "max": (-low_a).tolist()},
                "states": {"min": low_s.tolist(), "max": (-low_s).tolist()},
            }
        )
    )
    given = PolicyConfig(expert=expert_preset("tiny"), rtc=RTCConfig(mode="guidance"))
    out = convert_reference_checkpoint(weights, stats_file, tmp_path / "converted", config=given)
    loaded = load_checkpoint(out)
    assert loaded.config.expert == config  # horizon 12 read off the weights, heads from the given config
    assert loaded.config.rtc.mode == "guidance"
    assert np.allclose(loaded.stats.action.max, -low_a) and not loaded.stats.state.max[32:].any()
    cond = Conditioning(torch.randn(1, 5, 64), None, torch.randn(1, 36))
    x, sigma = torch.randn(1, 12, 36), torch.rand(1)
    with torch.no_grad():
        assert torch.equal(expert(x, sigma, cond), loaded.expert(x, sigma, cond))
    with pytest.raises(FileNotFoundError, match="absent.json"):
        convert_reference_checkpoint(weights, tmp_path / "absent.json", tmp_path / "x")


def _release(tmp_path, horizon: int, stats_dim: int, dtype: torch.dtype = torch.float32):
    """A Psi0-like release: action_header.safetensors (in `dtype`) and a stats json of stats_dim."""
    config = expert_preset("tiny", horizon=horizon, num_heads=1, head_dim=64)  # Psi0 heads are 64 wide
    torch.manual_seed(2)
    expert = randomize_modulation(ActionExpert(config)).eval()
    weights = tmp_path / f"action_header_{horizon}_{dtype}.safetensors"
    state = {k[len("action_header.") :]: v for k, v in _reference_state(expert, config).items() if "vlm_model" not in k}
    save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, str(weights))
    rng = np.random.default_rng(1)
    low = rng.uniform(-0.2, -0.1, stats_dim)
    stats_file = tmp_path / f"stats_{stats_dim}.json"
    entry = {"min": low.tolist(), "max": (-low).tolist(), "q01": (low / 2).tolist(), "q99": (-low / 2).tolist()}
    stats_file.write_text(json.dumps({"action": entry, "states": {k: v[:28] for k, v in entry.items()}}))
    return expert, weights, stats_file


def test_stage2_release_converts_with_the_stage2_recipe_from_bf16_weights(tmp_path):
    """Psi0's released expert: chunk 16, delta actions, bounds_q99, raw state, no training RTC."""
    expert, weights, stats_file = _release(tmp_path, horizon=16, stats_dim=28, dtype=torch.bfloat16)
    assert load_file(str(weights))["action_proj_in.dec_pos"].dtype == torch.bfloat16
    loaded = load_checkpoint(convert_reference_checkpoint(weights, stats_file, tmp_path / "stage2"))
    config = loaded.config
    assert config.expert.horizon == 16 and config.action.representation == "delta"
    assert config.norm.mode == "q99" and config.norm.normalize_state is False
    assert config.rtc.mode == "none" and config.flow.max_delay == 0 and config.flow.num_steps == 8
    with torch.no_grad():  # the bf16 weights, widened to fp32, give the bf16-rounded expert's output
        rounded = ActionExpert(expert.config).eval()
        rounded.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in expert.state_dict().items()})
        cond = Conditioning(torch.randn(1, 5, 64), None, torch.randn(1, 36))
        x, sigma = torch.randn(1, 16, 36), torch.rand(1)
        assert torch.equal(rounded(x, sigma, cond), loaded.expert(x, sigma, cond))
    # Served: the chunk is integrated from the state over hands + arms; the lower body is held.
    normalizer = Normalizer(loaded.stats, config.norm.mode, config.norm.normalize_state)
    policy = Policy(config, loaded.expert, normalizer)
    state = np.random.default_rng(5).uniform(-0.5, 0.5, 32).astype(np.float32)
    chunk = policy.infer(Observation(state=state, vlm_features=np.ones((4, 64), np.float32)))
    deltas = np.diff(np.concatenate([state[None, :28], chunk[:, :28]]), axis=0)
    q01, q99 = loaded.stats.action.q01[:28], loaded.stats.action.q99[:28]
    assert np.all(deltas >= q01 - 1e-5) and np.all(deltas <= q99 + 1e-5)  # each step a bounded delta
    assert np.allclose(chunk[:, 28:32], state[28:32]) and not chunk[:, 32:].any()


def test_stage3_release_gets_the_stage3_recipe_and_ambiguous_ones_need_a_stage(tmp_path):
    _, weights, stats_file = _release(tmp_path, horizon=30, stats_dim=36)
    config = load_checkpoint(convert_reference_checkpoint(weights, stats_file, tmp_path / "stage3")).config
    assert config.action.representation == "absolute" and config.norm.mode == "bounds" and config.norm.normalize_state
    assert config.rtc.mode == "training" and config.flow.max_delay == 8 and config.flow.num_steps == 8
    _, odd, stats28 = _release(tmp_path, horizon=30, stats_dim=28)
    with pytest.raises(CheckpointError, match="pass stage=2 or stage=3"):
        convert_reference_checkpoint(odd, stats28, tmp_path / "odd")
    forced = load_checkpoint(convert_reference_checkpoint(odd, stats28, tmp_path / "forced", stage=2)).config
    assert forced.action.representation == "delta" and forced.expert.horizon == 30


def test_default_euler_steps_are_psi0s_real_robot_server():
    from psi0_ros.policy.config import FlowConfig

    assert FlowConfig().num_steps == 8  # psi_serve_rtc-trainingtimertc.py: num_inference_steps = 8
