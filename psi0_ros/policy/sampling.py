"""Chunk samplers, one per real-time-chunking (RTC) mode, registered by name.

Policy.infer looks its sampler up by `config.rtc.mode` and calls it; it knows no mode by name. A
sampler says which configurations it accepts (`check_config`, through check_policy_config: where a
Policy is built and where training builds its config), which prefix delays it accepts (`check_delay`, called per inference), and samples a chunk
in the model's normalised space. A new mode is one class here with `@register_sampler`:

    @register_sampler
    class MySampler:
        mode = "mine"
        def check_config(self, config): ...
        def check_delay(self, delay, config): ...
        def sample(self, expert, cond, noise, previous, delay, config): ...

The names are the one RTC-mode vocabulary (config.RTC_MODES): RTCConfig.mode in a checkpoint's
config.json, Policy.from_checkpoint(rtc_mode=...), the registry, and the RTC mode each of
chunk_node's scheduler modes names (control/scheduler.py SCHEDULER_MODES) all use them.

Modes:
  none      plain Euler sampling; a prefix is ignored.
  training  the first `delay` actions are held at the prefix at every Euler step (Psi0's served
            mode); needs a model trained with flow.max_delay > delay (flow.py).
  guidance  guided inpainting towards the whole prefix (rtc.py); works with any flow model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

import torch

from psi0_ros.policy.flow import sample_actions
from psi0_ros.policy.mmdit import ActionExpert, Conditioning
from psi0_ros.policy.rtc import guided_euler_sample

if TYPE_CHECKING:
    from psi0_ros.policy.config import PolicyConfig


class ChunkSampler(Protocol):
    """One RTC mode: how a chunk continues the actions that run while it is computed."""

    mode: ClassVar[str]  # the name in RTCConfig.mode
    # True: Policy checks and normalises a given prefix, passes it to sample(), and returns the
    # prefix's own actions for the first `delay` ticks. False: a prefix is ignored (previous=None).
    uses_prefix: ClassVar[bool]

    def check_config(self, config: PolicyConfig) -> None:
        """ValueError naming the field when `config` cannot be served in this mode."""

    def check_delay(self, delay: int, config: PolicyConfig) -> None:
        """ValueError when a prefix with `delay` frozen actions cannot be served."""

    def sample(
        self,
        expert: ActionExpert,
        cond: Conditioning,
        noise: torch.Tensor,  # (1, H, A) initial noise
        previous: torch.Tensor | None,  # (1, L, A) normalised prefix actions, or None without a prefix
        delay: int,  # frozen actions at the chunk's start, 0 <= delay <= L
        config: PolicyConfig,
    ) -> torch.Tensor:
        """The chunk (1, H, A) in the model's normalised space; with a prefix and `delay` > 0 its
        first `delay` actions are the prefix's."""


RTC_SAMPLERS: dict[str, type[ChunkSampler]] = {}


def register_sampler(cls: type[ChunkSampler]) -> type[ChunkSampler]:
    """Class decorator: make `cls` the sampler of RTC mode `cls.mode`."""
    mode = getattr(cls, "mode", None)
    if not isinstance(mode, str) or not mode:
        raise ValueError(f"sampler {cls.__name__} must set a class attribute `mode` (a non-empty str)")
    if not isinstance(getattr(cls, "uses_prefix", None), bool):
        raise ValueError(f"sampler {cls.__name__} must set a class attribute `uses_prefix` (a bool)")
    if mode in RTC_SAMPLERS and RTC_SAMPLERS[mode] is not cls:
        raise ValueError(f"RTC mode {mode!r} is already registered by {RTC_SAMPLERS[mode].__name__}")
    RTC_SAMPLERS[mode] = cls
    return cls


def rtc_modes() -> tuple[str, ...]:
    """Names of the registered RTC modes, in registration order."""
    return tuple(RTC_SAMPLERS)


