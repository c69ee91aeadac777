"""psi0_ros episodes as a stage-1 source: the VLM learns to say the robot's own action from its camera.

Psi0's stage 1 teaches Qwen3-VL to predict actions from egocentric frames (EgoDex's 48-D hand
deltas, training/egodex.py) before the action expert ever trains, so that the feature stage 2 and 3
read carries what the actions depend on. Here the same objective runs on the robot's episodes
(`psi0 convert` output, DESIGN §5): each frame's answer is the FAST tokens of that frame's 36-D
action (DESIGN §4: hands, arms, torso, lower-body command). Nothing of the state enters the prompt,
so whatever of the action the image determines (how far the object stands from where the robot
must stop, the phase of the task) has to be read from the image.

Same interface as EgoDexSource: .episodes (path, instruction, actions) and image(episode, frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.readers import HDF5EpisodeSource


@dataclass(frozen=True)
class RobotActionEpisode:
    path: Path
    instruction: str
    actions: np.ndarray  # (T', 36) float32: every `stride`-th frame's action


class RobotActionSource:
    """Every `stride`-th frame of psi0_ros HDF5 episodes under root (outcome-failure episodes left out)."""

    def __init__(self, root: Path, stride: int = 1, camera: str = ""):
        self.frames = HDF5EpisodeSource(Path(root), camera)
        self.stride = int(stride)
        self.episodes = [
            RobotActionEpisode(
                e.source, e.instruction, np.ascontiguousarray(e.action[:: self.stride], dtype=np.float32)
            )
            for e in self.frames.entries
        ]

    def image(self, episode: int, frame: int) -> np.ndarray:
        return self.frames.image(episode, frame * self.stride)
