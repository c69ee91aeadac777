"""One policy interface for the nodes and for evaluation: infer(observation, prefix=None) -> chunk.

The Policy owns the action expert, the normaliser and (optionally) the VLM. An observation
carries the proprioceptive state and either precomputed VLM features (chunk_node, fed by
vlm_node's VLMFeatures) or an image and an instruction (then the VLM runs here). The chunk is
(horizon, 36) actions in physical units. Queueing, recording and timing wrap this interface;
they are not part of it.

With a prefix (the actions of the previous chunk that will run while this one is computed) the
chunk continues them, by the sampler registered for the configured RTC mode (sampling.py):
"training" holds the first `delay` actions (the model must have been trained with a larger
max_delay), "guidance" inpaints towards the whole prefix with decaying weights, "none" ignores
the prefix.

The Policy owns its training loss too (Policy.loss: flow.flow_loss, the one loss training uses) and
one transform list derived from its PolicyConfig (transforms.make_transforms: pad, delta/absolute,
normalise), which builds training targets forward and turns the model's output back into absolute
actions in reverse. Policy.from_checkpoint is the one factory, with explicit serving overrides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from psi0_ros.constants import ACTION_DIM
from psi0_ros.layout import check_actions
from psi0_ros.policy.checkpoint import load_checkpoint
from psi0_ros.policy.config import PolicyConfig
from psi0_ros.policy.flow import batch_flow_loss, expert_device_dtype
from psi0_ros.policy.mmdit import ActionExpert, Conditioning
from psi0_ros.policy.sampling import check_policy_config
from psi0_ros.policy.transforms import Normalizer, Sample, Transforms, action_transforms
from psi0_ros.policy.vlm import VLMBackbone

# Who runs the action expert: eager PyTorch on a checkpoint, or an export directory (docs/export.md).
BACKENDS = ("torch", "onnxruntime", "exported_program")


class PolicyError(RuntimeError):
    """The policy produced something that must not reach the robot (non-finite actions)."""


@dataclass
class Observation:
    state: np.ndarray  # (32,) or (36,) physical units, DESIGN §4 state layout
    vlm_features: np.ndarray | None = None  # (S, vlm_dim) the VLM's last hidden state
    vlm_mask: np.ndarray | None = None  # (S,) bool, True = real token; None = all real
    image: np.ndarray | None = None  # (H, W, 3) uint8 RGB, used when vlm_features is None
    instruction: str | None = None
    # (8,) lower-body command held over the chunk by a delta-action model (which does not predict
    # it); None = layout.held_lower_body(state). Ignored by absolute-action models.
    lower_body: np.ndarray | None = None


@dataclass(frozen=True)
class ActionPrefix:
    """Actions of the previous chunk that line up with the new chunk's first ticks."""

    actions: np.ndarray  # (L, 36) physical units: previous chunk's actions for new-chunk ticks 0..L-1
    delay: int  # d <= L: ticks that will certainly run before the new chunk arrives (frozen)