def rtc_sampler(mode: str) -> ChunkSampler:
    """The sampler of RTC mode `mode`, or ValueError listing the known modes."""
    if mode not in RTC_SAMPLERS:
        raise ValueError(f"unknown RTC mode {mode!r}; known: {rtc_modes()}")
    return RTC_SAMPLERS[mode]()


def check_policy_config(config: PolicyConfig) -> ChunkSampler:
    """The sampler of config.rtc.mode, after every check that needs it; ValueError naming the field.

    The frozen config checks its own fields; what a mode needs of the rest (e.g. 'training' a model
    trained with flow.max_delay > 0) and whether a prefix can steer the action representation are
    checked here."""
    if config.rtc.mode not in RTC_SAMPLERS:
        raise ValueError(f"RTCConfig.mode must be one of {rtc_modes()}, got {config.rtc.mode!r}")
    sampler = rtc_sampler(config.rtc.mode)
    sampler.check_config(config)
    if config.action.representation != "absolute" and sampler.uses_prefix:
        raise ValueError(
            "PolicyConfig: delta actions are integrated from the state, so a prefix of absolute actions "
            f"cannot steer them; rtc.mode must be one that ignores prefixes (e.g. 'none'), got {config.rtc.mode!r}"
        )
    return sampler


@register_sampler
class PlainSampler:
    """Euler sampling from noise; the prefix is ignored."""

    mode: ClassVar[str] = "none"
    uses_prefix: ClassVar[bool] = False

    def check_config(self, config: PolicyConfig) -> None:
        pass

    def check_delay(self, delay: int, config: PolicyConfig) -> None:
        pass

    def sample(
        self,
        expert: ActionExpert,
        cond: Conditioning,
        noise: torch.Tensor,
        previous: torch.Tensor | None,
        delay: int,
        config: PolicyConfig,
    ) -> torch.Tensor:
        return sample_actions(expert, cond, config.flow, noise=noise)


@register_sampler
class HeldPrefixSampler:
    """Training-time RTC (Psi0): the first `delay` actions are held at the prefix (flow.py)."""

    mode: ClassVar[str] = "training"
    uses_prefix: ClassVar[bool] = True

    def check_config(self, config: PolicyConfig) -> None:
        if config.flow.max_delay <= 0:
            raise ValueError(
                "PolicyConfig: rtc.mode='training' needs a model trained with flow.max_delay > 0, got max_delay=0"
            )

    def check_delay(self, delay: int, config: PolicyConfig) -> None:
        if delay >= config.flow.max_delay:
            raise ValueError(
                f"prefix delay {delay} is beyond what the model was trained for "
                f"(max_delay {config.flow.max_delay}: delays 0..{config.flow.max_delay - 1})"
            )

    def sample(
        self,
        expert: ActionExpert,
        cond: Conditioning,
        noise: torch.Tensor,
        previous: torch.Tensor | None,
        delay: int,
        config: PolicyConfig,
    ) -> torch.Tensor:
        held = None if previous is None else previous[:, :delay]
        return sample_actions(expert, cond, config.flow, prefix=held, noise=noise)


@register_sampler
class GuidedSampler:
    """Inference-time RTC: guided inpainting towards the whole prefix (rtc.py)."""

    mode: ClassVar[str] = "guidance"
    uses_prefix: ClassVar[bool] = True

    def check_config(self, config: PolicyConfig) -> None:
        pass

    def check_delay(self, delay: int, config: PolicyConfig) -> None:
        pass

    def sample(
        self,
        expert: ActionExpert,
        cond: Conditioning,
        noise: torch.Tensor,
        previous: torch.Tensor | None,
        delay: int,
        config: PolicyConfig,
    ) -> torch.Tensor:
        if previous is None:
            return sample_actions(expert, cond, config.flow, noise=noise)

        def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return expert(x, sigma, cond)

        return guided_euler_sample(
            velocity,
            noise,
            previous,
            delay,
            config.flow.num_steps,
            config.flow.sigma_min,
            config.rtc.guidance_beta,
            config.rtc.schedule,
        )
