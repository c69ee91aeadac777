"""Typed, frozen configuration of the policy, with named presets.

The defaults are Psi0's published settings (github physical-superintelligence-lab/Psi0,
scripts/train/psi0/finetune-real-psi0.sh and src/psi/models/psi0.py); each field says where a
surprising value comes from. A checkpoint stores these dataclasses as JSON (checkpoint.py), and a
node rebuilds the model from the checkpoint's copy, never from its own YAML.

The policy contract, what a checkpoint's numbers mean (DESIGN §6: action representation,
normalisation mode, whether the state is normalised, RTC mode, max delay), is one StageRecipe per
training stage (STAGE_RECIPES). Training writes its checkpoint's PolicyConfig from it
(StageRecipe.policy_config) and serving reads that same config back, so the two cannot disagree.

This module is torch-free and imports no sampler: which RTC modes exist and what each needs of the
rest of the config is checked by psi0_ros.policy.sampling.check_policy_config, where a Policy is
built and where training builds its config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from psi0_ros.constants import ACTION_DIM, STATE_PADDED_DIM

# The RTC-mode vocabulary, end to end: RTCConfig.mode in config.json, Policy.from_checkpoint(rtc_mode=),
# the scheduler modes' table (control/scheduler.py SCHEDULER_MODES) and the sampler registry
# (sampling.py) use these built-in names; sampling.rtc_modes() also lists registered ones.
RTC_MODES = ("none", "training", "guidance")
NORM_MODES = ("bounds", "q99")
ACTION_REPRESENTATIONS = ("absolute", "delta")
SOFT_MASK_SCHEDULES = ("exponential", "linear", "hard")
# Action expert architectures: "mmdit" (Psi0's, separate weights per token stream) and "dit" (a
# naive single-stream DiT, the ablation baseline of `psi0 ablate head`; psi0_ros.policy.dit).
EXPERT_ARCHS = ("mmdit", "dit")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class ExpertConfig:
    """Shape of the MM-DiT action expert (System-1)."""

    action_dim: int = ACTION_DIM  # 36, DESIGN §4
    state_dim: int = STATE_PADDED_DIM  # 36: proprioception zero-padded to the action width
    vlm_dim: int = 2048  # width of Qwen3-VL-2B's last hidden state
    hidden: int = 1536
    num_blocks: int = 6
    num_heads: int = 24
    head_dim: int = 64
    ffn_mult: int = 4  # FFN width = ffn_mult * hidden, GELU (tanh approximation)
    horizon: int = 30  # actions per chunk: 30 in stage 3, 16 in stage 2
    time_freq_dim: int = 256  # sinusoidal timestep features before the MLP
    # Psi0 trains with diffusers' 1000-step flow scheduler and feeds the network t = 1000 * sigma.
    timestep_scale: float = 1000.0
    proprio_dropout: float = 0.2  # dropout on the state before its projection (training only)
    obs_dropout: float = 0.1  # dropout on all observation tokens before positions are added
    layer_norm_eps: float = 1e-6
    arch: str = "mmdit"  # EXPERT_ARCHS: the MM-DiT (Psi0's) or the naive DiT baseline

    def __post_init__(self) -> None:
        _check(self.arch in EXPERT_ARCHS, f"ExpertConfig.arch must be one of {EXPERT_ARCHS}, got {self.arch!r}")
        for name in ("action_dim", "state_dim", "vlm_dim", "hidden", "num_blocks", "num_heads", "head_dim", "horizon"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value > 0, f"ExpertConfig.{name} must be a positive int, got {value!r}")
        _check(
            self.num_heads * self.head_dim == self.hidden,
            f"ExpertConfig: num_heads * head_dim must equal hidden, got {self.num_heads} * {self.head_dim} "
            f"!= {self.hidden}",
        )
        _check(
            self.time_freq_dim >= 4 and self.time_freq_dim % 2 == 0,
            f"ExpertConfig.time_freq_dim must be even and >= 4, got {self.time_freq_dim!r}",
        )
        _check(self.hidden % 2 == 0, f"ExpertConfig.hidden must be even (sinusoidal positions), got {self.hidden}")
        for name in ("proprio_dropout", "obs_dropout"):
            value = getattr(self, name)
            _check(0.0 <= value < 1.0, f"ExpertConfig.{name} must be in [0, 1), got {value!r}")
        _check(self.timestep_scale > 0, f"ExpertConfig.timestep_scale must be > 0, got {self.timestep_scale!r}")


@dataclass(frozen=True)
class FlowConfig:
    """Flow matching and training-time real-time chunking."""

    # Euler steps at inference: 8 on Psi0's real-robot RTC server (src/psi/deploy/psi_serve_rtc-
    # trainingtimertc.py, num_inference_steps = 8); its simulation server uses 10.
    num_steps: int = 8
    # The last non-zero noise level of the inference schedule: diffusers' FlowMatchEulerDiscrete
    # with 1000 training steps goes 1.0 ... 0.001, then 0.
    sigma_min: float = 1e-3
    # Training-time RTC: a clean prefix of d ~ U{0, ..., max_delay - 1} actions per sample (Psi0's
    # torch.randint(0, max_delay)); 0 disables it. A model trained so accepts prefixes d < max_delay.
    max_delay: int = 8
    # Serving only: the initial noise of the Euler integration is drawn with this standard
    # deviation. 1 is flow matching as trained (and Psi0's servers); below 1 the chunks move towards
    # the model's mean, trading sampling spread for bias (docs/main_job.md measures it).
    noise_scale: float = 1.0

    def __post_init__(self) -> None:
        _check(
            isinstance(self.num_steps, int) and self.num_steps >= 1,
            f"FlowConfig.num_steps must be >= 1, got {self.num_steps!r}",
        )
        _check(0.0 < self.sigma_min < 1.0, f"FlowConfig.sigma_min must be in (0, 1), got {self.sigma_min!r}")
        _check(
            isinstance(self.max_delay, int) and self.max_delay >= 0,
            f"FlowConfig.max_delay must be >= 0, got {self.max_delay!r}",
        )
        _check(0.0 <= self.noise_scale <= 1.0, f"FlowConfig.noise_scale must be in [0, 1], got {self.noise_scale!r}")


@dataclass(frozen=True)
class RTCConfig:
    """How inference uses the actions that will already have run (DESIGN §1, §4)."""

    # A registered sampler (sampling.py): "none" | "training" (held prefix, Psi0's served mode) |
    # "guidance" (inpainting); its own requirements on the rest of the config are checked there.
    mode: str = "training"
    guidance_beta: float = 5.0  # clip of the guidance weight (Black et al. 2025 use 5)
    schedule: str = "exponential"  # soft weights over the overlap in guidance mode

    def __post_init__(self) -> None:
        # Which names exist is the sampler registry's to say (sampling.check_policy_config).
        _check(isinstance(self.mode, str) and self.mode, f"RTCConfig.mode must be a sampler name, got {self.mode!r}")
        _check(self.guidance_beta > 0, f"RTCConfig.guidance_beta must be > 0, got {self.guidance_beta!r}")
        _check(
            self.schedule in SOFT_MASK_SCHEDULES,
            f"RTCConfig.schedule must be one of {SOFT_MASK_SCHEDULES}, got {self.schedule!r}",
        )


@dataclass(frozen=True)
class NormConfig:
    """Normalisation of actions and state to [-1, 1] (statistics live in normalization.json)."""

    mode: str = "bounds"  # "bounds": min/max; "q99": 1st/99th percentile
    normalize_state: bool = True

    def __post_init__(self) -> None:
        _check(self.mode in NORM_MODES, f"NormConfig.mode must be one of {NORM_MODES}, got {self.mode!r}")


@dataclass(frozen=True)
class ActionConfig:
    """What the expert's action rows mean (transforms.py)."""

    # "absolute": 36-D joint targets and lower-body command (stage 3). "delta": a[t+1] - a[t] over
    # hands + arms (Psi0 stage 2, the released expert); Policy.infer integrates them from the state.
    representation: str = "absolute"

    def __post_init__(self) -> None:
        _check(
            self.representation in ACTION_REPRESENTATIONS,
            f"ActionConfig.representation must be one of {ACTION_REPRESENTATIONS}, got {self.representation!r}",
        )


