"""Per-task LoRA adapters on one base checkpoint (Hugging Face peft): their directory, the merge
into an ordinary checkpoint, and a policy that serves several tasks on one loaded base.

An adapter directory describes itself (DESIGN §6):
  adapter_config.json, adapter_model.safetensors   peft's own files (the LoRA pairs, their rank,
                                                    alpha and target modules)
  normalization.json   the task's statistics (transforms.NormStats): a task's action and state
                       ranges are its own, and with bounds normalisation they decide what the
                       expert's [-1, 1] outputs mean in radians and metres
  adapter.json         {"format": "psi0_ros.adapter", "format_version": 1, "task", "instructions",
                        "base": {"path", "sha256"}, "method", "trainable_parameters",
                        "expert_parameters"}
Everything else (the expert's shape, the action representation, the normalisation mode, RTC,
the VLM) is the base's: an adapter only moves weights, so it serves with the base's config.

The base's hash (base_sha256) covers its expert weights and its policy config; an adapter whose
recorded hash differs was trained on other weights and is refused with both hashes named.

AdapterPolicy wraps a base Policy (Policy.from_checkpoint, so the base is loaded once) and keeps
one LoRA pair per task in the same expert (peft's named adapters); selecting a task, by name or
by one of its instructions, takes effect at the start of the next infer(), on the thread that
runs it, never during a chunk. Loading an adapter directory at run time is queued the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from psi0_ros.policy.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    read_versioned_json,
    save_checkpoint,
)
from psi0_ros.policy.interface import ActionPrefix, Observation, Policy
from psi0_ros.policy.mmdit import ActionExpert
from psi0_ros.policy.transforms import Normalizer, NormStats

ADAPTER_FORMAT = "psi0_ros.adapter"
ADAPTER_FORMAT_VERSION = 1
ADAPTER_FILE = "adapter.json"
PEFT_CONFIG_FILE = "adapter_config.json"  # peft's names (peft.utils.CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME)
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_STATS_FILE = "normalization.json"
MERGED_FILE = "merged_from.json"  # in a merged checkpoint: the base and the adapter it came from
METHODS = ("lora",)
# The MM-DiT's attention projections and FFN layers of both streams (mmdit module names): rank 16
# on these is 1.0 % of the full expert's parameters (`psi0 bench adapters`). The adaLN
# modulations, the input/output layers and the positions stay the base's.
LORA_TARGETS = (
    "action_q", "action_k", "action_v", "action_out", "obs_q", "obs_k", "obs_v", "obs_out",
    "action_ff.net.0", "action_ff.net.2", "obs_ff.net.0", "obs_ff.net.2",
)  # fmt: skip


class AdapterError(ValueError):
    """An adapter that does not fit (another base, an unknown task, a malformed directory)."""


def task_key(text: str) -> str:
    """How task names and instructions are matched: whitespace collapsed, case folded."""
    return " ".join(str(text).split()).casefold()


def base_sha256(checkpoint: Path) -> str:
    """sha256 over a checkpoint's expert weights (model.safetensors) and its policy config (the
    "policy" entry of config.json, canonical JSON): what an adapter's deltas are added to and what
    its numbers mean. The VLM path and the statistics are not part of it."""
    checkpoint = Path(checkpoint).expanduser()
    digest = hashlib.sha256()
    with open(checkpoint / WEIGHTS_FILE, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    policy = json.loads((checkpoint / CONFIG_FILE).read_text()).get("policy", {})
    digest.update(json.dumps(policy, sort_keys=True).encode())
    return digest.hexdigest()


def lora_config(rank: int, alpha: float, dropout: float, target_modules: Sequence[str]) -> Any:
    """peft.LoraConfig for the action expert (adaLN-Zero blocks: LoRA B starts at zero, so an
    untrained adapter is exactly the base)."""
    from peft import LoraConfig

    return LoraConfig(
        r=int(rank),
        lora_alpha=float(alpha),
        lora_dropout=float(dropout),
        target_modules=list(target_modules),
        bias="none",
    )


def check_targets(expert: ActionExpert, target_modules: Sequence[str]) -> None:
    """Every target names at least one nn.Linear of the expert (peft matches name suffixes)."""
    linear = [name for name, module in expert.named_modules() if isinstance(module, torch.nn.Linear)]
    unknown = [t for t in target_modules if not any(n == t or n.endswith("." + t) for n in linear)]
    if unknown:
        examples = sorted({n.split(".", 2)[-1] for n in linear if n.startswith("blocks.0.")})
        raise AdapterError(f"adapter target modules {unknown} name no Linear layer of the expert (e.g. {examples})")


def wrap_expert(expert: ActionExpert, config: Any, adapter_name: str = "default") -> Any:
    """The expert wrapped in a peft.PeftModel: LoRA pairs injected in place (the ActionExpert object
    itself now runs them), every base weight frozen, only the pairs trainable."""
    from peft import get_peft_model

    check_targets(expert, config.target_modules)
    return get_peft_model(expert, config, adapter_name=adapter_name)


def trainable_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter directory says about itself (read_adapter)."""

    path: Path
    task: str
    instructions: tuple[str, ...]
    base_path: str
    base_sha256: str
    method: str
    trainable_parameters: int
    expert_parameters: int
    stats: NormStats

    def names(self) -> set[str]:
        """The keys (task_key) that select this adapter: its task name and its instructions."""
        return {task_key(self.task), *(task_key(i) for i in self.instructions)}


