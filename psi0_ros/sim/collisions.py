"""What the ablations count as collisions in the tabletop scene, updated after every physics step.

- table contacts: the robot's collision geoms (forearms, palms, fingers: the sim's other arm
  links have no collision geometry) press on the table (top or legs) with more than
  TABLE_CONTACT_FORCE_N in all; one count per onset, so a hand pressing on the table is one
  contact however long it stays (table_contact_s says how long, peak_table_force_n how hard).
  The threshold is there because the default pose rests both middle fingertips on the table top
  (about 6.5 N in all, measured in this scene): touching alone is the scene's normal state;
- knocked over: the can or the basket tilts more than KNOCKED_OVER_TILT_RAD from upright while
  low over the table (not carried) and outside the basket (the cube has no upright side);
- off the table: an object's centre falls OFF_TABLE_DROP_M below the table top.
Each object counts at most once for each of the last two. Nothing counts in the first SETTLE_S
of sim time, while the world settles from its layout poses (the fingertips land on the table with
~30 N for a few ms); objects start upright on the table, so a scene left alone counts nothing.
"""

from __future__ import annotations

import math
from typing import Any

import mujoco
import numpy as np

from psi0_ros.sim.model import PELVIS_BODY
from psi0_ros.sim.scene import BASKET_HALF, TABLE_HEIGHT

TABLE_GEOM_PREFIX = "table_"  # table_top, table_leg_0..3 (scene.py)
KNOCKED_OVER_TILT_RAD = math.radians(45.0)
KNOCKED_OVER_MAX_HEIGHT_M = 0.12  # centre at most this far above the table top: resting, not carried
TABLE_CONTACT_FORCE_N = 20.0  # N, normal force summed over robot-table contacts (resting fingertips: ~6.5)
OFF_TABLE_DROP_M = 0.05  # centre this far below the table top: fell off
SETTLE_S = 0.2  # s of sim time after a reset in which nothing counts
UPRIGHT_OBJECTS = ("can", "basket")  # objects with an upright side (a cube rests on any face)


class CollisionMonitor:
    """Counts table contacts, knocked-over and dropped objects (module docstring) on one world."""

    def __init__(self, model: mujoco.MjModel, objects: tuple[str, ...]) -> None:
        self.model = model
        robot_root = model.body(PELVIS_BODY).id
        body_root = model.body_rootid[model.geom_bodyid]
        collides = (model.geom_contype != 0) | (model.geom_conaffinity != 0)
        self.robot_geom = (body_root == robot_root) & collides  # (ngeom,) bool
        names = [model.geom(g).name for g in range(model.ngeom)]
        self.table_geom = np.array([n.startswith(TABLE_GEOM_PREFIX) for n in names], dtype=bool)
        self.objects = tuple(objects)
        self._body = {name: model.body(name).id for name in self.objects}
        self.enabled = bool(self.table_geom.any())  # the empty scene has no table
        self._wrench = np.zeros(6)  # mj_contactForce's output: normal force first, contact frame
        self.reset()

    def reset(self) -> None:
        self.table_contacts = 0
        self.table_contact_s = 0.0
        self.peak_table_force_n = 0.0
        self.knocked_over: list[str] = []
        self.off_table: list[str] = []
        self._touching = False

    def update(self, data: mujoco.MjData) -> None:
        """After one physics step of `data`."""
        if not self.enabled or data.time < SETTLE_S:
            return
        force = 0.0  # N, normal force of the robot on the table
        if data.ncon:
            pairs = data.contact.geom[: data.ncon]  # (ncon, 2) geom ids
            a, b = pairs[:, 0], pairs[:, 1]
            robot_table = (self.robot_geom[a] & self.table_geom[b]) | (self.robot_geom[b] & self.table_geom[a])
            for i in np.flatnonzero(robot_table):
                mujoco.mj_contactForce(self.model, data, int(i), self._wrench)
                force += float(self._wrench[0])
        self.peak_table_force_n = max(self.peak_table_force_n, force)
        touching = force > TABLE_CONTACT_FORCE_N
        if touching:
            self.table_contacts += int(not self._touching)
            self.table_contact_s += float(self.model.opt.timestep)
        self._touching = touching
        for name, body in self._body.items():
            z = float(data.xpos[body][2])
            if name not in self.off_table and z < TABLE_HEIGHT - OFF_TABLE_DROP_M:
                self.off_table.append(name)
            if name in UPRIGHT_OBJECTS and name not in self.knocked_over:
                up = float(data.xmat[body][8])  # world z of the body's z axis: cos(tilt)
                low = z < TABLE_HEIGHT + KNOCKED_OVER_MAX_HEIGHT_M
                if up < math.cos(KNOCKED_OVER_TILT_RAD) and low and not self._in_basket(data, name):
                    self.knocked_over.append(name)

    def _in_basket(self, data: mujoco.MjData, name: str) -> bool:
        """The object's centre lies over the basket's inner footprint (a can lying in it is placed)."""
        basket = self._body.get("basket")
        if basket is None or name == "basket":
            return False
        rotation = data.xmat[basket].reshape(3, 3)
        local = rotation.T @ (data.xpos[self._body[name]] - data.xpos[basket])
        return bool(abs(local[0]) <= BASKET_HALF[0] and abs(local[1]) <= BASKET_HALF[1])

    def summary(self) -> dict[str, Any]:
        """Per episode: table_contacts (onsets), table_contact_s, peak_table_force_n, knocked_over
        and off_table (object names), total (contacts + knocked-over + dropped objects)."""
        return {
            "table_contacts": self.table_contacts,
            "table_contact_s": round(self.table_contact_s, 4),
            "peak_table_force_n": round(self.peak_table_force_n, 2),
            "knocked_over": list(self.knocked_over),
            "off_table": list(self.off_table),
            "total": self.table_contacts + len(self.knocked_over) + len(self.off_table),
        }
