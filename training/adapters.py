"""Stage 3 as a per-task LoRA adapter on a base checkpoint (adapter.method=lora, docs/adapters.md).

    psi0 train stage3 --preset psi0 --set model.init=BASE --set adapter.method=lora \
        --set adapter.rank=16 --set data.root=EPISODES --set run.output_dir=OUT

The run is the full fine-tune's (ExpertTask: the same data, feature cache, loss, validation,
torchrun/DDP and resumable checkpoints) with two differences: the expert is the base's, loaded
whole, and peft wraps it so that only the LoRA pairs train (every base weight is frozen and
never changes); and the product is an adapter directory (psi0_ros.policy.adapters), not a
checkpoint.

Per task, besides the LoRA pairs: the normalisation statistics, computed from the task's own
episodes as a full fine-tune would. A task's action and state ranges are its own (a cube sits
lower than a can; one task turns the waist, another does not), and with bounds normalisation
they decide what the expert's [-1, 1] outputs mean in physical units; with the base's statistics
a task's actions beyond the base's range would be clipped at serving. Everything else that gives
the numbers their meaning (expert shape, action representation, normalisation mode, state
normalisation, RTC max delay) and the VLM must be the base's, and is checked against it: the
adapter serves with the base's config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from psi0_ros.policy.adapters import base_sha256, lora_config, task_key, wrap_expert, write_adapter
from psi0_ros.policy.checkpoint import read_config
from psi0_ros.policy.config import PolicyConfig
from training.engine import DistInfo
from training.expert import ExpertTask

ADAPTER_DIR = "adapter"  # <output_dir>/adapter: the adapter directory the run writes


def contract_differences(run: PolicyConfig, base: PolicyConfig) -> list[str]:
    """Where the run's policy config differs from its base's in what an adapter cannot change
    (dropouts are training-only and may differ)."""
    training_only = {"proprio_dropout": 0.0, "obs_dropout": 0.0}
    pairs = {
        "expert": (dataclasses.replace(run.expert, **training_only), dataclasses.replace(base.expert, **training_only)),
        "action.representation": (run.action.representation, base.action.representation),
        "norm.mode": (run.norm.mode, base.norm.mode),
        "norm.normalize_state": (run.norm.normalize_state, base.norm.normalize_state),
        "flow.max_delay": (run.flow.max_delay, base.flow.max_delay),
    }
    return [f"{name}: run {ours} vs base {theirs}" for name, (ours, theirs) in pairs.items() if ours != theirs]


class AdapterTask(ExpertTask):
    """ExpertTask whose expert is the base's with LoRA pairs, the only parameters that train."""

    def setup(self, dist: DistInfo) -> None:
        config = self.config
        if config.run.parallel == "fsdp":
            raise ValueError("adapter training runs under DDP (run.parallel=ddp): the adapter is small")
        self.base_dir = Path(config.model.init).expanduser()
        base_config, base_vlm = read_config(self.base_dir)
        if config.model.vlm and (base_vlm is None or Path(config.model.vlm).resolve() != base_vlm.resolve()):
            raise ValueError(
                f"an adapter trains on its base's VLM ({base_vlm}), got model.vlm={config.model.vlm!r}: "
                "set model.vlm= (empty)"
            )
        super().setup(dist)
        differences = contract_differences(self.policy_config, base_config)
        if differences:
            raise ValueError(
                f"the base {self.base_dir} does not fit this run (an adapter keeps the base's): {differences}"
            )
        self.base_hash = base_sha256(self.base_dir)
        adapter = config.adapter
        self.peft = wrap_expert(
            self.expert, lora_config(adapter.rank, adapter.alpha, adapter.dropout, adapter.target_modules)
        )
        self.instructions = sorted({entry.instruction for entry in self.source.entries if task_key(entry.instruction)})
        self.task_name = adapter.task or (self.instructions[0] if len(self.instructions) == 1 else "")
        if not task_key(self.task_name):
            raise ValueError(
                f"the episodes hold {len(self.instructions)} instructions ({self.instructions[:4]}): "
                "name the adapter's task with adapter.task=NAME"
            )

    def export(self, module: nn.Module, output_dir: Path, state: dict | None = None) -> Path:
        """The adapter directory (the trained LoRA pairs live in self.expert, which module holds)."""
        return write_adapter(
            output_dir / ADAPTER_DIR,
            self.peft,
            self.task_name,
            self.instructions,
            self.stats,
            self.base_dir,
            self.base_hash,
        )