@dataclass(frozen=True)
class ImageConfig:
    """Camera frame -> VLM input, as Psi0 prepares it (image_prep.py)."""

    resize: tuple[int, int] = (240, 320)  # (H, W), nearest neighbour, exact size (torchvision Resize((h, w)))
    crop: tuple[int, int] = (240, 320)  # (H, W), centre crop after the resize
    lowercase_instruction: bool = True  # Psi0 lower-cases every instruction in training and serving

    def __post_init__(self) -> None:
        for name in ("resize", "crop"):
            value = tuple(getattr(self, name))
            _check(
                len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value),
                f"ImageConfig.{name} must be (height, width) positive ints, got {value!r}",
            )
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class PolicyConfig:
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    rtc: RTCConfig = field(default_factory=RTCConfig)
    norm: NormConfig = field(default_factory=NormConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    action: ActionConfig = field(default_factory=ActionConfig)

    def __post_init__(self) -> None:
        # Checks that need the sampler of rtc.mode live in sampling.check_policy_config.
        _check(
            self.flow.max_delay <= self.expert.horizon,
            f"PolicyConfig: flow.max_delay ({self.flow.max_delay}) must not exceed expert.horizon ({self.expert.horizon})",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyConfig:
        """Inverse of to_dict; unknown keys are an error naming them (a checkpoint from a newer format)."""
        parts = {
            "expert": ExpertConfig,
            "flow": FlowConfig,
            "rtc": RTCConfig,
            "norm": NormConfig,
            "image": ImageConfig,
            "action": ActionConfig,
        }
        unknown = sorted(set(data) - set(parts))
        if unknown:
            raise ValueError(f"PolicyConfig: unknown sections {unknown}")
        kwargs = {}
        for name, klass in parts.items():
            section = dict(data.get(name, {}))
            known = {f.name for f in dataclasses.fields(klass)}
            extra = sorted(set(section) - known)
            if extra:
                raise ValueError(f"PolicyConfig.{name}: unknown fields {extra}")
            for key, value in section.items():
                if isinstance(value, list):
                    section[key] = tuple(value)
            kwargs[name] = klass(**section)
        return cls(**kwargs)


# Named presets of the action expert. "psi0" is the published model (~490M parameters).
EXPERT_PRESETS: dict[str, ExpertConfig] = {
    "psi0": ExpertConfig(),
    "psi0_stage2": ExpertConfig(horizon=16),
    # Small enough for CPU tests and the bench baseline; vlm_dim matches tiny_qwen3vl_config().
    "tiny": ExpertConfig(vlm_dim=64, hidden=64, num_blocks=2, num_heads=4, head_dim=16, horizon=16),
    # Twice tiny's width and depth on the same tiny VLM: what a CPU can still train in the main job.
    "small": ExpertConfig(vlm_dim=64, hidden=128, num_blocks=4, num_heads=8, head_dim=16, horizon=16),
}


def expert_preset(name: str, **overrides: Any) -> ExpertConfig:
    """A named preset, optionally with some fields replaced (e.g. horizon=8)."""
    if name not in EXPERT_PRESETS:
        raise KeyError(f"unknown expert preset {name!r}; known: {sorted(EXPERT_PRESETS)}")
    return dataclasses.replace(EXPERT_PRESETS[name], **overrides)


# --- The policy contract: one recipe per Psi0 training stage ---------------------------------------
@dataclass(frozen=True)
class StageRecipe:
    """What the numbers of a stage's checkpoint mean (DESIGN §6); the part of a PolicyConfig that a
    training stage fixes and serving must honour. The expert's shape, the Euler steps and the
    dropouts are the caller's (policy_config's arguments)."""

    representation: str  # ActionConfig.representation: "absolute" | "delta"
    norm_mode: str  # NormConfig.mode: "bounds" | "q99"
    normalize_state: bool  # NormConfig.normalize_state
    rtc_mode: str  # RTCConfig.mode served by default (sampler name)
    max_delay: int  # FlowConfig.max_delay: training-time RTC prefixes 0..max_delay-1 (0: none)

    def __post_init__(self) -> None:
        ActionConfig(self.representation)
        NormConfig(self.norm_mode, self.normalize_state)
        RTCConfig(mode=self.rtc_mode)
        _check(
            isinstance(self.max_delay, int) and self.max_delay >= 0,
            f"StageRecipe.max_delay must be an int >= 0, got {self.max_delay!r}",
        )
        _check(
            self.representation == "absolute" or self.max_delay == 0,
            f"training-time RTC (max_delay > 0) needs absolute actions, got representation "
            f"{self.representation!r} with max_delay {self.max_delay}",
        )

    def with_overrides(self, **overrides: Any) -> StageRecipe:
        """This recipe with some fields replaced (None: keep). A new max_delay without an rtc_mode
        serves as training-time RTC had it: held prefixes when > 0, plain sampling when 0."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        if "max_delay" in changes and "rtc_mode" not in changes and self.rtc_mode in ("none", "training"):
            changes["rtc_mode"] = "training" if changes["max_delay"] > 0 else "none"
        return dataclasses.replace(self, **changes)

    def policy_config(self, expert: ExpertConfig, num_steps: int = 8, image: ImageConfig | None = None) -> PolicyConfig:
        """The full PolicyConfig a checkpoint of this recipe is written with and served from."""
        return PolicyConfig(
            expert=expert,
            flow=FlowConfig(num_steps=num_steps, max_delay=self.max_delay),
            rtc=RTCConfig(mode=self.rtc_mode),
            norm=NormConfig(mode=self.norm_mode, normalize_state=self.normalize_state),
            image=image if image is not None else ImageConfig(),
            action=ActionConfig(representation=self.representation),
        )


# Psi0's recipes (shared/RECIPE.md; Psi0 scripts/train/psi0/*.sh and src/psi/config/transform.py).
STAGE_RECIPES: dict[int, StageRecipe] = {
    # Stage 2 (posttrain-he-psi0.sh; the released action_header.safetensors): delta actions over
    # hands + arms, bounds_q99 normalisation, state not normalised, no training-time RTC.
    2: StageRecipe(representation="delta", norm_mode="q99", normalize_state=False, rtc_mode="none", max_delay=0),
    # Stage 3 (finetune-real-psi0.sh): absolute actions, min/max bounds, normalised state,
    # training-time RTC with max delay 8 (served with held prefixes).
    3: StageRecipe(
        representation="absolute", norm_mode="bounds", normalize_state=True, rtc_mode="training", max_delay=8
    ),
}
STAGES = tuple(STAGE_RECIPES)


def recipe(stage: int, **overrides: Any) -> StageRecipe:
    """The recipe of Psi0 stage `stage`, with explicit overrides (StageRecipe.with_overrides)."""
    if stage not in STAGE_RECIPES:
        raise ValueError(f"unknown Psi0 training stage {stage!r}; checkpoints exist for stages {STAGES}")
    return STAGE_RECIPES[stage].with_overrides(**overrides)


def stage_recipe(stage: int, expert: ExpertConfig, num_steps: int = 8, **overrides: Any) -> PolicyConfig:
    """The PolicyConfig a Psi0 stage-`stage` expert of shape `expert` is trained and served with."""
    return recipe(stage, **overrides).policy_config(expert, num_steps)
