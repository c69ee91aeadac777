"""Checkpoints that describe themselves (DESIGN §6), and import of reference Psi0 weights.

A checkpoint is a directory:
  config.json         {"format": "psi0_ros.policy", "format_version": 1, "policy": PolicyConfig, "vlm": path}
  model.safetensors   the action expert's state dict
  normalization.json  transforms.NormStats
  vlm/                optional: the Qwen3-VL Hugging Face directory (or "vlm" in config.json names one elsewhere)
Every file is written under a temporary name and renamed when complete. Loading rebuilds the model
from the checkpoint's own config; a missing file, a wrong shape or an unknown key is an error
that names the file and the offending entries.

Psi0's own action-expert weights (action_header.safetensors from its save_posttrain_action_expert
script, or the action_header.* part of a training checkpoint) load through
reference_to_expert_state_dict, a fixed table from its parameter names to ours.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from psi0_ros.policy.config import STAGES, ExpertConfig, PolicyConfig, stage_recipe
from psi0_ros.policy.mmdit import ActionExpert, sinusoidal_positions
from psi0_ros.policy.transforms import NormStats

FORMAT = "psi0_ros.policy"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
NORMALIZATION_FILE = "normalization.json"
VLM_DIR = "vlm"
# Expert weights read by load_checkpoint in this process (chunk_node reports it: a task switch
# must never reload the base).
LOADS: Counter[str] = Counter()


class CheckpointError(ValueError):
    """A checkpoint file exists but its content is wrong (shape, keys, format)."""


@dataclass
class Checkpoint:
    config: PolicyConfig
    expert: ActionExpert
    stats: NormStats
    vlm_path: Path | None  # resolved path of the Hugging Face VLM directory, if the checkpoint names one


def _write_atomically(path: Path, write: callable) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(
    directory: Path,
    expert: ActionExpert,
    config: PolicyConfig,
    stats: NormStats,
    vlm_path: Path | None = None,
    copy_vlm: bool = False,
) -> Path:
    """Write a checkpoint directory. With copy_vlm the VLM directory is copied into vlm/, otherwise
    config.json records vlm_path (absolute) as the VLM to load with it."""
    from safetensors.torch import save_file

    from psi0_ros.policy.sampling import check_policy_config

    directory = Path(directory)
    if expert.config != config.expert:
        raise ValueError(f"the expert was built with {expert.config}, but the config to save says {config.expert}")
    check_policy_config(config)  # never write a checkpoint that cannot be served as it says
    vlm_entry: str | None = None
    if vlm_path is not None:
        from psi0_ros.policy.vlm import check_vlm_dir

        vlm_path = check_vlm_dir(vlm_path).resolve()
        if copy_vlm:
            target = directory / VLM_DIR
            staging = directory / f".{VLM_DIR}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(vlm_path, staging)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
            vlm_entry = VLM_DIR
        else:
            vlm_entry = str(vlm_path)
    state = {k: v.detach().contiguous().cpu() for k, v in expert.state_dict().items()}
    _write_atomically(directory / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={"format": FORMAT}))
    _write_atomically(directory / NORMALIZATION_FILE, stats.save)
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "policy": config.to_dict(), "vlm": vlm_entry}
    _write_atomically(directory / CONFIG_FILE, lambda p: p.write_text(json.dumps(document, indent=1) + "\n"))
    return directory


def read_versioned_json(path: Path, fmt: str, version: int, error: type[Exception]) -> dict[str, Any]:
    """A JSON document whose "format" and "format_version" must be fmt and version; `error` (with
    the path and what is wrong) for invalid JSON or another format."""
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise error(f"{path} is not valid JSON: {err}") from None
    if not isinstance(document, dict) or document.get("format") != fmt or document.get("format_version") != version:
        found = document if isinstance(document, dict) else {}
        raise error(
            f"{path}: expected format {fmt!r} version {version}, "
            f"got {found.get('format')!r} version {found.get('format_version')!r}"
        )
    return document


def read_config(directory: Path) -> tuple[PolicyConfig, Path | None]:
    """The policy config and resolved VLM path of a checkpoint directory."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {directory}")
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {directory} is incomplete: no {CONFIG_FILE}")
    document = read_versioned_json(path, FORMAT, FORMAT_VERSION, CheckpointError)
    try:
        config = PolicyConfig.from_dict(document.get("policy", {}))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: bad policy config: {err}") from None
    vlm = document.get("vlm")
    vlm_path = None if vlm is None else (directory / vlm if not os.path.isabs(vlm) else Path(vlm))
    return config, vlm_path


