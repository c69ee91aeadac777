"""Tabletop tasks: a language instruction and a success check on the simulated world."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from psi0_ros.sim.scene import (
    BASKET_HALF,
    BASKET_WALL,
    BASKET_WALL_HALF_HEIGHT,
    CAN_HALF_HEIGHT,
    CUBE_HALF,
    TABLE_HEIGHT,
)
from psi0_ros.sim.simulator import G1Sim

_HALF_HEIGHT = {"can": CAN_HALF_HEIGHT, "cube": CUBE_HALF}


def _in_basket(sim: G1Sim, name: str) -> bool:
    """The object's centre lies inside the basket's inner box (walls and rim height), in the basket frame."""
    position, _ = sim.body_pose(name)
    basket_pos, _ = sim.body_pose("basket")
    rotation = sim.data.xmat[sim.model.body("basket").id].reshape(3, 3)
    local = rotation.T @ (position - basket_pos)
    inside_xy = abs(local[0]) <= BASKET_HALF[0] and abs(local[1]) <= BASKET_HALF[1]
    inside_z = BASKET_WALL <= local[2] <= 2.0 * BASKET_WALL_HALF_HEIGHT + 0.05
    return bool(inside_xy and inside_z)


def _lifted(sim: G1Sim, name: str, clearance: float = 0.08) -> bool:
    """The object's centre is `clearance` m higher than when it rests upright on the table."""
    position, _ = sim.body_pose(name)
    return bool(position[2] > TABLE_HEIGHT + _HALF_HEIGHT[name] + clearance)


@dataclass(frozen=True)
class Task:
    name: str
    instruction: str  # what /psi0/instruction carries
    success: Callable[[G1Sim], bool]
    objects: tuple[str, ...]  # what the scene must contain

    def applies_to(self, sim: G1Sim) -> bool:
        present = {obj.name for obj in sim.layout.objects}
        return all(name in present for name in self.objects)

    def check(self, sim: G1Sim) -> bool | None:
        """Success on the current world, or None when the scene lacks the task's objects."""
        return self.success(sim) if self.applies_to(sim) else None


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "can_to_basket",
            "pick up the red can and put it in the blue basket",
            lambda s: _in_basket(s, "can"),
            ("can", "basket"),
        ),
        Task(
            "cube_to_basket",
            "pick up the green cube and put it in the blue basket",
            lambda s: _in_basket(s, "cube"),
            ("cube", "basket"),
        ),
        Task("lift_can", "pick up the red can", lambda s: _lifted(s, "can"), ("can",)),
    )
}
DEFAULT_TASK = "can_to_basket"


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name]