class Policy:
    """Action expert + its transform list (+ optional VLM) behind infer(), and its training loss()."""

    def __init__(
        self,
        config: PolicyConfig,
        expert: ActionExpert,
        normalizer: Normalizer,
        vlm: VLMBackbone | None = None,
        seed: int = 0,
    ):
        if expert.config != config.expert:
            raise ValueError("the expert's config differs from the policy config")
        if vlm is not None and vlm.hidden_size != config.expert.vlm_dim:
            raise ValueError(f"VLM width {vlm.hidden_size} != expert vlm_dim {config.expert.vlm_dim}")
        if normalizer.mode != config.norm.mode or normalizer.normalize_state_enabled != config.norm.normalize_state:
            raise ValueError(
                f"the normaliser ({normalizer.mode}, normalize_state={normalizer.normalize_state_enabled}) differs "
                f"from the policy config ({config.norm.mode}, normalize_state={config.norm.normalize_state})"
            )
        self.sampler = check_policy_config(config)
        self.config = config
        self.expert = expert.eval()
        self.normalizer = normalizer
        # One transform list from the config (pad, delta/absolute, normalise), as training cuts targets.
        self.transforms: Transforms = action_transforms(config.action.representation, normalizer)
        self.vlm = vlm
        self.seed = seed
        self.device, self.dtype = expert_device_dtype(expert)
        self._generator = torch.Generator(device=self.device)
        self.reset()

    @classmethod
    def from_checkpoint(
        cls,
        directory: Path,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        load_vlm: bool = True,
        seed: int = 0,
        rtc_mode: str | None = None,
        num_steps: int | None = None,
        guidance_beta: float | None = None,
        noise_scale: float | None = None,
        backend: str = "torch",
        torch_compile: bool = False,
    ) -> Policy:
        """The one factory: everything from the checkpoint's own config (DESIGN §6), with explicit
        serving overrides layered over it (None: the checkpoint's): the RTC mode (a sampler name,
        config.RTC_MODES), Euler steps, the guidance clip, the initial noise scale. What gives the numbers their meaning
        (representation, normalisation, max delay) is never overridden; config.json never changes,
        and a bad override raises naming it. load_vlm=False for chunk_node, which receives VLM
        features instead of images.

        backend="onnxruntime" / "exported_program": `directory` is an export directory of that
        format (`psi0 export`, docs/export.md); its copy of the checkpoint's config and statistics
        is read and the exported expert runs in onnxruntime (CPU, or CUDA/TensorRT for a cuda
        `device`; as many threads as torch) or as a torch.export program on `device`. The VLM, if
        loaded, runs in torch. Guided RTC needs the network's gradient and is not available there.
        torch_compile (backend "torch" only): the expert wrapped in torch.compile; the first
        chunks compile it."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if torch_compile and backend != "torch":
            raise ValueError(f"torch_compile applies to backend 'torch' (eager PyTorch), not {backend!r}")
        if backend != "torch":
            from psi0_ros.policy.onnx_expert import load_export

            checkpoint = load_export(directory, backend, str(device), threads=torch.get_num_threads())
            if (rtc_mode or checkpoint.config.rtc.mode) == "guidance":
                raise ValueError(f"backend {backend!r} cannot serve rtc_mode 'guidance' (it needs the gradient)")
        else:
            checkpoint = load_checkpoint(directory, device, dtype)
            if torch_compile:
                checkpoint.expert = torch.compile(checkpoint.expert)
        config = serving_config(checkpoint.config, rtc_mode, num_steps, guidance_beta, noise_scale)
        normalizer = Normalizer(checkpoint.stats, config.norm.mode, config.norm.normalize_state)
        vlm = None
        if load_vlm:
            if checkpoint.vlm_path is None:
                raise FileNotFoundError(f"checkpoint {directory} names no VLM directory")
            vlm = VLMBackbone.from_pretrained(checkpoint.vlm_path, dtype, device, config.image)
        return cls(config, checkpoint.expert, normalizer, vlm, seed)

    def reset(self) -> None:
        """Restart the noise sequence (same seed -> same chunks for the same observations)."""
        self._generator.manual_seed(self.seed)

    @property
    def horizon(self) -> int:
        return self.config.expert.horizon

    def encode(self, image: np.ndarray, instruction: str) -> tuple[np.ndarray, np.ndarray]:
        """VLM features (S, vlm_dim) float32 and mask (S,) bool for one frame (vlm_node's job)."""
        if self.vlm is None:
            raise RuntimeError("this policy was loaded without its VLM (load_vlm=False)")
        return self.vlm.encode([image], [instruction]).sample(0)

    def _conditioning(self, observation: Observation) -> Conditioning:
        features, mask = observation.vlm_features, observation.vlm_mask
        if features is None:
            if observation.image is None or observation.instruction is None:
                raise ValueError("observation needs vlm_features, or an image and an instruction")
            features, mask = self.encode(observation.image, observation.instruction)
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.config.expert.vlm_dim or features.shape[0] == 0:
            raise ValueError(f"vlm_features must be (S > 0, {self.config.expert.vlm_dim}), got {features.shape}")
        if not np.isfinite(features).all():
            raise ValueError("vlm_features contain non-finite values")
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != features.shape[:1] or not mask.any():
                raise ValueError(f"vlm_mask must be ({features.shape[0]},) with a real token, got {mask.shape}")
        state = self.transforms.forward(Sample(state=observation.state)).state
        return Conditioning(
            torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))[None],
            None if mask is None else torch.from_numpy(mask)[None],
            torch.from_numpy(state)[None],
        ).to(self.device, self.dtype)

    def _check_prefix(self, prefix: ActionPrefix) -> np.ndarray:
        actions = check_actions(prefix.actions, "prefix actions")
        if actions.ndim != 2 or not 0 < actions.shape[0] <= self.horizon:
            raise ValueError(
                f"prefix actions must be (L, {ACTION_DIM}) with 0 < L <= {self.horizon}, got {actions.shape}"
            )
        if not 0 <= prefix.delay <= actions.shape[0]:
            raise ValueError(f"prefix delay must be in [0, {actions.shape[0]}], got {prefix.delay}")
        self.sampler.check_delay(prefix.delay, self.config)
        return self.transforms.forward(Sample(state=np.zeros(actions.shape[1], np.float32), actions=actions)).actions

    @torch.no_grad()
    def infer_normalized(self, observation: Observation, prefix: ActionPrefix | None = None) -> np.ndarray:
        """The chunk in the model's [-1, 1] space, (H, 36) float32 (before denormalisation)."""
        cond = self._conditioning(observation)
        horizon, action_dim = self.horizon, self.config.expert.action_dim
        noise = torch.randn((1, horizon, action_dim), generator=self._generator, device=self.device)
        noise = (noise * self.config.flow.noise_scale).to(self.dtype)
        previous, delay = None, 0
        if prefix is not None and self.sampler.uses_prefix:
            previous = torch.from_numpy(self._check_prefix(prefix))[None].to(self.device, self.dtype)
            delay = prefix.delay
        chunk = self.sampler.sample(self.expert, cond, noise, previous, delay, self.config)
        result = chunk[0].float().cpu().numpy()
        if not np.isfinite(result).all():
            raise PolicyError("the action expert produced non-finite actions")
        return result

    def infer(self, observation: Observation, prefix: ActionPrefix | None = None) -> np.ndarray:
        """A chunk of (horizon, 36) actions in physical units (float32), clipped to the training bounds.

        A delta-action model's chunk is integrated from the observation's state (hands + arms) and
        holds observation.lower_body (default: held_lower_body(state)).

        With a prefix and a sampler that uses it ("training", "guidance"), the first prefix.delay
        actions are exactly the prefix's: they run from the previous chunk anyway."""
        return self.to_physical(self.infer_normalized(observation, prefix), observation, prefix)

    def to_physical(
        self, normalized: np.ndarray, observation: Observation, prefix: ActionPrefix | None = None
    ) -> np.ndarray:
        """infer's second half: a normalised chunk (H, 36) from infer_normalized -> physical actions."""
        sample = self.transforms.forward(Sample(state=observation.state, lower_body=observation.lower_body))
        actions = self.transforms.inverse(dataclasses.replace(sample, actions=normalized)).actions
        if prefix is not None and self.sampler.uses_prefix and prefix.delay > 0:
            # Exactly the actions that run anyway, not their normalise/denormalise round trip.
            actions[: prefix.delay] = np.asarray(prefix.actions, dtype=np.float32)[: prefix.delay]
        return actions

    def loss(self, batch: dict[str, torch.Tensor], cond: Conditioning) -> torch.Tensor:
        """The training loss of this policy's expert on a batch from the same transform list:
        actions (B, H, 36) normalised targets, weights (B, H, 36), and the per-sample randomness
        noise (B, H, 36), sigma (B,), delay (B,) (flow.flow_loss)."""
        return batch_flow_loss(self.expert, batch, cond, per_token_sigma=uses_token_sigma(self.config))


def uses_token_sigma(config: PolicyConfig) -> bool:
    """A model trained with RTC prefixes (flow.max_delay > 0) sees one noise level per action token."""
    return config.flow.max_delay > 0


def serving_config(
    config: PolicyConfig,
    rtc_mode: str | None = None,
    num_steps: int | None = None,
    guidance_beta: float | None = None,
    noise_scale: float | None = None,
) -> PolicyConfig:
    """A checkpoint's config with the inference-time choices replaced (None: keep); checked against
    the samplers (sampling.check_policy_config) with the value named."""
    rtc = config.rtc
    if rtc_mode is not None:
        rtc = dataclasses.replace(rtc, mode=rtc_mode)
    if guidance_beta is not None:
        rtc = dataclasses.replace(rtc, guidance_beta=float(guidance_beta))
    flow = config.flow if num_steps is None else dataclasses.replace(config.flow, num_steps=int(num_steps))
    if noise_scale is not None:
        flow = dataclasses.replace(flow, noise_scale=float(noise_scale))
    config = dataclasses.replace(config, rtc=rtc, flow=flow)
    check_policy_config(config)
    return config