def build_expert(config: ExpertConfig) -> torch.nn.Module:
    """The action expert of config.arch: the MM-DiT (mmdit.ActionExpert) or the naive DiT
    baseline (dit.DiTActionExpert); both take (noisy actions, sigma, Conditioning)."""
    if config.arch == "dit":
        from psi0_ros.policy.dit import DiTActionExpert

        return DiTActionExpert(config)
    return ActionExpert(config)


def load_state_dict_strict(expert: ActionExpert, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load weights that must match the expert exactly; CheckpointError lists what does not."""
    expected = expert.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k}: {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong:
        parts = [f"missing {missing[:8]}" if missing else "", f"unexpected {unexpected[:8]}" if unexpected else ""]
        parts.append(f"wrong shape {wrong[:8]}" if wrong else "")
        raise CheckpointError(f"{source} does not fit the expert config: " + "; ".join(p for p in parts if p))
    expert.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def load_checkpoint(
    directory: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Checkpoint:
    """Rebuild the expert from the checkpoint's config and load its weights and statistics."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory).expanduser()
    config, vlm_path = read_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint {directory} is incomplete: no {WEIGHTS_FILE}")
    stats = NormStats.load(directory / NORMALIZATION_FILE)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {err}") from None
    expert = build_expert(config.expert)
    load_state_dict_strict(expert, state, str(weights))
    LOADS["checkpoint"] += 1
    if vlm_path is not None and not vlm_path.is_dir():
        raise FileNotFoundError(f"checkpoint {directory} names a VLM directory that does not exist: {vlm_path}")
    return Checkpoint(config, expert.to(device=device, dtype=dtype).eval(), stats, vlm_path)


# --- Psi0 reference weights ----------------------------------------------------------------------
# Reference (src/psi/models/psi0.py, ActionTransformerModel) parameter names -> ours.
_REFERENCE_TOP = {
    "time_ins_embed.out_net.0": "time_embed.mlp.0",
    "time_ins_embed.out_net.2": "time_embed.mlp.2",
    "obs_proj.views_proj": "obs_in",
    "obs_proj._obs_proc.1": "proprio_in.1",
    "action_proj_in.ac_proj.0": "action_in.0",
    "action_proj_in.ac_proj.2": "action_in.2",
    "action_proj_out.linear": "final_out",
    "action_proj_out.adaLN_modulation.1": "final_modulation",
}
_REFERENCE_BLOCK = {
    "norm1_act.linear": "action_modulation",
    "norm1_obs.linear": "obs_modulation",
    "attn.to_q": "action_q",
    "attn.to_k": "action_k",
    "attn.to_v": "action_v",
    "attn.to_out.0": "action_out",
    "attn.add_q_proj": "obs_q",
    "attn.add_k_proj": "obs_k",
    "attn.add_v_proj": "obs_v",
    "attn.to_add_out": "obs_out",
    "ff_act.net.0.proj": "action_ff.net.0",
    "ff_act.net.2": "action_ff.net.2",
    "ff_obs.net.0.proj": "obs_ff.net.0",
    "ff_obs.net.2": "obs_ff.net.2",
}
_REFERENCE_PREFIX = "action_header."


def _reference_name(name: str) -> str | None:
    """Our parameter name for a reference one; None for a name the table does not know."""
    if name == "action_proj_in.dec_pos":
        return "action_pos"
    module, _, leaf = name.rpartition(".")
    if module in _REFERENCE_TOP:
        return f"{_REFERENCE_TOP[module]}.{leaf}"
    if module.startswith("transformer_blocks."):
        _, index, rest = module.split(".", 2)
        if rest in _REFERENCE_BLOCK:
            return f"blocks.{index}.{_REFERENCE_BLOCK[rest]}.{leaf}"
    return None


def _check_fixed_table(name: str, value: torch.Tensor, expected: torch.Tensor) -> None:
    # A table saved in bf16 (Psi0 saves bf16 weights) is only as exact as bf16's rounding.
    tolerance = max(1e-4, torch.finfo(value.dtype).eps) if value.is_floating_point() else 1e-4
    if value.shape != expected.shape or not torch.allclose(value.float(), expected, atol=tolerance, rtol=tolerance):
        raise CheckpointError(f"reference weight {name} is not the fixed table this expert computes")


def reference_to_expert_state_dict(
    reference: Mapping[str, torch.Tensor], config: ExpertConfig
) -> dict[str, torch.Tensor]:
    """Map Psi0 action-expert weights to ours.

    Accepts names with or without the "action_header." prefix; "vlm_model.*" entries (the VLM of a
    full training checkpoint) are skipped. The reference stores two fixed tables as parameters
    (the timestep frequencies and the 5000 sinusoidal observation positions); they are checked
    against what this expert computes and dropped. The last block's observation query projection
    is dropped too: the reference computes it but discards its output. Anything else unknown is
    an error naming it.
    """
    mapped: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    last = config.num_blocks - 1
    for raw_name, value in reference.items():
        if raw_name.startswith("vlm_model."):
            continue
        name = raw_name[len(_REFERENCE_PREFIX) :] if raw_name.startswith(_REFERENCE_PREFIX) else raw_name
        if name == "time_ins_embed.w":
            half = config.time_freq_dim // 2
            _check_fixed_table(name, value, torch.exp(torch.arange(half) * (-math.log(10000.0) / (half - 1))))
            continue
        if name == "obs_proj.enc_pos.pe":  # (max_len, 1, hidden)
            table = value.reshape(value.shape[0], -1)
            _check_fixed_table(
                name, table, sinusoidal_positions(table.shape[0], config.hidden, torch.device("cpu"), torch.float32)
            )
            continue
        if name.startswith(f"transformer_blocks.{last}.attn.add_q_proj."):
            continue
        ours = _reference_name(name)
        if ours is None:
            unknown.append(raw_name)
        else:
            mapped[ours] = value
    if unknown:
        raise CheckpointError(f"reference weights hold entries this expert does not know: {sorted(unknown)[:10]}")
    return mapped


def expert_to_reference_state_dict(expert: ActionExpert) -> dict[str, torch.Tensor]:
    """Our weights under Psi0's names (without the fixed tables), e.g. to compare with its code."""
    inverse_top = {ours: ref for ref, ours in _REFERENCE_TOP.items()}
    inverse_block = {ours: ref for ref, ours in _REFERENCE_BLOCK.items()}
    result: dict[str, torch.Tensor] = {}
    for name, value in expert.state_dict().items():
        module, _, leaf = name.rpartition(".")
        if name == "action_pos":
            result["action_proj_in.dec_pos"] = value
        elif module in inverse_top:
            result[f"{inverse_top[module]}.{leaf}"] = value
        else:
            _, index, rest = module.split(".", 2)
            result[f"transformer_blocks.{index}.{inverse_block[rest]}.{leaf}"] = value
    return result


def expert_config_from_reference(reference: Mapping[str, torch.Tensor], **overrides: object) -> ExpertConfig:
    """The expert config that Psi0 weights were trained with, read off their shapes."""
    state = {
        (k[len(_REFERENCE_PREFIX) :] if k.startswith(_REFERENCE_PREFIX) else k): v
        for k, v in reference.items()
        if not k.startswith("vlm_model.")
    }
    required = ("action_proj_in.dec_pos", "obs_proj.views_proj.weight", "obs_proj._obs_proc.1.weight")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"reference weights lack {missing}; is this a Psi0 action expert?")
    horizon, hidden = state["action_proj_in.dec_pos"].shape
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")}
    fields: dict[str, object] = {
        "horizon": int(horizon),
        "hidden": int(hidden),
        "action_dim": int(state["action_proj_out.linear.weight"].shape[0]),
        "state_dim": int(state["obs_proj._obs_proc.1.weight"].shape[1]),
        "vlm_dim": int(state["obs_proj.views_proj.weight"].shape[1]),
        "num_blocks": len(blocks),
        "time_freq_dim": int(state["time_ins_embed.out_net.0.weight"].shape[1]),
        "ffn_mult": int(state["transformer_blocks.0.ff_act.net.0.proj.weight"].shape[0]) // int(hidden),
    }
    fields.update(overrides)
    if "num_heads" not in fields:  # not stored in the weights: Psi0 always uses 64-wide heads
        fields["head_dim"] = 64
        fields["num_heads"] = int(fields["hidden"]) // 64
    return ExpertConfig(**fields)


