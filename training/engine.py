"""The training loop shared by the three stages: one entry point for 1 process, torchrun and
multi-node.

- Distributed: under torchrun (WORLD_SIZE > 1) the trainable module is wrapped in DDP (gloo on
  CPU, NCCL on CUDA), or FSDP with run.parallel = "fsdp" on CUDA (the VLM stage).
- Batches: a global batch of run.global_batch samples per optimiser step is cut into
  grad_accum micro-batches on each of the world_size processes. The order of samples depends
  only on the seed and the step, and every sample carries its own random seed (augmentation,
  noise), so 1 process and N processes see the same global batch and the same randomness.
- bf16 autocast on CUDA (run.precision "auto" / "bf16"); fp32 on CPU.
- Resumable checkpoints in <output_dir>/checkpoints/step_XXXXXXXX: model, optimiser, scheduler,
  step (= the data position: the sampler restarts at that global batch), every process's RNG.
- Metrics: metrics.csv (every step), TensorBoard (every log_every steps, when installed),
  loss.png at the end, a tqdm progress bar with ETA on rank 0.
- Validation: every run.eval_every steps and at the last step, rank 0 calls Task.validate on the
  unwrapped module (eval mode, no gradients, the training's autocast); the values it returns join
  that step's metrics row as extra columns (empty on other steps) and go to TensorBoard as val/*.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.config import OptimConfig, RunConfig, to_dict

CHECKPOINTS_DIR = "checkpoints"
TRAINER_FILE = "trainer.pt"
METRICS_FILE = "metrics.csv"
PLOT_FILE = "loss.png"
METRIC_COLUMNS = ("step", "loss", "lr", "grad_norm", "samples_per_s", "data_wait_fraction", "elapsed_s")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """DistInfo from torchrun's environment; initialises the process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank, device)


def barrier(dist: DistInfo) -> None:
    if dist.distributed:
        torch.distributed.barrier()


def sample_seed(seed: int, position: int) -> int:
    """The random seed of the sample at a global position of the sample stream (rank-independent)."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


class GlobalBatchSampler:
    """Yields this process's micro-batches as lists of (dataset index, sample seed).

    Epoch e visits the dataset in the permutation seeded by (seed, e); global batch s is the
    slice [s * G, (s + 1) * G) of the sample stream (an incomplete last batch of an epoch is
    dropped). Within a global batch, micro-batch m of rank r is
    batch[(m * world + r) * micro : (m * world + r + 1) * micro].
    """

    def __init__(
        self, size: int, run: RunConfig, dist: DistInfo, start_step: int = 0, weights: np.ndarray | None = None
    ):
        per_process = run.global_batch // run.grad_accum
        if per_process % dist.world_size:
            raise ValueError(
                f"run.global_batch ({run.global_batch}) must split evenly over grad_accum ({run.grad_accum}) "
                f"x {dist.world_size} processes"
            )
        if size < run.global_batch:
            raise ValueError(f"the dataset has {size} samples, fewer than one global batch ({run.global_batch})")
        self.size = size
        self.global_batch = run.global_batch
        self.grad_accum = run.grad_accum
        self.micro = per_process // dist.world_size
        self.world, self.rank = dist.world_size, dist.rank
        self.seed = run.seed
        self.start_step = start_step
        self.batches_per_epoch = size // run.global_batch
        self.probabilities = None
        if weights is not None:
            weights = np.asarray(weights, np.float64)
            if (
                weights.shape != (size,)
                or not np.all(np.isfinite(weights))
                or (weights < 0).any()
                or weights.sum() <= 0
            ):
                raise ValueError(f"sampling weights must be {size} finite values >= 0, not all zero")
            if np.ptp(weights) > 0:  # equal weights: the plain permutation
                self.probabilities = weights / weights.sum()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        cached_epoch, order = -1, None
        while True:
            epoch, within = divmod(step, self.batches_per_epoch)
            if epoch != cached_epoch:
                rng = np.random.default_rng([self.seed, epoch])
                if self.probabilities is None:
                    order = rng.permutation(self.size)
                else:  # weighted: an epoch is as many draws, with replacement
                    order = rng.choice(self.size, size=self.size, p=self.probabilities)
                cached_epoch = epoch
            batch = order[within * self.global_batch : (within + 1) * self.global_batch]
            for m in range(self.grad_accum):
                first = (m * self.world + self.rank) * self.micro
                positions = step * self.global_batch + np.arange(first, first + self.micro)
                yield [
                    (int(index), sample_seed(self.seed, int(p)))
                    for index, p in zip(batch[first : first + self.micro], positions, strict=True)
                ]
            step += 1


class Task:
    """What a stage gives the loop. Subclasses set up models and data in setup()."""

    name = "task"

    def setup(self, dist: DistInfo) -> None:
        raise NotImplementedError

    def module(self) -> nn.Module:
        """The trainable module (wrapped in DDP/FSDP); frozen parts may live inside it."""
        raise NotImplementedError

    def sample_weights(self) -> np.ndarray | None:
        """How often each dataset index is drawn, relative to the others (None: each once per epoch)."""
        return None

    def dataset(self) -> torch.utils.data.Dataset:
        """Map-style: dataset[(index, seed)] -> sample; len(dataset) samples."""
        raise NotImplementedError

    def collate(self, samples: Sequence[Any]) -> Any:
        return torch.utils.data.default_collate(samples)

    def param_groups(self, module: nn.Module, optim: OptimConfig) -> list[dict[str, Any]]:
        return [{"params": [p for p in module.parameters() if p.requires_grad], "lr": optim.lr}]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def validate(self, module: nn.Module, step: int) -> dict[str, float]:
        """Held-out metrics ("val_loss", ...) merged into the step's metrics row; {} when the task
        has nothing to validate. Rank 0 only, on the unwrapped module, so no collectives."""
        return {}

    def export(self, module: nn.Module, output_dir: Path, state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write the stage's product (rank 0, after the last step); returns its path. state: the
        full state dict gathered from FSDP shards (None: read the module itself)."""
        raise NotImplementedError


