"""teleop_recorder_node: episode services for teleop data collection, events into the bag.

Services (std_srvs): ~/start, ~/stop, ~/discard (Trigger) and ~/mark_success (SetBool: true =
success, false = failure). Each accepted request publishes an EpisodeEvent on
/psi0/episode_events, where `ros2 bag record` / `psi0 record` stores it and the converter cuts
episodes. The task instruction comes from the `task` parameter (settable at run time) or from
/psi0/instruction; the parameter is also published there (latched) so the bag and the VLM see it.
The episode logic lives in psi0_ros.data.episodes.EpisodeRecorder.
"""

from __future__ import annotations

from collections.abc import Sequence

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from psi0_ros.constants import TOPIC_EPISODE_EVENTS, TOPIC_INSTRUCTION, relative_topic
from psi0_ros.data.episodes import EpisodeRecorder, EpisodeStateError, Event
from psi0_ros.msg import EpisodeEvent
from psi0_ros.nodes.qos import LATCHED

NODE_NAME = "teleop_recorder"
SERVICE_START = "~/start"
SERVICE_STOP = "~/stop"
SERVICE_DISCARD = "~/discard"
SERVICE_MARK_SUCCESS = "~/mark_success"

# Events must reach a recorder that (re)starts late: reliable, kept for late joiners. The
# converter counts a re-delivered event once.
EVENTS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


class TeleopRecorderNode(Node):
    def __init__(self, parameter_overrides: Sequence[Parameter] | None = None) -> None:
        super().__init__(NODE_NAME, parameter_overrides=list(parameter_overrides or []))
        task = self.declare_parameter(
            "task", "", ParameterDescriptor(description="language instruction of the next episode")
        ).value
        first = self.declare_parameter(
            "first_episode_index", 0, ParameterDescriptor(description="index of the first episode of this session")
        ).value
        self._publish_instruction = self.declare_parameter(
            "publish_instruction",
            True,
            ParameterDescriptor(description="publish the task parameter on /psi0/instruction (latched)"),
        ).value
        self._episodes = EpisodeRecorder(first_index=int(first), task=str(task))
        self._events = self.create_publisher(EpisodeEvent, relative_topic(TOPIC_EPISODE_EVENTS), EVENTS_QOS)
        self._instruction = self.create_publisher(String, relative_topic(TOPIC_INSTRUCTION), LATCHED)
        self.create_subscription(String, relative_topic(TOPIC_INSTRUCTION), self._on_instruction, LATCHED)
        self.create_service(Trigger, SERVICE_START, self._on_start)
        self.create_service(Trigger, SERVICE_STOP, self._on_stop)
        self.create_service(Trigger, SERVICE_DISCARD, self._on_discard)
        self.create_service(SetBool, SERVICE_MARK_SUCCESS, self._on_mark)
        self.add_on_set_parameters_callback(self._on_parameters)
        self._announce(str(task))
        self.get_logger().info(f"ready: next episode {self._episodes.next_index}, task {task!r}")

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _publish(self, event: Event) -> None:
        msg = EpisodeEvent()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(event.stamp_ns, 1_000_000_000)
        msg.type = int(event.type)
        msg.episode_index = event.episode_index
        msg.task = event.task
        self._events.publish(msg)
        self.get_logger().info(f"{event.type.name} episode {event.episode_index} {event.task!r}")

    def _handle(self, response, action) -> object:
        try:
            event = action()
        except EpisodeStateError as err:
            response.success, response.message = False, str(err)
            self.get_logger().warning(str(err))
            return response
        self._publish(event)
        response.success = True
        response.message = f"{event.type.name.lower()} episode {event.episode_index}"
        return response

    def _on_start(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._handle(response, lambda: self._episodes.start(self._now_ns()))

    def _on_stop(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._handle(response, lambda: self._episodes.stop(self._now_ns()))

    def _on_discard(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._handle(response, lambda: self._episodes.discard(self._now_ns()))

    def _on_mark(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        return self._handle(response, lambda: self._episodes.mark_outcome(self._now_ns(), bool(request.data)))

    def _on_instruction(self, msg: String) -> None:
        if msg.data != self._episodes.task:
            self._episodes.set_task(msg.data)
            self.get_logger().info(f"task for the next episode: {msg.data!r}")

    def _on_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name == "task":
                if parameter.type_ != Parameter.Type.STRING:
                    return SetParametersResult(successful=False, reason="task must be a string")
                self._episodes.set_task(parameter.value)
                self._announce(parameter.value)
            elif parameter.name in ("first_episode_index", "publish_instruction"):
                return SetParametersResult(successful=False, reason=f"{parameter.name} is read-only after start")
        return SetParametersResult(successful=True)

    def _announce(self, task: str) -> None:
        if self._publish_instruction and task:
            self._instruction.publish(String(data=task))


def main(args: list[str] | None = None) -> int:
    from psi0_ros.nodes.runtime import spin_nodes

    return spin_nodes(lambda: [TeleopRecorderNode()], args)


if __name__ == "__main__":
    raise SystemExit(main())
