"""The real G1 behind the RobotBackend interface: LowCmd_/LowState_ and Dex3-1 HandCmd_/HandState_.

Topics (DESIGN §2): rt/lowcmd, rt/lowstate, rt/dex3/{left,right}/cmd and .../state. Every LowCmd_
echoes the newest LowState_.mode_machine, enables the 29 body motors (mode 1) with the safety
layer's kp/kd and carries Unitree's CRC32; each hand gets its own HandCmd_ in its wire order.

Two DDS paths, the same messages. dds="cyclonedds" (the default) uses psi0_ros.robot.unitree_idl with
the cyclonedds package, any version from 0.10 on: its types announce exactly the type information of
Unitree's C++ IDL, so the robot's DDS (cyclonedds 0.10.x) matches them without a type lookup.
dds="sdk" uses unitree_sdk2py (installed from source; missing -> a clear error), whose types say
uint8 where Unitree's IDL says octet: under cyclonedds 0.10.x that is announced as octet and matches,
but under a newer cyclonedds it is announced as TK_UINT8, the robot-side 0.10.x process asks for the
type and crashes resolving it (SIGSEGV, "ddsi_xt_type ... INVALID"). dds="sdk" is therefore refused
unless the installed cyclonedds is 0.10.x (dds_path_problem()).

Nothing is sent before the first LowState_ (mode_machine unknown), nor before each enabled hand
has reported. A LowState_ older than state_timeout_s is reported with NaN joint positions, which
makes the safety layer hold the last commanded pose (and damp if it has none).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from psi0_ros import g1
from psi0_ros.control.command import JointCommand
from psi0_ros.robot.backend import RobotBackend, RobotState
from psi0_ros.robot.crc import low_state_crc
from psi0_ros.robot.unitree_codec import (
    HAND_SIDES,
    body_state,
    fill_hand_cmd,
    fill_low_cmd,
    hand_slots,
    hand_state,
    imu_state,
)

DDS_PATHS = ("cyclonedds", "sdk")
# The robot side's DDS: unitree_sdk2 bundles cyclonedds 0.10.2 and unitree_sdk2_python pins it.
ROBOT_CYCLONEDDS = "0.10"
TOPIC_LOWCMD = "rt/lowcmd"
TOPIC_LOWSTATE = "rt/lowstate"
TOPIC_HAND_CMD = {side: f"rt/dex3/{side}/cmd" for side in HAND_SIDES}
TOPIC_HAND_STATE = {side: f"rt/dex3/{side}/state" for side in HAND_SIDES}


@dataclass(frozen=True)
class UnitreeConfig:
    dds: str = "cyclonedds"  # see the module docstring; "sdk" needs cyclonedds 0.10.x
    network_interface: str = ""  # e.g. "eth0" on the robot's 192.168.123.x network; "" = DDS default
    domain_id: int = 0
    hands: bool = True
    state_timeout_s: float = 0.5
    # Motor order 0-6 of each Dex3-1 hand (finger names of g1.DEX3_WIRE_ORDER). Unitree's code uses one
    # order for both hands; override one hand only if `psi0 doctor --hands` shows its fingers swapped.
    left_hand_wire_order: tuple[str, ...] = g1.DEX3_WIRE_ORDER
    right_hand_wire_order: tuple[str, ...] = g1.DEX3_WIRE_ORDER

    def __post_init__(self) -> None:
        if self.dds not in DDS_PATHS:
            raise ValueError(f"unknown unitree dds path {self.dds!r}; expected one of {DDS_PATHS}")
        if not 0 <= self.domain_id <= 232:
            raise ValueError(f"DDS domain_id must be in [0, 232], got {self.domain_id}")
        if not self.state_timeout_s > 0:
            raise ValueError(f"state_timeout_s must be > 0, got {self.state_timeout_s}")
        for side in HAND_SIDES:
            name = f"{side}_hand_wire_order"
            object.__setattr__(self, name, tuple(getattr(self, name)))
            g1.dex3_wire_order(side, getattr(self, name))  # ValueError naming the hand if not a permutation

    def hand_slots(self, side: str) -> np.ndarray:
        """Slot in ALL_JOINTS of each of this hand's motors 0-6."""
        return hand_slots(side, getattr(self, f"{side}_hand_wire_order"))