def reference_stage(expert_config: ExpertConfig, stats: Mapping[str, object], action_key: str = "action") -> int:
    """The Psi0 training stage of released weights, from their chunk length and their statistics:
    stage 2 has chunk 16 and 28-D (hands + arms) delta statistics, stage 3 chunk 30 and 36-D."""
    entry = stats.get(action_key)
    if not isinstance(entry, Mapping) or "min" not in entry:
        raise CheckpointError(f"Psi0 statistics have no {action_key!r} entry with min/max")
    stats_dim = len(list(entry["min"]))
    votes = {2 if stats_dim == 28 else 3 if stats_dim == 36 else None, 2 if expert_config.horizon == 16 else 3}
    if None in votes or len(votes) != 1:
        raise CheckpointError(
            f"cannot tell the Psi0 stage of these weights (chunk {expert_config.horizon}, {stats_dim}-D action "
            "statistics; stage 2 has 16 and 28, stage 3 has 30 and 36): pass stage=2 or stage=3"
        )
    return votes.pop()


def convert_reference_checkpoint(
    weights: Path,
    stats_file: Path,
    directory: Path,
    vlm_path: Path | None = None,
    config: PolicyConfig | None = None,
    copy_vlm: bool = False,
    stage: int | None = None,
) -> Path:
    """Write a psi0_ros checkpoint from Psi0's released files: the action expert's safetensors
    (fp32 or bf16), its statistics json, and (optionally) the VLM directory.

    The expert shape comes from the weights. The serving recipe is the one of the stage the weights
    were trained in (config.stage_recipe: stage 2 = delta actions, q99, raw state, no RTC; stage 3
    = absolute, bounds, normalised state, training-time RTC), given as `stage` or read off the
    weights and statistics (reference_stage). A given `config` instead supplies the whole recipe
    (and the heads, dropouts and timestep scale, which the weights do not hold)."""
    from safetensors.torch import load_file

    from psi0_ros.policy.transforms import stats_from_reference

    weights, stats_file = Path(weights).expanduser(), Path(stats_file).expanduser()
    for path in (weights, stats_file):
        if not path.is_file():
            raise FileNotFoundError(f"reference file not found: {path}")
    if stage is not None and stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    reference = load_file(str(weights))
    raw_stats = json.loads(stats_file.read_text())
    if config is None:
        expert_config = expert_config_from_reference(reference)
        config = stage_recipe(stage or reference_stage(expert_config, raw_stats), expert_config)
    else:  # heads, dropouts and timestep scale are not in the weights: take them from the config
        given = config.expert
        keep = ("num_heads", "head_dim", "proprio_dropout", "obs_dropout", "timestep_scale", "layer_norm_eps")
        expert_config = expert_config_from_reference(reference, **{k: getattr(given, k) for k in keep})
        config = dataclasses.replace(config, expert=expert_config)
        if stage is not None:
            config = dataclasses.replace(stage_recipe(stage, expert_config, config.flow.num_steps), image=config.image)
    expert = ActionExpert(expert_config)
    load_state_dict_strict(expert, reference_to_expert_state_dict(reference, expert_config), str(weights))
    stats = stats_from_reference(raw_stats)
    return save_checkpoint(directory, expert, config, stats, vlm_path, copy_vlm)


def load_reference_expert(path: Path, config: ExpertConfig) -> ActionExpert:
    """An expert with Psi0's weights from a safetensors file (action_header.safetensors or a full
    training checkpoint's model.safetensors)."""
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"reference weights not found: {path}")
    expert = ActionExpert(config)
    load_state_dict_strict(expert, reference_to_expert_state_dict(load_file(str(path)), config), str(path))
    return expert.eval()
