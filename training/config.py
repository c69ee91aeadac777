"""Typed, frozen configuration of the three training stages, with named presets.

A stage config is a tree of frozen dataclasses: `run` (steps, batch, accumulation, precision,
checkpointing, logging), `optim` (AdamW and the learning-rate schedule), `data` (where the
datasets are and how samples are cut) and `model` (what is trained, from what). The "psi0"
presets mirror the reference recipe (shared/RECIPE.md, read from physical-superintelligence-lab/
Psi0 scripts/train/psi0/*.sh); the "tiny" presets run in seconds on a CPU for tests and the bench.

Stages 2 and 3 write a policy checkpoint whose meaning (action representation, normalisation,
state normalisation, RTC mode, max delay) is the stage's recipe, psi0_ros.policy.config.STAGE_RECIPES,
the one definition that serving reads back. The presets here carry only run/optim/data settings and
the model knobs outside the recipe (expert shape, VLM, init, Euler steps, dropouts). The recipe's
four training keys (data.action_mode, model.norm_mode, model.normalize_state, model.max_delay) are
left None ("the stage's") and resolved from the recipe when the config is built, so
--print-config shows them; setting one is an explicit, documented override of the recipe, checked
against it (e.g. a delta stage cannot train RTC prefixes), and lands in the checkpoint's config.

Overrides come from the command line as dotted keys (`--set optim.lr=3e-4 run.steps=20`), parsed
by the type of the field they replace; every __post_init__ check quotes the bad value.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from psi0_ros.policy.adapters import LORA_TARGETS
from psi0_ros.policy.config import ACTION_REPRESENTATIONS, EXPERT_ARCHS, NORM_MODES, STAGES, StageRecipe, recipe

SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")
PARALLEL = ("ddp", "fsdp")
CACHE_DTYPES = ("float16", "float32")
ACTION_MODES = ACTION_REPRESENTATIONS  # data.action_mode: the policy's action representations
TINY_VLM = "tiny"  # model.vlm value: write a random tiny Qwen3-VL locally (tests, bench)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _positive_int(owner: str, name: str, value: Any) -> None:
    _check(isinstance(value, int) and value > 0, f"{owner}.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and the learning-rate schedule (linear warmup, then constant or cosine to 0)."""

    lr: float = 1e-4
    vision_lr: float | None = None  # stage 1: vision tower and merger train at their own rate
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"
    grad_clip: float | None = 1.0  # max global grad norm; None disables clipping

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        _check(self.lr > 0, f"OptimConfig.lr must be > 0, got {self.lr!r}")
        _check(
            self.vision_lr is None or self.vision_lr > 0, f"OptimConfig.vision_lr must be > 0, got {self.vision_lr!r}"
        )
        _check(
            len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
            f"OptimConfig.betas must be two values in [0, 1), got {self.betas!r}",
        )
        _check(self.eps > 0, f"OptimConfig.eps must be > 0, got {self.eps!r}")
        _check(self.weight_decay >= 0, f"OptimConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        _check(
            isinstance(self.warmup_steps, int) and self.warmup_steps >= 0,
            f"OptimConfig.warmup_steps must be an int >= 0, got {self.warmup_steps!r}",
        )
        _check(self.schedule in SCHEDULES, f"OptimConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        _check(
            self.grad_clip is None or self.grad_clip > 0, f"OptimConfig.grad_clip must be > 0, got {self.grad_clip!r}"
        )