def installed_cyclonedds() -> str | None:
    """Version of the installed cyclonedds package, or None."""
    try:
        return metadata.version("cyclonedds")
    except metadata.PackageNotFoundError:
        return None


def dds_path_problem(dds: str) -> str | None:
    """Why `dds` cannot talk to the robot from this environment (one line saying what to install), or None."""
    installed = installed_cyclonedds()
    if installed is None:
        return "the unitree backend needs the cyclonedds package: pip install 'psi0_ros[unitree]' (or cyclonedds)"
    if dds == "sdk" and not installed.startswith(ROBOT_CYCLONEDDS + "."):
        return (
            f"unitree.dds='sdk' is refused with cyclonedds {installed}: unitree_sdk2py's types then crash the "
            f"robot's cyclonedds {ROBOT_CYCLONEDDS}.x in type lookup. Set unitree.dds to 'cyclonedds' (psi0_ros's "
            f"own types, any cyclonedds), or use Python <= 3.10 with `pip install cyclonedds==0.10.2` and "
            "unitree_sdk2py from source (github.com/unitreerobotics/unitree_sdk2_python)"
        )
    return None


class _Transport:
    """Publishers/subscribers for the five topics, and constructors for the messages."""

    low_cmd: Callable[[], Any]
    hand_cmd: Callable[[], Any]

    def publish(self, topic: str, msg: Any) -> None:
        raise NotImplementedError

    def subscribe(self, topic: str, kind: str, handler: Callable[[Any], None]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _SdkTransport(_Transport):
    def __init__(self, config: UnitreeConfig) -> None:
        problem = dds_path_problem("sdk")
        if problem:
            raise RuntimeError(problem)
        try:
            from unitree_sdk2py.core.channel import ChannelFactoryInitialize, ChannelPublisher, ChannelSubscriber
            from unitree_sdk2py.idl.default import unitree_hg_msg_dds__HandCmd_, unitree_hg_msg_dds__LowCmd_
            from unitree_sdk2py.idl.unitree_hg.msg.dds_ import HandCmd_, HandState_, LowCmd_, LowState_
        except ImportError as err:
            raise RuntimeError(
                "the unitree backend with unitree.dds='sdk' needs unitree_sdk2py, which is not installed "
                f"({err}). Install it from source (github.com/unitreerobotics/unitree_sdk2_python), "
                "or set unitree.dds to 'cyclonedds' to use psi0_ros's own unitree_hg types."
            ) from err
        ChannelFactoryInitialize(config.domain_id, config.network_interface or None)
        self._publisher_cls, self._subscriber_cls = ChannelPublisher, ChannelSubscriber
        self._types = {"lowcmd": LowCmd_, "lowstate": LowState_, "handcmd": HandCmd_, "handstate": HandState_}
        self.low_cmd = unitree_hg_msg_dds__LowCmd_

        def hand_cmd() -> Any:
            msg = unitree_hg_msg_dds__HandCmd_()
            if len(msg.motor_cmd) < 7:
                from unitree_sdk2py.idl.default import unitree_hg_msg_dds__MotorCmd_

                msg.motor_cmd = [unitree_hg_msg_dds__MotorCmd_() for _ in range(7)]
            return msg

        self.hand_cmd = hand_cmd
        self._publishers: dict[str, Any] = {}
        self._subscribers: list[Any] = []

    def _publisher(self, topic: str) -> Any:
        if topic not in self._publishers:
            kind = "lowcmd" if topic == TOPIC_LOWCMD else "handcmd"
            publisher = self._publisher_cls(topic, self._types[kind])
            publisher.Init()
            self._publishers[topic] = publisher
        return self._publishers[topic]

    def publish(self, topic: str, msg: Any) -> None:
        self._publisher(topic).Write(msg)

    def subscribe(self, topic: str, kind: str, handler: Callable[[Any], None]) -> None:
        subscriber = self._subscriber_cls(topic, self._types[kind])
        subscriber.Init(handler, 10)
        self._subscribers.append(subscriber)
        if kind == "lowstate":
            self._publisher(TOPIC_LOWCMD)  # create the writers early so discovery is done by the first command
            for topic_cmd in TOPIC_HAND_CMD.values():
                self._publisher(topic_cmd)


class _CycloneTransport(_Transport):
    def __init__(self, config: UnitreeConfig) -> None:
        problem = dds_path_problem("cyclonedds")
        if problem:
            raise RuntimeError(problem)
        from cyclonedds.core import Listener
        from cyclonedds.domain import Domain, DomainParticipant
        from cyclonedds.internal import InvalidSample
        from cyclonedds.pub import DataWriter
        from cyclonedds.sub import DataReader
        from cyclonedds.topic import Topic

        from psi0_ros.robot import unitree_idl

        self._domain = None
        if config.network_interface:
            xml = (
                "<CycloneDDS><Domain><General><Interfaces>"
                f'<NetworkInterface name="{config.network_interface}" priority="default" multicast="default"/>'
                "</Interfaces></General></Domain></CycloneDDS>"
            )
            self._domain = Domain(config.domain_id, xml)
        self._participant = DomainParticipant(config.domain_id)
        self._types = {
            "lowcmd": unitree_idl.LowCmd_,
            "lowstate": unitree_idl.LowState_,
            "handcmd": unitree_idl.HandCmd_,
            "handstate": unitree_idl.HandState_,
        }
        self._invalid_sample = InvalidSample
        self._topic_cls, self._writer_cls, self._reader_cls, self._listener_cls = (
            Topic,
            DataWriter,
            DataReader,
            Listener,
        )
        self.low_cmd = unitree_idl.default_low_cmd
        self.hand_cmd = unitree_idl.default_hand_cmd
        self._writers: dict[str, Any] = {}
        self._readers: list[Any] = []
        self._closed = False
        self._writers[TOPIC_LOWCMD] = self._writer(TOPIC_LOWCMD, "lowcmd")
        for topic in TOPIC_HAND_CMD.values():
            self._writers[topic] = self._writer(topic, "handcmd")

    def _writer(self, topic: str, kind: str) -> Any:
        return self._writer_cls(self._participant, self._topic_cls(self._participant, topic, self._types[kind]))

    def publish(self, topic: str, msg: Any) -> None:
        self._writers[topic].write(msg)

    def subscribe(self, topic: str, kind: str, handler: Callable[[Any], None]) -> None:
        def on_data_available(reader: Any) -> None:
            if reader is None or self._closed:  # a callback racing close()
                return
            for sample in reader.take(N=16):
                if not isinstance(sample, self._invalid_sample):  # no data: the writer left or disposed
                    handler(sample)

        listener = self._listener_cls(on_data_available=on_data_available)
        dds_topic = self._topic_cls(self._participant, topic, self._types[kind])
        self._readers.append(self._reader_cls(self._participant, dds_topic, listener=listener))

    def close(self) -> None:
        self._closed = True
        self._readers.clear()
        self._writers.clear()


class UnitreeBackend(RobotBackend):
    name = "unitree"

    def __init__(self, config: UnitreeConfig | None = None) -> None:
        self.config = config or UnitreeConfig()
        self._transport: _Transport | None = None
        self._lock = threading.Lock()
        self._low_state: Any = None
        self._low_state_time = 0.0
        self._hands: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._low_cmd: Any = None
        self._hand_cmds: dict[str, Any] = {}
        self._hand_slots = {side: self.config.hand_slots(side) for side in HAND_SIDES}
        self._counts = {"lowcmd_sent": 0, "lowstate_received": 0, "lowstate_crc_errors": 0, "lowstate_stale": 0}
        self._counts.update({f"hand_{side}_state_received": 0 for side in HAND_SIDES})

    def start(self) -> None:
        if self._transport is not None:
            return
        transport: _Transport = (_SdkTransport if self.config.dds == "sdk" else _CycloneTransport)(self.config)
        self._low_cmd = transport.low_cmd()
        self._hand_cmds = {side: transport.hand_cmd() for side in HAND_SIDES}
        transport.subscribe(TOPIC_LOWSTATE, "lowstate", self._on_low_state)
        if self.config.hands:
            for side in HAND_SIDES:
                transport.subscribe(
                    TOPIC_HAND_STATE[side], "handstate", lambda msg, side=side: self._on_hand(side, msg)
                )
        self._transport = transport

    # --- DDS callbacks (DDS threads) ------------------------------------------------------------
    def _on_low_state(self, msg: Any) -> None:
        crc_ok = low_state_crc(msg) == msg.crc  # counted, not enforced: see docs/safety.md
        with self._lock:
            self._low_state = msg
            self._low_state_time = time.monotonic()
            self._counts["lowstate_received"] += 1
            if not crc_ok:
                self._counts["lowstate_crc_errors"] += 1

    def _on_hand(self, side: str, msg: Any) -> None:
        try:
            state = hand_state(msg, side, self._hand_slots[side])
        except ValueError:
            return
        with self._lock:
            self._hands[side] = state
            self._counts[f"hand_{side}_state_received"] += 1

    # --- RobotBackend ---------------------------------------------------------------------------
    def read_state(self) -> RobotState | None:
        with self._lock:
            low_state, received = self._low_state, self._low_state_time
            hands = dict(self._hands)
        if low_state is None or (self.config.hands and len(hands) < len(HAND_SIDES)):
            return None  # nothing is commanded before the robot (and each enabled hand) has reported
        n = len(g1.ALL_JOINTS)
        q, dq, tau = np.zeros(n), np.zeros(n), np.zeros(n)
        q[: g1.NUM_BODY_MOTORS], dq[: g1.NUM_BODY_MOTORS], tau[: g1.NUM_BODY_MOTORS] = body_state(low_state)
        if self.config.hands:
            for slots, hq, hdq, htau in hands.values():
                q[slots], dq[slots], tau[slots] = hq, hdq, htau
        else:  # hands not driven: report their default (open) pose, see docs/safety.md
            hand_slots = [g1.JOINT_INDEX[name] for name in g1.HAND_JOINTS]
            q[hand_slots] = g1.table("default", g1.HAND_JOINTS)
        if time.monotonic() - received > self.config.state_timeout_s:
            self._counts["lowstate_stale"] += 1
            q[:] = np.nan  # the safety layer holds the last command (or damps) on a stale state
        quaternion, gyro, accel = imu_state(low_state)
        return RobotState(received, q, dq, tau, quaternion, gyro, accel)

    def write_command(self, command: JointCommand) -> None:
        if self._transport is None:
            raise RuntimeError("UnitreeBackend.write_command before start()")
        with self._lock:
            low_state = self._low_state
        if low_state is None:
            return
        fill_low_cmd(self._low_cmd, command, low_state.mode_machine)
        self._transport.publish(TOPIC_LOWCMD, self._low_cmd)
        self._counts["lowcmd_sent"] += 1
        if self.config.hands:
            for side in HAND_SIDES:
                self._transport.publish(
                    TOPIC_HAND_CMD[side], fill_hand_cmd(self._hand_cmds[side], command, side, self._hand_slots[side])
                )

    def write_hands(self, command: JointCommand) -> None:
        """Send only the two HandCmd_ of `command` (no LowCmd_: the body is left as it is), e.g. for
        `psi0 doctor --hands`. Nothing is sent before both hands have reported."""
        if self._transport is None:
            raise RuntimeError("UnitreeBackend.write_hands before start()")
        if not self.config.hands:
            raise RuntimeError("UnitreeBackend.write_hands with unitree.hands disabled")
        with self._lock:
            if len(self._hands) < len(HAND_SIDES):
                return
        for side in HAND_SIDES:
            self._transport.publish(
                TOPIC_HAND_CMD[side], fill_hand_cmd(self._hand_cmds[side], command, side, self._hand_slots[side])
            )

    def hands_ready(self) -> bool:
        """Both hands have reported a HandState_."""
        with self._lock:
            return len(self._hands) == len(HAND_SIDES)

    def stats(self) -> dict[str, float]:
        with self._lock:
            stats = {key: float(value) for key, value in self._counts.items()}
            if self._low_state is not None:
                stats["mode_machine"] = float(self._low_state.mode_machine)
                stats["lowstate_age_s"] = time.monotonic() - self._low_state_time
        return stats

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
