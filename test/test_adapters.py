"""Per-task LoRA adapters (peft) on one base: an adapter trained for a few steps changes the
chunk while the base's weights stay bit-identical, its directory describes itself, a merged
checkpoint equals base + adapter, two processes under torchrun train the adapter as one does,
and an adapter of another base or a task nobody trained is refused with the current task kept."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training import synthetic
from training.engine import read_metrics, train
from training.run import build_config, run_stage

ROOT = Path(__file__).resolve().parents[1]
MERGE_ATOL = 1e-5  # merged weights vs base + B @ A * alpha / r: fp32 rounding of one matmul per layer
# 2 processes vs 1 on the same global batch differ only in float summation order (test_train_engine)
DISTRIBUTED_RTOL = 1e-4


def _files_sha256(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def _adapter_sets(out: Path, base: Path, data: Path, *extra: str) -> list[str]:
    return [
        f"run.output_dir={out}",
        f"data.root={data}",
        f"model.init={base}",
        "model.vlm=",
        "adapter.method=lora",
        "adapter.rank=4",
        "adapter.dropout=0",
        "adapter.task=cup",
        "optim.lr=1e-2",
        "optim.warmup_steps=0",
        "run.steps=6",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny base (a short full fine-tune) and an adapter trained on other episodes of it."""
    from training.adapters import AdapterTask

    root = tmp_path_factory.mktemp("adapters")
    synthetic.write_episodes(root / "base_data", episodes=2, frames=24)
    synthetic.write_episodes(root / "task_data", episodes=2, frames=24, seed=5)
    base_sets = [f"run.output_dir={root / 'base'}", f"data.root={root / 'base_data'}", "run.steps=4"]
    base = run_stage(build_config("stage3", "tiny", base_sets)).output
    before = _files_sha256(base)
    config = build_config("stage3", "tiny", _adapter_sets(root / "adapter", base, root / "task_data"))
    task = AdapterTask(config)
    result = train(task, config.run, config.optim, config)
    return {"root": root, "base": base, "base_files": before, "task": task, "result": result}