@dataclass(frozen=True)
class RunConfig:
    """The training loop: how long, how big, where the outputs go."""

    output_dir: str = ""  # required: checkpoints, metrics, the final model
    steps: int = 1000  # optimiser steps
    global_batch: int = 128  # samples per optimiser step over all processes and accumulation steps
    grad_accum: int = 1  # micro-batches per optimiser step on each process
    seed: int = 0
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    parallel: str = "ddp"  # under torchrun: "ddp", or "fsdp" (sharded; stage 1 on CUDA)
    num_workers: int = 2  # DataLoader worker processes per training process
    cpu_threads: int = 0  # torch intra-op threads on CPU (0: torch's default); tiny models run best on 1
    log_every: int = 10  # steps between metric rows
    save_every: int = 1000  # steps between resumable checkpoints (and one at the end)
    keep_checkpoints: int = 2  # resumable checkpoints kept on disk (oldest deleted)
    resume: bool = True  # continue from the newest resumable checkpoint in output_dir
    progress: bool = True  # progress bar with ETA on rank 0
    tensorboard: bool = True  # metrics also to TensorBoard (when the tensorboard package is installed)
    eval_every: int = 1000  # steps between validations (and one at the end), when the task validates

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "global_batch",
            "grad_accum",
            "log_every",
            "save_every",
            "keep_checkpoints",
            "eval_every",
        ):
            _positive_int("RunConfig", name, getattr(self, name))
        _check(self.precision in PRECISIONS, f"RunConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        _check(self.parallel in PARALLEL, f"RunConfig.parallel must be one of {PARALLEL}, got {self.parallel!r}")
        _check(
            isinstance(self.cpu_threads, int) and self.cpu_threads >= 0,
            f"RunConfig.cpu_threads must be an int >= 0, got {self.cpu_threads!r}",
        )
        _check(
            isinstance(self.num_workers, int) and self.num_workers >= 0,
            f"RunConfig.num_workers must be an int >= 0, got {self.num_workers!r}",
        )
        _check(
            self.global_batch % self.grad_accum == 0,
            f"RunConfig.global_batch ({self.global_batch}) must be a multiple of grad_accum ({self.grad_accum})",
        )


@dataclass(frozen=True)
class Stage1Data:
    """EgoDex (<root>/part*/<task>/<i>.hdf5 + .mp4), Humanoid Everyday (json + jpg) and/or psi0_ros
    episodes (training/robot_actions.py)."""

    egodex: str = ""  # EgoDex root
    humanoid_everyday: str = ""  # Humanoid Everyday root
    episodes: str = ""  # psi0_ros episode files or a directory of them: answers are the robot's 36-D actions
    frame_stride: int = 1  # use every n-th frame
    image_size: tuple[int, int] = (270, 480)  # (H, W) EgoDex frames are resized to, no crop (RECIPE)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(self.image_size))
        _positive_int("Stage1Data", "frame_stride", self.frame_stride)


@dataclass(frozen=True)
class Stage1Model:
    vlm: str = ""  # Hugging Face Qwen3-VL directory to start from, or "tiny"
    fast_vocab: int = 2048  # BPE vocabulary of the FAST tokenizer
    fast_scale: float = 100.0  # DCT coefficients are multiplied by this before rounding
    fast_fit_chunks: int = 100000  # at most this many action chunks to fit FAST on
    fast_tokenizer: str = ""  # an existing FAST tokenizer directory (fit one when empty)
    embed_pad_multiple: int = 192  # the resized vocabulary is a multiple of this (reference: 192)
    gradient_checkpointing: bool = True
    norm_mode: str = "q99"  # actions are normalised before FAST (bounds_q99, RECIPE)

    def __post_init__(self) -> None:
        _positive_int("Stage1Model", "fast_vocab", self.fast_vocab)
        _positive_int("Stage1Model", "embed_pad_multiple", self.embed_pad_multiple)
        _positive_int("Stage1Model", "fast_fit_chunks", self.fast_fit_chunks)
        _check(self.fast_scale > 0, f"Stage1Model.fast_scale must be > 0, got {self.fast_scale!r}")
        _check(
            self.norm_mode in NORM_MODES, f"Stage1Model.norm_mode must be one of {NORM_MODES}, got {self.norm_mode!r}"
        )


@dataclass(frozen=True)
class Stage1Config:
    run: RunConfig = field(default_factory=RunConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: Stage1Data = field(default_factory=Stage1Data)
    model: Stage1Model = field(default_factory=Stage1Model)


@dataclass(frozen=True)
class ExpertData:
    """Episodes for the action expert (stages 2 and 3)."""

    format: str = "episodes"  # "episodes" (psi0_ros HDF5), "lerobot" (v2.1), "humanoid_everyday"
    root: str = ""  # a directory of episodes / a LeRobot dataset / a Humanoid Everyday tree
    camera: str = ""  # camera name; empty: the only (or first) one
    include_failures: bool = False  # psi0_ros episodes marked outcome "failure" are left out unless true
    horizon: int = 30  # actions per chunk
    # "absolute" or "delta" (a[t+1] - a[t] over hands + arms); None: the stage's recipe (stage 2
    # delta, stage 3 absolute). Resolved when the stage config is built.
    action_mode: str | None = None
    color_jitter: bool = False  # brightness 0.2, contrast/saturation 0.8-1.2, hue 0.05 (stage 3)
    feature_cache: bool = True  # cache VLM features (memory-mapped) when the VLM is frozen and jitter is off
    cache_dtype: str = "float16"
    # Whole episodes held out of training and of the normalisation statistics (a draw seeded by
    # run.seed), scored every run.eval_every steps (training/validation.py); 0: no validation.
    val_episodes: int = 0
    # Loss weight of the base velocity dimensions (vx, vy, vyaw) against every other action
    # dimension (1: Psi0's plain average). A teleop walk is a few percent of an episode's frames and
    # 3 of 36 dimensions, yet where the robot stops decides a grasp (docs/main_job.md).
    velocity_loss_weight: float = 1.0
    # How often a frame whose action chunk commands the base to move (any vx, vy, vyaw row at or
    # above the lower body's stand speed) is drawn, relative to every other frame (1: each frame
    # once per epoch, Psi0's sampling). Above 1 the batches are drawn with replacement, so the few
    # walking frames make up more of them without weighting any dimension's loss.
    walk_sample_weight: float = 1.0

    def __post_init__(self) -> None:
        formats = ("episodes", "lerobot", "humanoid_everyday")
        _check(
            isinstance(self.velocity_loss_weight, (int, float)) and self.velocity_loss_weight > 0,
            f"ExpertData.velocity_loss_weight must be > 0, got {self.velocity_loss_weight!r}",
        )
        _check(
            isinstance(self.walk_sample_weight, (int, float))
            and not isinstance(self.walk_sample_weight, bool)
            and self.walk_sample_weight > 0,
            f"ExpertData.walk_sample_weight must be > 0, got {self.walk_sample_weight!r}",
        )
        _check(
            isinstance(self.val_episodes, int) and not isinstance(self.val_episodes, bool) and self.val_episodes >= 0,
            f"ExpertData.val_episodes must be an int >= 0, got {self.val_episodes!r}",
        )
        _check(self.format in formats, f"ExpertData.format must be one of {formats}, got {self.format!r}")
        _positive_int("ExpertData", "horizon", self.horizon)
        _check(
            self.action_mode is None or self.action_mode in ACTION_MODES,
            f"ExpertData.action_mode must be one of {ACTION_MODES}, got {self.action_mode!r}",
        )
        _check(
            self.cache_dtype in CACHE_DTYPES,
            f"ExpertData.cache_dtype must be one of {CACHE_DTYPES}, got {self.cache_dtype!r}",
        )


@dataclass(frozen=True)
class ExpertModel:
    """The action expert and what it starts from."""

    expert_preset: str = "psi0"  # psi0_ros.policy.config.EXPERT_PRESETS name (shape of the MM-DiT)
    # psi0_ros.policy.config.EXPERT_ARCHS: "mmdit" (Psi0's) or "dit", the naive single-stream DiT of
    # the same shape (`psi0 ablate head`); written into the checkpoint's expert config
    expert_arch: str = "mmdit"
    vlm: str = ""  # Qwen3-VL directory (stage 1 output), or "tiny"; stage 3 default: init's VLM
    init: str = ""  # stage 3: the stage-2 checkpoint directory (empty: from scratch)
    train_vlm: bool = False  # end-to-end: the VLM trains too (then no feature cache)
    # The recipe's keys (psi0_ros.policy.config.StageRecipe), None: the stage's. Resolved when the
    # stage config is built; an explicit value overrides the recipe and is checked against it.
    max_delay: int | None = None  # training-time RTC: clean prefixes of 0..max_delay-1 actions (0: off)
    norm_mode: str | None = None  # "bounds" (min/max) | "q99" (1st/99th percentile)
    normalize_state: bool | None = None
    num_steps: int = 10  # Euler steps written into the checkpoint's flow config
    proprio_dropout: float | None = None  # None: the preset's (0.2)
    obs_dropout: float | None = None  # None: the preset's (0.1)
    copy_vlm: bool = True  # the output checkpoint holds a copy of the VLM (else a path to it)
    # vlm="tiny" only: write_tiny_vlm's image_scale (1: plain random weights; see its docstring)
    tiny_vlm_image_scale: float = 1.0

    def __post_init__(self) -> None:
        _check(
            self.expert_arch in EXPERT_ARCHS,
            f"ExpertModel.expert_arch must be one of {EXPERT_ARCHS}, got {self.expert_arch!r}",
        )
        _check(
            self.tiny_vlm_image_scale > 0,
            f"ExpertModel.tiny_vlm_image_scale must be > 0, got {self.tiny_vlm_image_scale!r}",
        )
        _check(
            self.max_delay is None or (isinstance(self.max_delay, int) and self.max_delay >= 0),
            f"ExpertModel.max_delay must be an int >= 0, got {self.max_delay!r}",
        )
        _check(
            self.norm_mode is None or self.norm_mode in NORM_MODES,
            f"ExpertModel.norm_mode must be one of {NORM_MODES}, got {self.norm_mode!r}",
        )
        _positive_int("ExpertModel", "num_steps", self.num_steps)


ADAPTER_METHODS = ("none", "lora")


@dataclass(frozen=True)
class AdapterConfig:
    """Stage 3 as a per-task adapter on a base checkpoint (model.init) instead of a full fine-tune
    (training/adapters.py, docs/adapters.md). method "none": the whole expert trains."""

    method: str = "none"  # "none" | "lora" (Hugging Face peft)
    rank: int = 16  # LoRA rank r
    alpha: float = 32.0  # LoRA scale alpha / r (2 with the defaults)
    dropout: float = 0.05  # dropout on the LoRA input (training only)
    # expert module names (suffixes) that get a LoRA pair; default: attention and FFN of both streams
    target_modules: tuple[str, ...] = LORA_TARGETS
    task: str = ""  # the adapter's task name (set_task); empty: the episodes' one instruction

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        _check(
            self.method in ADAPTER_METHODS,
            f"AdapterConfig.method must be one of {ADAPTER_METHODS}, got {self.method!r}",
        )
        _positive_int("AdapterConfig", "rank", self.rank)
        _check(self.alpha > 0, f"AdapterConfig.alpha must be > 0, got {self.alpha!r}")
        _check(0.0 <= self.dropout < 1.0, f"AdapterConfig.dropout must be in [0, 1), got {self.dropout!r}")
        _check(
            len(self.target_modules) > 0 and all(isinstance(m, str) and m for m in self.target_modules),
            f"AdapterConfig.target_modules must be module names, got {self.target_modules!r}",
        )


@dataclass(frozen=True)
class ExpertStageConfig:
    """Stage 2 (post-training, delta actions) and stage 3 (fine-tuning, absolute actions + RTC)."""

    stage: int = 3
    run: RunConfig = field(default_factory=RunConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: ExpertData = field(default_factory=ExpertData)
    model: ExpertModel = field(default_factory=ExpertModel)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)

    def __post_init__(self) -> None:
        _check(self.stage in STAGES, f"ExpertStageConfig.stage must be one of {STAGES}, got {self.stage!r}")
        if self.adapter.method != "none":
            method = self.adapter.method
            _check(self.stage == 3, f"adapter.method={method!r} is a stage-3 option, got stage {self.stage}")
            _check(bool(self.model.init), f"adapter.method={method!r} trains on a base checkpoint: set model.init=DIR")
            _check(
                not self.model.train_vlm, f"adapter.method={method!r} trains an adapter only: set model.train_vlm=false"
            )
        _check(
            not (self.data.action_mode == "delta" and (self.model.max_delay or 0) > 0),
            "training-time RTC (model.max_delay > 0) needs absolute actions, got data.action_mode='delta'",
        )
        contract = self.recipe()  # the stage's recipe with the explicit overrides, checked
        object.__setattr__(self, "data", dataclasses.replace(self.data, action_mode=contract.representation))
        model = dataclasses.replace(
            self.model,
            max_delay=contract.max_delay,
            norm_mode=contract.norm_mode,
            normalize_state=contract.normalize_state,
        )
        object.__setattr__(self, "model", model)
        _check(
            self.model.max_delay <= self.data.horizon,
            f"model.max_delay ({self.model.max_delay}) must not exceed data.horizon ({self.data.horizon})",
        )

    def recipe(self) -> StageRecipe:
        """What the checkpoint of this run will mean: STAGE_RECIPES[stage] with the explicit
        overrides of data.action_mode, model.norm_mode, model.normalize_state, model.max_delay."""
        return recipe(
            self.stage,
            representation=self.data.action_mode,
            norm_mode=self.model.norm_mode,
            normalize_state=self.model.normalize_state,
            max_delay=self.model.max_delay,
        )


StageConfig = Stage1Config | ExpertStageConfig

_TINY_RUN = RunConfig(
    steps=30,
    global_batch=8,
    seed=0,
    num_workers=0,
    cpu_threads=1,
    log_every=5,
    save_every=1000,
    progress=False,
    tensorboard=True,
    eval_every=10,
)

PRESETS: dict[str, dict[str, StageConfig]] = {
    "stage1": {
        # Reference: scripts/train/psi0/pretrain-egodex-psi0-fast.sh (EgoDex 200k steps; HE 30k from it).
        "psi0": Stage1Config(
            run=RunConfig(steps=200_000, global_batch=1024, precision="auto", parallel="fsdp", save_every=5000),
            optim=OptimConfig(lr=1e-4, vision_lr=1e-5, betas=(0.9, 0.999), weight_decay=0.0, grad_clip=1.0),
        ),
        "psi0_he": Stage1Config(
            run=RunConfig(steps=30_000, global_batch=1024, precision="auto", parallel="fsdp", save_every=5000),
            optim=OptimConfig(lr=1e-4, vision_lr=1e-5, betas=(0.9, 0.999), weight_decay=0.0, grad_clip=1.0),
        ),
        "tiny": Stage1Config(
            run=dataclasses.replace(_TINY_RUN, steps=40),
            optim=OptimConfig(lr=2e-3, vision_lr=1e-3),
            data=Stage1Data(image_size=(64, 64)),
            model=Stage1Model(vlm=TINY_VLM, fast_vocab=2048, embed_pad_multiple=64, gradient_checkpointing=False),
        ),
    },
    "stage2": {
        # Reference: scripts/train/psi0/posttrain-he-psi0.sh.
        "psi0": ExpertStageConfig(
            stage=2,
            run=RunConfig(steps=30_000, global_batch=2048, save_every=5000),
            optim=OptimConfig(lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0, grad_clip=1.0),
            data=ExpertData(format="humanoid_everyday", horizon=16),
            model=ExpertModel(expert_preset="psi0_stage2"),
        ),
        "tiny": ExpertStageConfig(
            stage=2,
            run=dataclasses.replace(_TINY_RUN, global_batch=16),
            optim=OptimConfig(lr=3e-3),
            data=ExpertData(format="humanoid_everyday", horizon=16),
            model=ExpertModel(expert_preset="tiny", vlm=TINY_VLM, num_steps=4),
        ),
    },
    "stage3": {
        # Reference: scripts/train/psi0/finetune-real-psi0.sh.
        "psi0": ExpertStageConfig(
            stage=3,
            run=RunConfig(steps=40_000, global_batch=128, save_every=5000),
            optim=OptimConfig(
                lr=1e-4, betas=(0.95, 0.999), eps=1e-8, weight_decay=1e-6, warmup_steps=1000, schedule="cosine"
            ),
            data=ExpertData(format="episodes", horizon=30, color_jitter=True),
            model=ExpertModel(expert_preset="psi0", num_steps=8),
        ),
        "tiny": ExpertStageConfig(
            stage=3,
            run=dataclasses.replace(_TINY_RUN, global_batch=16),
            optim=OptimConfig(lr=3e-3, betas=(0.95, 0.999), weight_decay=1e-6, warmup_steps=3, schedule="cosine"),
            data=ExpertData(format="episodes", horizon=30, color_jitter=False),
            model=ExpertModel(expert_preset="tiny", vlm=TINY_VLM, num_steps=4),
        ),
        # The main job's small-demo recipe (`psi0 demo`, docs/main_job.md): the tiny expert and a
        # tiny random VLM whose image features are scaled to the expert's positional encodings,
        # trained to fit ten to thirty sim demos on a CPU in minutes. Measured against the tiny
        # preset: the recipe's dropouts (proprio 0.2, obs 0.1) and 1500 steps under-fit. The
        # walking frames are drawn 6x (about 70 % of the batches): drawn once, the expert walked
        # one average path whatever the layout.
        "sim": ExpertStageConfig(
            stage=3,
            run=dataclasses.replace(
                _TINY_RUN, steps=6000, global_batch=32, log_every=50, save_every=6000, eval_every=600
            ),
            optim=OptimConfig(lr=3e-3, betas=(0.95, 0.999), weight_decay=1e-6, warmup_steps=100, schedule="cosine"),
            data=ExpertData(format="episodes", horizon=30, color_jitter=False, walk_sample_weight=6.0),
            model=ExpertModel(
                expert_preset="tiny",
                vlm=TINY_VLM,
                num_steps=4,
                proprio_dropout=0.0,
                obs_dropout=0.0,
                tiny_vlm_image_scale=30.0,
            ),
        ),
    },
}


def preset(stage: str, name: str) -> StageConfig:
    if stage not in PRESETS:
        raise KeyError(f"unknown stage {stage!r}; known: {sorted(PRESETS)}")
    if name not in PRESETS[stage]:
        raise KeyError(f"unknown {stage} preset {name!r}; known: {sorted(PRESETS[stage])}")
    return PRESETS[stage][name]


T = TypeVar("T")


def _parse(text: str, current: Any, key: str) -> Any:
    """A command-line value for a field whose current value is `current`."""
    if text.lower() in ("none", "null") and not isinstance(current, str):
        return None
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--set {key}: expected true/false, got {text!r}")
    try:
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float) or current is None and _looks_numeric(text):
            return float(text)
        if isinstance(current, tuple):
            values = json.loads(text) if text.startswith("[") else text.split(",")
            return tuple(type(current[0])(v) if current else v for v in values)
    except (ValueError, json.JSONDecodeError):
        raise ValueError(f"--set {key}: cannot read {text!r} as {type(current).__name__}") from None
    return text


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def apply_overrides(config: T, assignments: list[str]) -> T:
    """config with each "section.field=value" replaced (values parsed by the field's type)."""
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {assignment!r}")
        config = _replace_path(config, key.strip().split("."), text.strip(), key)
    return config


def _replace_path(node: Any, path: list[str], text: str, key: str) -> Any:
    if not dataclasses.is_dataclass(node):
        raise ValueError(f"--set {key}: {path[0]!r} is not a section")
    names = {f.name for f in dataclasses.fields(node)}
    if path[0] not in names:
        raise ValueError(f"--set {key}: unknown field {path[0]!r} in {type(node).__name__} (fields: {sorted(names)})")
    current = getattr(node, path[0])
    if len(path) == 1:
        if dataclasses.is_dataclass(current):
            raise ValueError(f"--set {key}: {path[0]!r} is a section; set one of its fields")
        return dataclasses.replace(node, **{path[0]: _parse(text, current, key)})
    return dataclasses.replace(node, **{path[0]: _replace_path(current, path[1:], text, key)})


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