def lr_lambda(optim: OptimConfig, total_steps: int):
    """Multiplier of the base lr at step s: linear warmup, then constant or cosine to 0."""

    def factor(step: int) -> float:
        if optim.warmup_steps and step < optim.warmup_steps:
            return (step + 1) / optim.warmup_steps
        if optim.schedule == "constant":
            return 1.0
        span = max(1, total_steps - optim.warmup_steps)
        progress = min(1.0, (step - optim.warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete resumable checkpoint directory, or None."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step_*") if (p / TRAINER_FILE).is_file())
    return done[-1] if done else None


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def _model_state(model: nn.Module, dist: DistInfo, fsdp: bool) -> dict[str, torch.Tensor]:
    if fsdp:
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, FullStateDictConfig(rank0_only=True)):
            return model.state_dict()
    return _unwrap(model).state_dict()


def _trainable_state(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Only parameters that train (and buffers): frozen parts come back from their source."""
    frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
    return {k: v.detach().cpu() for k, v in state.items() if k not in frozen}


def save_resumable(
    output_dir: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    dist: DistInfo,
    run: RunConfig,
    config: Any,
    fsdp: bool,
) -> Path:
    """Write checkpoints/step_XXXXXXXX (rank 0 writes the shared part, every rank its RNG)."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    final = root / f"step_{step:08d}"
    staging = root / f".step_{step:08d}.tmp"
    if dist.is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier(dist)
    state = _model_state(model, dist, fsdp)
    if fsdp:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        optim_state = FSDP.optim_state_dict(model, optimizer)
    else:
        optim_state = optimizer.state_dict()
    torch.save(_rng_state(), staging / f"rng_rank{dist.rank}.pt")
    if dist.is_main:
        payload = {
            "step": step,
            "model": _trainable_state(_unwrap(model), state),
            "optimizer": optim_state,
            "scheduler": scheduler.state_dict(),
            "world_size": dist.world_size,
            "config": to_dict(config),
        }
        torch.save(payload, staging / TRAINER_FILE)
    barrier(dist)
    if dist.is_main:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        done = sorted(p for p in root.glob("step_*") if (p / TRAINER_FILE).is_file())
        for old in done[: -run.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(dist)
    return final


def load_resumable(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, dist: DistInfo, fsdp: bool
) -> int:
    """Restore model, optimiser and scheduler from a resumable checkpoint; returns its step."""
    payload = torch.load(path / TRAINER_FILE, map_location="cpu", weights_only=False)
    module = _unwrap(model)
    if fsdp:
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, FullStateDictConfig(rank0_only=False)):
            missing = model.load_state_dict(payload["model"], strict=False)
            optimizer.load_state_dict(FSDP.optim_state_dict_to_load(model, optimizer, payload["optimizer"]))
    else:
        missing = module.load_state_dict(payload["model"], strict=False)
        optimizer.load_state_dict(payload["optimizer"])
    trainable_missing = [k for k in missing.missing_keys if dict(module.named_parameters()).get(k) is not None]
    trainable_missing = [k for k in trainable_missing if dict(module.named_parameters())[k].requires_grad]
    if trainable_missing or missing.unexpected_keys:
        raise ValueError(
            f"resumable checkpoint {path} does not fit the model: missing {trainable_missing[:8]}, "
            f"unexpected {missing.unexpected_keys[:8]}"
        )
    scheduler.load_state_dict(payload["scheduler"])
    return int(payload["step"])


def load_rng(path: Path, dist: DistInfo) -> None:
    """This process's RNG state as saved with a resumable checkpoint (restored last, once the data
    loader is running, since starting a loader draws from the global generator)."""
    rng_file = path / f"rng_rank{dist.rank}.pt"
    if rng_file.is_file():
        _set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=False))