def test_training_changes_only_the_adapter(trained):
    from psi0_ros.policy.checkpoint import load_checkpoint

    task, base = trained["task"], trained["base"]
    assert _files_sha256(base) == trained["base_files"]  # the base checkpoint on disk is untouched
    original = load_checkpoint(base).expert.state_dict()
    trained_state = task.expert.state_dict()
    base_weights = {k.replace(".base_layer", ""): v for k, v in trained_state.items() if "lora_" not in k}
    assert base_weights.keys() == original.keys()
    changed = [k for k in original if not torch.equal(base_weights[k], original[k])]
    assert changed == []  # bit-identical
    lora_b = [v for k, v in trained_state.items() if "lora_B" in k]
    assert lora_b and all(v.abs().max() > 0 for v in lora_b)  # B starts at zero: it trained
    trainable = {n for n, p in task.module().named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    # Resumable checkpoints hold the adapter only (frozen weights come back from the base).
    payload = torch.load(
        sorted((trained["root"] / "adapter" / "checkpoints").iterdir())[-1] / "trainer.pt", weights_only=False
    )
    assert all("lora_" in k for k in payload["model"] if k.startswith("expert."))


def test_adapter_directory_describes_itself_and_changes_the_chunk(trained):
    from psi0_ros.policy.adapters import AdapterPolicy, base_sha256, read_adapter
    from psi0_ros.policy.checkpoint import load_checkpoint
    from psi0_ros.policy.interface import Observation, Policy
    from psi0_ros.policy.transforms import Normalizer

    directory = trained["result"].output
    names = {p.name for p in directory.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "adapter.json", "normalization.json"} <= names
    peft_config = json.loads((directory / "adapter_config.json").read_text())
    assert peft_config["peft_type"] == "LORA" and peft_config["r"] == 4
    info = read_adapter(directory)
    assert info.task == "cup" and set(info.instructions) == set(synthetic.TASKS)
    assert info.base_sha256 == base_sha256(trained["base"])
    # The task's own statistics, not the base's.
    np.testing.assert_array_equal(info.stats.action.max, trained["task"].stats.action.max)
    base_stats = load_checkpoint(trained["base"]).stats
    assert not np.array_equal(info.stats.action.max, base_stats.action.max)
    assert 0 < info.trainable_parameters < info.expert_parameters

    served = AdapterPolicy(Policy.from_checkpoint(trained["base"], load_vlm=False), trained["base"], [directory])
    plain = Policy.from_checkpoint(trained["base"], load_vlm=False)
    normalizer = Normalizer(info.stats, plain.config.norm.mode, plain.config.norm.normalize_state)
    plain = Policy(plain.config, plain.expert, normalizer, seed=0)
    rng = np.random.default_rng(0)
    observation = Observation(
        state=rng.uniform(-0.5, 0.5, 32).astype(np.float32),
        vlm_features=rng.normal(size=(6, served.config.expert.vlm_dim)).astype(np.float32),
    )
    with_adapter = served._policies["cup"].infer_normalized(observation)
    without = plain.infer_normalized(observation)  # same base, statistics and noise: no adapter
    assert np.abs(with_adapter - without).max() > 1e-3


def test_merged_checkpoint_equals_base_plus_adapter(trained, tmp_path):
    from psi0_ros.cli import main
    from psi0_ros.policy.adapters import MERGED_FILE, AdapterPolicy
    from psi0_ros.policy.checkpoint import load_checkpoint
    from psi0_ros.policy.interface import ActionPrefix, Observation, Policy

    merged_dir = tmp_path / "merged"
    command = ["export", "--checkpoint", str(trained["base"]), "--merge-adapter", str(trained["result"].output)]
    assert main([*command, "--out", str(merged_dir)]) == 0
    assert json.loads((merged_dir / MERGED_FILE).read_text())["adapter"]["task"] == "cup"
    merged = Policy.from_checkpoint(merged_dir, load_vlm=False)  # an ordinary checkpoint
    served = AdapterPolicy(
        Policy.from_checkpoint(trained["base"], load_vlm=False), trained["base"], [trained["result"].output]
    )
    merged_state = load_checkpoint(merged_dir).expert.state_dict()
    base_state = load_checkpoint(trained["base"]).expert.state_dict()
    assert any(not torch.equal(merged_state[k], base_state[k]) for k in base_state)
    rng = np.random.default_rng(1)
    for _ in range(3):
        observation = Observation(
            state=rng.uniform(-0.5, 0.5, 32).astype(np.float32),
            vlm_features=rng.normal(size=(5, merged.config.expert.vlm_dim)).astype(np.float32),
        )
        prefix = ActionPrefix(rng.uniform(-0.3, 0.3, (4, 36)).astype(np.float32), delay=3)
        np.testing.assert_allclose(
            merged.infer(observation, prefix), served.infer(observation, prefix), atol=MERGE_ATOL
        )


def test_wrong_base_and_unknown_task_are_refused_and_the_current_task_stays(trained, tmp_path, capsys):
    from psi0_ros.bench.adapters import write_random_adapter
    from psi0_ros.cli import main
    from psi0_ros.policy.adapters import AdapterError, AdapterPolicy
    from psi0_ros.policy.checkpoint import LOADS
    from psi0_ros.policy.interface import Observation, Policy
    from psi0_ros.policy.tiny import write_tiny_checkpoint

    base = trained["base"]
    other_base = write_tiny_checkpoint(tmp_path / "other_base", with_vlm=False)
    stranger = write_random_adapter(tmp_path / "stranger", other_base, "wave", ["wave at me"])
    drawer = write_random_adapter(tmp_path / "drawer", base, "drawer", ["open the drawer please"], seed=3)
    with pytest.raises(AdapterError, match="trained on base"):
        AdapterPolicy(Policy.from_checkpoint(base, load_vlm=False), base, [trained["result"].output, stranger])
    assert main(["export", "--checkpoint", str(base), "--merge-adapter", str(stranger), "--out", str(tmp_path / "m")])
    assert "trained on base" in capsys.readouterr().err and not (tmp_path / "m").exists()

    served = AdapterPolicy(Policy.from_checkpoint(base, load_vlm=False), base, [trained["result"].output, drawer])
    loads = LOADS["checkpoint"]
    observation = Observation(state=np.zeros(32, np.float32), vlm_features=np.ones((4, 64), np.float32))
    assert served.active == "cup"
    with pytest.raises(AdapterError, match="no adapter for task 'fly to the moon'"):
        served.select("fly to the moon")
    with pytest.raises(AdapterError, match="trained on base"):
        served.add(stranger)
    served.infer(observation)
    assert served.active == "cup" and served.pending is None and served.loads["adapters"] == 2
    # An instruction selects its adapter; the switch waits for the next chunk, never lands inside one.
    assert served.select("  Open the DRAWER please ") == "drawer"
    assert served.active == "cup" and served.pending == "drawer"
    served.infer(observation)
    assert served.active == "drawer" and served.last_task == "drawer" and served.switches == 1
    assert LOADS["checkpoint"] == loads  # no switch, refusal or selection reloaded the base


def test_adapter_config_errors_name_the_value(trained, tmp_path):
    from psi0_ros.policy.adapters import AdapterError, check_targets
    from psi0_ros.policy.checkpoint import load_checkpoint

    with pytest.raises(ValueError, match="set model.init=DIR"):
        build_config("stage3", "tiny", ["adapter.method=lora"])
    with pytest.raises(ValueError, match=r"AdapterConfig.method must be one of \('none', 'lora'\), got 'dora'"):
        build_config("stage3", "tiny", ["adapter.method=dora"])
    with pytest.raises(ValueError, match="AdapterConfig.rank must be a positive int, got 0"):
        build_config("stage3", "tiny", ["adapter.rank=0"])
    with pytest.raises(AdapterError, match=r"\['action_qq'\] name no Linear layer"):
        check_targets(load_checkpoint(trained["base"]).expert, ["action_q", "action_qq"])
    config = build_config(
        "stage3", "tiny", [*_adapter_sets(tmp_path / "o", trained["base"], tmp_path), "model.vlm=tiny"]
    )
    with pytest.raises(ValueError, match="an adapter trains on its base's VLM"):
        run_stage(config)


def test_two_processes_train_the_adapter_as_one(trained, tmp_path):
    data = trained["root"] / "task_data"
    no_dropout = ("model.proprio_dropout=0", "model.obs_dropout=0")  # dropout masks are per process
    sets = _adapter_sets(tmp_path / "one", trained["base"], data, "run.steps=3", *no_dropout)
    single = run_stage(build_config("stage3", "tiny", sets))
    sets = _adapter_sets(tmp_path / "two", trained["base"], data, "run.steps=3", *no_dropout)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "training.run", "stage3", "--preset", "tiny", *[a for s in sets for a in ("--set", s)]]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    np.testing.assert_allclose(
        [r["loss"] for r in read_metrics(tmp_path / "two")], single.losses, rtol=DISTRIBUTED_RTOL
    )
    assert (tmp_path / "two" / "adapter" / "adapter_model.safetensors").is_file()
