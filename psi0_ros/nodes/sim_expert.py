"""SimExpertNode: the teleoperator of one scripted demonstration (not an executable of its own).

It publishes psi0_ros.sim.expert's commands on /psi0/upper_body_command and
/psi0/lower_body_command at 30 Hz (a standing hold until the recording runs), and presses the
teleop recorder's buttons through its real services: ~/start once the bag records every stream,
~/stop when the expert is done and the world has settled, then ~/mark_success with the task
check (psi0_ros.sim.tasks) on the simulated world. It is privileged: it reads sim time and object
poses from the G1Sim of the robot_bridge_node in the same process, so the expert keeps pace with
the simulation however fast it runs. That is why it has no main(): it only runs inside a demo
episode's process, which psi0_ros.jobs.demos.record_episode() composes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool, Trigger

from psi0_ros import g1
from psi0_ros.constants import TOPIC_LOWER_BODY_COMMAND, TOPIC_UPPER_BODY_COMMAND, relative_topic
from psi0_ros.control.lower_body import LOWER_BODY_INDEX
from psi0_ros.msg import LowerBodyCommand
from psi0_ros.nodes.qos import CONTROL
from psi0_ros.sim.demos import EXPERT_COMMAND_RATE_HZ, SETTLE_S
from psi0_ros.sim.expert import ScriptedExpert, StancePush
from psi0_ros.sim.simulator import G1Sim
from psi0_ros.sim.tasks import get_task

NODE_NAME = "sim_expert"
TELEOP_SERVICES = "/teleop_recorder"  # the teleop recorder node's name: its ~/ services live here
EVENTS_PER_EPISODE = 3  # START, STOP and SUCCESS/FAILURE
FLUSH_TIMEOUT_S = 10.0  # wall s to wait for the bag to store the last events


def lower_body_message(lower: np.ndarray, stamp: Any) -> LowerBodyCommand:
    msg = LowerBodyCommand()
    msg.header.stamp = stamp
    value = {name: float(lower[i]) for name, i in LOWER_BODY_INDEX.items()}
    msg.vx, msg.vy, msg.vyaw, msg.target_yaw = value["vx"], value["vy"], value["vyaw"], value["target_yaw"]
    msg.torso_roll, msg.torso_pitch, msg.torso_yaw = value["torso_roll"], value["torso_pitch"], value["torso_yaw"]
    msg.height = value["torso_height"]
    return msg


class SimExpertNode(Node):
    """One scripted episode: hold, START, expert, settle, STOP, SUCCESS/FAILURE, then on_finished."""

    def __init__(
        self,
        sim: G1Sim,
        task: str,
        recording_ready: Callable[[], bool],
        events_recorded: Callable[[], int],
        on_finished: Callable[[dict[str, Any]], None],
        push: StancePush | None = None,
    ) -> None:
        super().__init__(NODE_NAME, parameter_overrides=[Parameter("use_sim_time", value=True)])
        self.sim = sim
        self.task = get_task(task)
        self.expert = ScriptedExpert(sim, task, push=push)
        self._recording_ready = recording_ready
        self._events_recorded = events_recorded
        self._on_finished = on_finished
        self._upper_pub = self.create_publisher(JointState, relative_topic(TOPIC_UPPER_BODY_COMMAND), CONTROL)
        self._lower_pub = self.create_publisher(LowerBodyCommand, relative_topic(TOPIC_LOWER_BODY_COMMAND), CONTROL)
        self._start = self.create_client(Trigger, f"{TELEOP_SERVICES}/start")
        self._stop = self.create_client(Trigger, f"{TELEOP_SERVICES}/stop")
        self._mark = self.create_client(SetBool, f"{TELEOP_SERVICES}/mark_success")
        self._hold_lower = np.zeros(8)
        self._hold_lower[LOWER_BODY_INDEX["torso_height"]] = float(sim.base_pose()[0][2])
        self._command = (self.expert.default_upper.copy(), self._hold_lower.copy())
        self.state = "waiting"
        self._future: Any = None
        self._done_sim_time = 0.0
        self._deadline = 0.0
        self.outcome: dict[str, Any] = {"task": task, "success": None, "error": None}
        self.create_timer(1.0 / EXPERT_COMMAND_RATE_HZ, self._tick)

    def _publish(self) -> None:
        upper, lower = self._command
        stamp = self.get_clock().now().to_msg()
        joints = JointState()
        joints.header.stamp = stamp
        joints.name = list(g1.UPPER_BODY_JOINTS)
        joints.position = upper.tolist()
        self._upper_pub.publish(joints)
        self._lower_pub.publish(lower_body_message(lower, stamp))

    def _response(self) -> Any | None:
        """The pending service call's response once it arrived (None while waiting)."""
        if self._future is None or not self._future.done():
            return None
        response, self._future = self._future.result(), None
        if response is None or not response.success:
            raise RuntimeError(f"teleop recorder refused ({self.state}): {getattr(response, 'message', 'no reply')}")
        return response

    def _tick(self) -> None:
        try:
            self._advance()
        except RuntimeError as err:
            self.outcome["error"] = str(err)
            self._finish()
        if self.state != "finished":
            self._publish()

    def _advance(self) -> None:
        if self.state == "waiting":
            if self._recording_ready() and self._start.service_is_ready():
                self._future = self._start.call_async(Trigger.Request())
                self.state = "starting"
        elif self.state == "starting":
            if self._response() is not None:
                self.state = "running"
        elif self.state == "running":
            self._command = self.expert.command(self.sim.time)
            if self.expert.done:
                self._done_sim_time = self.sim.time
                self.state = "settling"
        elif self.state == "settling":
            if self.sim.time - self._done_sim_time >= SETTLE_S:
                self.outcome["success"] = bool(self.task.check(self.sim))
                self.outcome["sim_time_s"] = self.sim.time
                self.outcome["grasps"] = self.sim.grasp.events if self.sim.grasp is not None else 0
                self._future = self._stop.call_async(Trigger.Request())
                self.state = "stopping"
        elif self.state == "stopping":
            if self._response() is not None:
                self._future = self._mark.call_async(SetBool.Request(data=self.outcome["success"]))
                self.state = "marking"
        elif self.state == "marking":
            if self._response() is not None:
                self._deadline = time.monotonic() + FLUSH_TIMEOUT_S
                self.state = "flushing"
        elif self.state == "flushing":
            if self._events_recorded() >= EVENTS_PER_EPISODE or time.monotonic() > self._deadline:
                self._finish()

    def _finish(self) -> None:
        if self.state != "finished":
            self.state = "finished"
            self._on_finished(self.outcome)