class MetricsLog:
    """metrics.csv (every step) and TensorBoard (every log_every steps), rank 0 only. Columns a row
    brings beyond METRIC_COLUMNS (validation) are added to the file when they first appear."""

    def __init__(self, output_dir: Path, start_step: int, run: RunConfig, enabled: bool):
        self.enabled = enabled
        self.path = Path(output_dir) / METRICS_FILE
        self.every = run.log_every
        self.writer = None
        self.columns = list(METRIC_COLUMNS)
        if not enabled:
            return
        rows = []
        if self.path.is_file() and start_step > 0:  # keep the rows up to the resumed step
            with self.path.open() as f:
                reader = csv.DictReader(f)
                rows = [r for r in reader if int(r["step"]) <= start_step]
                self.columns += [c for c in reader.fieldnames or () if c not in self.columns]
        self._rewrite(rows)
        if run.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional; the CSV always exists
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"), purge_step=start_step + 1)

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(rows)

    def log(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        new = [k for k in row if k not in self.columns]
        if new:  # a new column (the first validation): rewrite the file with the wider header
            with self.path.open() as f:
                rows = list(csv.DictReader(f))
            self.columns += new
            self._rewrite(rows)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow({k: row.get(k, "") for k in self.columns})
        if self.writer is not None:
            step = int(row["step"])
            if step % self.every == 0:
                for key in METRIC_COLUMNS[1:]:
                    self.writer.add_scalar(f"train/{key}", row[key], step)
            for key in row:
                if key not in METRIC_COLUMNS:  # validation values: at every step that has them
                    self.writer.add_scalar(f"val/{key.removeprefix('val_')}", row[key], step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(output_dir: Path) -> list[dict[str, float]]:
    """metrics.csv rows; a row has only the columns it has values for (validation every N steps)."""
    with (Path(output_dir) / METRICS_FILE).open() as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def plot_loss(output_dir: Path) -> Path | None:
    """loss.png from metrics.csv: train loss, and the val loss and arm error when the run validated
    (psi0_ros.loss_plot); None when matplotlib is missing or there is nothing to plot."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from psi0_ros.loss_plot import plot_training_curves

    try:
        return plot_training_curves(Path(output_dir) / METRICS_FILE, Path(output_dir) / PLOT_FILE)
    except ValueError:
        return None


@dataclass
class TrainResult:
    output: Path | None  # what task.export wrote (rank 0)
    final_step: int
    losses: list[float]  # per step of this invocation
    data_wait_fraction: float
    samples_per_s: float


def _autocast(run: RunConfig, device: torch.device) -> contextlib.AbstractContextManager:
    use_bf16 = run.precision == "bf16" or (run.precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(task: Task, run: RunConfig, optim: OptimConfig, config: Any, max_steps: int | None = None) -> TrainResult:
    """Run (or resume) the stage; max_steps stops early at that step (tests of resuming)."""
    threads = torch.get_num_threads()
    if run.cpu_threads:
        torch.set_num_threads(run.cpu_threads)
    try:
        return _train(task, run, optim, config, max_steps)
    finally:
        torch.set_num_threads(threads)


def _train(task: Task, run: RunConfig, optim: OptimConfig, config: Any, max_steps: int | None) -> TrainResult:
    if not run.output_dir:
        raise ValueError("run.output_dir is empty: pass --set run.output_dir=DIR")
    output_dir = Path(run.output_dir)
    dist = init_distributed()
    if dist.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(json.dumps(to_dict(config), indent=1) + "\n")
    barrier(dist)
    torch.manual_seed(run.seed)
    np.random.seed(run.seed % 2**32)
    random.seed(run.seed)
    task.setup(dist)
    module = task.module().to(dist.device)
    fsdp = dist.distributed and run.parallel == "fsdp"
    if fsdp and dist.device.type != "cuda":
        raise ValueError("run.parallel='fsdp' needs CUDA; use run.parallel=ddp on CPU")
    if fsdp:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        model: nn.Module = FSDP(module, device_id=dist.device, use_orig_params=True)
    elif dist.distributed:
        model = nn.parallel.DistributedDataParallel(
            module, device_ids=[dist.device.index] if dist.device.type == "cuda" else None
        )
    else:
        model = module
    optimizer = torch.optim.AdamW(
        task.param_groups(model if fsdp else module, optim),
        lr=optim.lr,
        betas=optim.betas,
        eps=optim.eps,
        weight_decay=optim.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(optim, run.steps))
    start = 0
    resume_from = latest_checkpoint(output_dir) if run.resume else None
    if resume_from is not None:
        start = load_resumable(resume_from, model, optimizer, scheduler, dist, fsdp)
    stop = min(run.steps, max_steps if max_steps is not None else run.steps)

    dataset = task.dataset()
    sampler = GlobalBatchSampler(len(dataset), run, dist, start_step=start, weights=task.sample_weights())
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=task.collate,
        num_workers=run.num_workers,
        pin_memory=dist.device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if run.num_workers else None,
    )
    metrics = MetricsLog(output_dir, start, run, dist.is_main)
    progress = None
    if dist.is_main and run.progress:
        from tqdm import tqdm

        progress = tqdm(total=stop, initial=start, desc=f"train {task.name}", unit="step", dynamic_ncols=True)
    losses: list[float] = []
    total_wait = total_time = 0.0
    samples = 0
    began = time.perf_counter()
    batches = iter(loader)
    if resume_from is not None:
        load_rng(resume_from, dist)
    params = [p for p in model.parameters() if p.requires_grad]
    step = start
    try:
        for step in range(start + 1, stop + 1):
            model.train()
            step_start = time.perf_counter()
            wait = 0.0
            loss_sum = torch.zeros((), device=dist.device)
            for micro in range(run.grad_accum):
                before = time.perf_counter()
                batch = _to_device(next(batches), dist.device)
                wait += time.perf_counter() - before
                sync = micro == run.grad_accum - 1 or not dist.distributed
                context = contextlib.nullcontext() if sync else model.no_sync()
                with context:
                    with _autocast(run, dist.device):
                        loss = task.loss(model, batch)
                    (loss / run.grad_accum).backward()
                loss_sum += loss.detach().float() / run.grad_accum
            if optim.grad_clip is not None:
                if fsdp:
                    grad_norm = model.clip_grad_norm_(optim.grad_clip)
                else:
                    grad_norm = torch.nn.utils.clip_grad_norm_(params, optim.grad_clip)
            else:
                grad_norm = torch.sqrt(sum((p.grad.detach().float() ** 2).sum() for p in params if p.grad is not None))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if dist.distributed:
                torch.distributed.all_reduce(loss_sum)
                loss_sum /= dist.world_size
            step_time = time.perf_counter() - step_start
            total_wait += wait
            total_time += step_time
            samples += run.global_batch
            value = float(loss_sum)
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} at step {step}; the last checkpoint is kept")
            losses.append(value)
            row = {
                "step": step,
                "loss": value,
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "samples_per_s": run.global_batch / step_time,
                "data_wait_fraction": wait / step_time,
                "elapsed_s": time.perf_counter() - began,
            }
            if dist.is_main and not fsdp and (step % run.eval_every == 0 or step == stop):
                module.eval()
                with torch.no_grad(), _autocast(run, dist.device):
                    row.update(task.validate(module, step))
            metrics.log(row)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{value:.4f}")
            if step % run.save_every == 0 or step == stop:
                save_resumable(output_dir, step, model, optimizer, scheduler, dist, run, config, fsdp)
    finally:
        if progress is not None:
            progress.close()
        metrics.close()
    output = None
    if stop == run.steps:
        state = _model_state(model, dist, fsdp) if fsdp else None  # a collective: every rank calls it
        if dist.is_main:
            output = task.export(module, output_dir, state)
            plot_loss(output_dir)
        barrier(dist)
    return TrainResult(
        output=output,
        final_step=step,
        losses=losses,
        data_wait_fraction=total_wait / total_time if total_time else 0.0,
        samples_per_s=samples / total_time if total_time else 0.0,
    )