def read_adapter(directory: Path) -> AdapterInfo:
    """An adapter directory's metadata and statistics, checked; FileNotFoundError / AdapterError."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"adapter directory not found: {directory}")
    for name in (ADAPTER_FILE, PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, ADAPTER_STATS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"adapter {directory} is incomplete: no {name}")
    document = read_versioned_json(directory / ADAPTER_FILE, ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION, AdapterError)
    try:
        base = document["base"]
        info = AdapterInfo(
            path=directory.resolve(),
            task=str(document["task"]),
            instructions=tuple(str(i) for i in document.get("instructions", [])),
            base_path=str(base["path"]),
            base_sha256=str(base["sha256"]),
            method=str(document["method"]),
            trainable_parameters=int(document.get("trainable_parameters", 0)),
            expert_parameters=int(document.get("expert_parameters", 0)),
            stats=NormStats.load(directory / ADAPTER_STATS_FILE),
        )
    except (KeyError, TypeError) as err:
        raise AdapterError(f"{directory / ADAPTER_FILE}: missing or bad entry {err}") from None
    except ValueError as err:
        raise AdapterError(str(err)) from None
    if info.method not in METHODS:
        raise AdapterError(f"{directory / ADAPTER_FILE}: method {info.method!r} is not one of {METHODS}")
    if not task_key(info.task):
        raise AdapterError(f"{directory / ADAPTER_FILE}: the task name is empty")
    return info


def check_base(info: AdapterInfo, base_hash: str, base: Path | str) -> None:
    """AdapterError unless the adapter was trained on this base."""
    if info.base_sha256 != base_hash:
        raise AdapterError(
            f"adapter {info.path} (task {info.task!r}) was trained on base {info.base_sha256[:12]} "
            f"({info.base_path}), not on {base} ({base_hash[:12]})"
        )


def write_adapter(
    directory: Path,
    peft_model: Any,
    task: str,
    instructions: Iterable[str],
    stats: NormStats,
    base: Path,
    base_hash: str | None = None,
) -> Path:
    """Write an adapter directory from a trained PeftModel (written under a temporary name, then
    renamed). The task name must not be empty; instructions are the episodes' ones."""
    directory = Path(directory)
    if not task_key(task):
        raise AdapterError("an adapter needs a task name: set adapter.task (or train on episodes of one instruction)")
    staging = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    peft_model.save_pretrained(str(staging))
    stats.save(staging / ADAPTER_STATS_FILE)
    expert = peft_model.get_base_model()
    document = {
        "format": ADAPTER_FORMAT,
        "format_version": ADAPTER_FORMAT_VERSION,
        "task": task,
        "instructions": sorted(set(instructions)),
        "base": {"path": str(Path(base).resolve()), "sha256": base_hash or base_sha256(base)},
        "method": "lora",
        "trainable_parameters": trainable_parameters(peft_model),
        "expert_parameters": sum(p.numel() for n, p in expert.named_parameters() if "lora_" not in n),
    }
    (staging / ADAPTER_FILE).write_text(json.dumps(document, indent=1) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(staging, directory)
    return directory


def load_adapter_weights(peft_model: Any | None, expert: ActionExpert, directory: Path, name: str) -> Any:
    """Add the adapter in `directory` to the expert as peft adapter `name`; returns the PeftModel
    (created around the expert on the first call). The expert is changed in place."""
    from peft import PeftModel

    if peft_model is None:
        return PeftModel.from_pretrained(expert, str(directory), adapter_name=name, is_trainable=False)
    peft_model.load_adapter(str(directory), adapter_name=name, is_trainable=False)
    return peft_model


def merge_adapter(base: Path, adapter: Path, output: Path, copy_vlm: bool = False) -> Path:
    """Write an ordinary checkpoint: the base's expert with the adapter merged into its weights,
    the base's config, the adapter's statistics, the base's VLM (a path to it, or a copy), and
    merged_from.json naming both sources."""
    base, adapter = Path(base).expanduser(), Path(adapter).expanduser()
    info = read_adapter(adapter)
    check_base(info, base_sha256(base), base)
    checkpoint = load_checkpoint(base)
    peft_model = load_adapter_weights(None, checkpoint.expert, adapter, "merge")
    merged = peft_model.merge_and_unload()
    directory = save_checkpoint(output, merged, checkpoint.config, info.stats, checkpoint.vlm_path, copy_vlm)
    record = {
        "base": {"path": str(base.resolve()), "sha256": info.base_sha256},
        "adapter": {"path": str(info.path), "task": info.task, "instructions": list(info.instructions)},
    }
    (directory / MERGED_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return directory


class AdapterPolicy:
    """Several tasks on one base: infer(observation, prefix) with the active task's LoRA pair and
    statistics, the Policy interface (infer, reset) around per-task Policies that share the base's
    expert. select() and add() take effect at the start of the next infer(), never inside one.

    loads counts adapter weight loads ("adapters"); the base is the wrapped Policy's, loaded before.
    """

    def __init__(self, base: Policy, base_dir: Path, adapters: Sequence[Path], task: str | None = None):
        if not isinstance(base.expert, ActionExpert):
            raise AdapterError("adapters need the torch backend (an ActionExpert to add LoRA pairs to)")
        if not adapters:
            raise AdapterError("AdapterPolicy needs at least one adapter directory")
        self.base = base
        self.base_dir = Path(base_dir).expanduser()
        self.base_sha256 = base_sha256(self.base_dir)
        self.loads: Counter[str] = Counter()
        self._peft: Any = None
        self._lock = threading.Lock()  # guards the pending selection and loads, never held over a chunk
        self._policies: dict[str, Policy] = {}
        self._infos: dict[str, AdapterInfo] = {}
        self._slots: dict[str, str] = {}  # task -> peft adapter name
        self._pending_task: str | None = None
        self._pending_loads: list[AdapterInfo] = []
        self.switches = 0
        self.load_errors: list[str] = []  # adapters queued by add() that failed to load
        self.active: str = ""
        for directory in adapters:
            self._load(self._checked(directory))
        first = self._infos[next(iter(self._infos))].task
        self.active = self.resolve(task) if task else first
        self._activate(self.active)
        self.last_task = self.active

    # --- the Policy interface ------------------------------------------------------------------
    @property
    def config(self):
        return self.base.config

    @property
    def horizon(self) -> int:
        return self.base.horizon

    @property
    def tasks(self) -> list[str]:
        return list(self._infos)

    def reset(self) -> None:
        for policy in self._policies.values():
            policy.reset()

    def infer(self, observation: Observation, prefix: ActionPrefix | None = None) -> np.ndarray:
        """A chunk from the active task (after applying a pending load or switch)."""
        self.apply_pending()
        self.last_task = self.active
        return self._policies[self.active].infer(observation, prefix)

    # --- tasks ---------------------------------------------------------------------------------
    def resolve(self, text: str) -> str:
        """The task whose name or instructions match `text`; AdapterError naming the known ones."""
        key = task_key(text)
        with self._lock:
            infos = list(self._infos.values()) + list(self._pending_loads)
        for info in infos:
            if key in info.names():
                return info.task
        raise AdapterError(f"no adapter for task {text!r}; known tasks: {sorted(i.task for i in infos)}")

    def select(self, text: str) -> str:
        """Make the task named (or instructed) by `text` active from the next chunk; returns it.
        AdapterError for a task no adapter was trained for: the active task stays."""
        task = self.resolve(text)
        with self._lock:
            self._pending_task = None if task == self.active else task
        return task

    def add(self, directory: Path, select: bool = True) -> str:
        """Queue an adapter directory for loading at the next chunk (and select its task). Checked
        now, without touching the model: a wrong base, a malformed directory or a task already
        served raise AdapterError / FileNotFoundError and nothing changes."""
        info = self._checked(directory)
        with self._lock:
            self._pending_loads.append(info)
            if select:
                self._pending_task = info.task
        return info.task

    @property
    def pending(self) -> str | None:
        with self._lock:
            return self._pending_task

    def apply_pending(self) -> str | None:
        """Load queued adapters and switch to a pending task (the inference thread calls this
        between chunks); returns the task switched to, or None."""
        with self._lock:
            loads, self._pending_loads = self._pending_loads, []
            task, self._pending_task = self._pending_task, None
        for info in loads:
            try:
                self._load(info)
            except Exception as err:  # a file that passed the checks but does not load: keep serving
                self.load_errors.append(f"{info.path}: {err}")
        if task is None or task == self.active or task not in self._policies:
            return None
        self._activate(task)
        self.active = task
        self.switches += 1
        return task

    def info(self, task: str) -> AdapterInfo:
        return self._infos[task]

    def _checked(self, directory: Path) -> AdapterInfo:
        info = read_adapter(Path(directory))
        check_base(info, self.base_sha256, self.base_dir)
        with self._lock:
            served = list(self._infos.values()) + list(self._pending_loads)
        for other in served:
            clash = info.names() & other.names()
            if clash:
                raise AdapterError(
                    f"adapter {info.path} (task {info.task!r}) names {sorted(clash)}, already served by {other.path}"
                )
        return info

    def _load(self, info: AdapterInfo) -> None:
        slot = f"task_{len(self._slots)}"  # peft adapter names are module keys: no dots or spaces
        self._peft = load_adapter_weights(self._peft, self.base.expert, info.path, slot)
        self.loads["adapters"] += 1
        config = self.base.config
        normalizer = Normalizer(info.stats, config.norm.mode, config.norm.normalize_state)
        self._policies[info.task] = Policy(config, self.base.expert, normalizer, seed=self.base.seed)
        self._slots[info.task] = slot
        self._infos[info.task] = info
        self._activate(self.active or info.task)

    def _activate(self, task: str) -> None:
        self._peft.set_adapter(self._slots[task])
        self.base.expert.eval()

    def diagnostics(self) -> dict[str, object]:
        return {
            "active_task": self.active,
            "pending_task": self.pending or "",
            "tasks": ", ".join(self.tasks),
            "task_switches": self.switches,
            "adapter_loads": self.loads["adapters"],
            "adapter_load_errors": len(self.load_errors),
        }


def adapter_sizes(directory: Path) -> dict[str, float]:
    """File sizes of an adapter directory in bytes: peft weights and the whole directory."""
    directory = Path(directory)
    total = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    return {"weights_bytes": (directory / PEFT_WEIGHTS_FILE).stat().st_size, "directory_bytes": total}
