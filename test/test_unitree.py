"""The unitree backend: Unitree's CRC32, the unitree_hg IDL types, and the wire path over real DDS.

The known answers below were computed with Unitree's own CRC library (crc_amd64.so shipped in
unitreerobotics/unitree_sdk2_python, unitree_sdk2py/utils/lib), not with psi0_ros's code. The
loopback test runs a fake robot in a child process on a DDS domain of its own (cyclonedds), and
the bridge with UnitreeBackend(dds="cyclonedds") in this process.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.dds_ports import free_domain

pytest.importorskip("cyclonedds")

from psi0_ros import g1
from psi0_ros.control import SafetyConfig
from psi0_ros.control.command import JointCommand
from psi0_ros.robot.bridge import Bridge, BridgeConfig
from psi0_ros.robot.crc import (
    LOW_CMD_FORMAT,
    LOW_STATE_FORMAT,
    crc32_mpeg2,
    crc32_words,
    low_cmd_crc,
    low_state_crc,
    pack_low_cmd,
)
from psi0_ros.robot.unitree_backend import UnitreeBackend, UnitreeConfig
from psi0_ros.robot.unitree_codec import dex3_mode, fill_hand_cmd, fill_low_cmd
from psi0_ros.robot.unitree_idl import (
    HandCmd_,
    HandState_,
    IMUState_,
    LowCmd_,
    LowState_,
    PressSensorState_,
    default_hand_cmd,
    default_hand_state,
)

HELPER = Path(__file__).parent / "helpers" / "fake_g1.py"
MODE_MACHINE = 5


def test_crc_known_answers():
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7  # the CRC-32/MPEG-2 check value
    assert crc32_words([1, 2, 3, 4]) == 2505761789
    assert crc32_words([0x12345678]) == 3750398507
    assert low_cmd_crc(LowCmd_()) == 4262932383  # an all-zero LowCmd_
    cmd = LowCmd_(mode_machine=3)
    for i, motor in enumerate(cmd.motor_cmd):
        motor.mode = 1 if i < 29 else 0
        motor.q, motor.tau = 0.1 * i - 1.0, 0.5
        motor.kp, motor.kd = (60.0, 1.5) if i < 29 else (0.0, 0.0)
    assert low_cmd_crc(cmd) == 1639513698
    state = LowState_(mode_machine=5, tick=1234)
    state.imu_state.accelerometer = [0.0, 0.0, 9.81]
    for i, motor in enumerate(state.motor_state):
        motor.q, motor.mode = 0.01 * i, 1 if i < 29 else 0
    assert low_state_crc(state) == 3562699975


def test_packed_layout_matches_the_robot_struct():
    import struct

    assert struct.calcsize(LOW_CMD_FORMAT) == 1004 and struct.calcsize(LOW_STATE_FORMAT) == 2092
    cmd = LowCmd_(mode_pr=1, mode_machine=7)
    cmd.motor_cmd[3].q, cmd.crc = 1.25, 0xDEADBEEF
    packed = pack_low_cmd(cmd)
    assert packed[:2] == bytes([1, 7])
    assert struct.unpack_from("<B3x5fI", packed, 4 + 3 * 28)[1] == 1.25  # motor 3's q
    assert struct.unpack_from("<I", packed, 1000)[0] == 0xDEADBEEF
    assert low_cmd_crc(cmd) != low_cmd_crc(LowCmd_(mode_pr=1, mode_machine=7))  # the CRC sees the motors


def test_idl_types_round_trip_through_cdr():
    cmd = fill_low_cmd(LowCmd_(), JointCommand.position(g1.table("default"), g1.table("kp"), g1.table("kd")), 9)
    back = LowCmd_.deserialize(cmd.serialize())  # float32 on the wire: compare the bytes
    assert back.serialize() == cmd.serialize() and back.crc == low_cmd_crc(back) == cmd.crc
    assert LowCmd_.__idl_typename__ == "unitree_hg.msg.dds_.LowCmd_"
    hand = fill_hand_cmd(default_hand_cmd(), JointCommand.damping(g1.table("kd")), "right")
    assert HandCmd_.deserialize(hand.serialize()).serialize() == hand.serialize()


def _random_low_state(rng) -> LowState_:
    state = LowState_(version=[1, 2], mode_pr=1, mode_machine=9, tick=rng.randrange(2**32), crc=rng.randrange(2**32))
    state.imu_state = IMUState_([0.5, 0.5, -0.5, 0.5], [1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], -5)
    for motor in state.motor_state:
        motor.mode, motor.q, motor.tau_est = rng.randrange(256), rng.uniform(-3, 3), rng.uniform(-30, 30)
        motor.temperature, motor.vol = [rng.randrange(-100, 100), 40], 24.5
        motor.sensor, motor.motorstate, motor.reserve = [1, 2], rng.randrange(2**32), [1, 2, 3, 4]
    state.wireless_remote = bytes(rng.randrange(256) for _ in range(40))
    return state


def test_fast_cdr_matches_cyclonedds_generic_encoding():
    """LowCmd_/HandCmd_/LowState_/HandState_ take a struct-based path; it must be byte-identical."""
    import random

    import cyclonedds.idl as idl

    rng = random.Random(7)
    cmd = LowCmd_(mode_pr=1, mode_machine=7, crc=rng.randrange(2**32))
    for motor in cmd.motor_cmd:
        motor.mode, motor.q, motor.dq = rng.randrange(256), rng.uniform(-3, 3), rng.uniform(-3, 3)
        motor.tau, motor.kp, motor.kd, motor.reserve = rng.uniform(-9, 9), rng.uniform(0, 300), 2.0, rng.randrange(9)
    assert cmd.serialize() == idl.IdlStruct.serialize(cmd)
    hand = default_hand_cmd()
    for i, motor in enumerate(hand.motor_cmd):
        motor.mode, motor.q, motor.kp = dex3_mode(i), rng.uniform(-1, 1), 1.5
    assert hand.serialize() == idl.IdlStruct.serialize(hand)
    state = _random_low_state(rng)
    generic = idl.IdlStruct.serialize(state)
    assert state.serialize() == generic
    assert LowState_.deserialize(generic) == idl.IdlStruct.deserialize.__func__(LowState_, generic)
    hand_state = default_hand_state()
    for motor in hand_state.motor_state:
        motor.q, motor.temperature = rng.uniform(-1, 1), [30, 31]
    hand_state.press_sensor_state = [PressSensorState_([float(i)] * 12, [2.0] * 12, i, 7) for i in range(9)]
    hand_state.imu_state.temperature, hand_state.power_v, hand_state.error = 33, 24.5, [1, 2]
    generic = idl.IdlStruct.serialize(hand_state)
    assert HandState_.deserialize(generic) == idl.IdlStruct.deserialize.__func__(HandState_, generic)
    assert cmd.serialize(use_version_2=True) == idl.IdlStruct.serialize(cmd, use_version_2=True)  # falls back


def test_codec_fields():
    q = np.linspace(-0.5, 0.5, 43)
    command = JointCommand.position(q, g1.table("kp"), g1.table("kd"))
    cmd = fill_low_cmd(LowCmd_(), command, MODE_MACHINE)
    assert cmd.mode_machine == MODE_MACHINE and cmd.mode_pr == 0
    assert [m.mode for m in cmd.motor_cmd] == [1] * 29 + [0] * 6
    assert np.allclose([m.q for m in cmd.motor_cmd[:29]], q[:29], atol=1e-6)
    assert np.allclose([m.kp for m in cmd.motor_cmd[:29]], g1.table("kp", g1.BODY_JOINTS))
    for side, order in (("left", g1.LEFT_HAND_WIRE_ORDER), ("right", g1.RIGHT_HAND_WIRE_ORDER)):
        hand = fill_hand_cmd(default_hand_cmd(), command, side)
        assert [m.mode for m in hand.motor_cmd] == [dex3_mode(i) for i in range(7)]
        assert np.allclose([m.q for m in hand.motor_cmd], [q[g1.JOINT_INDEX[n]] for n in order], atol=1e-6)
    assert dex3_mode(3) == 0x13 and dex3_mode(6, status=0, timeout=True) == 0x86


# Dex3-1 motor order as Unitree writes it for BOTH hands: xr_teleoperate
# teleop/robot_control/hand_retargeting.py (left/right_dex3_api_joint_names, "Sort by message structure").
UNITREE_DEX3_API_ORDER = ("thumb_0", "thumb_1", "thumb_2", "middle_0", "middle_1", "index_0", "index_1")


def test_dex3_wire_order_is_unitrees_one_table_for_both_hands():
    from psi0_ros.constants import ACTION_NAMES, STATE_NAMES

    assert g1.DEX3_WIRE_ORDER == UNITREE_DEX3_API_ORDER
    for side, order in (("left", g1.LEFT_HAND_WIRE_ORDER), ("right", g1.RIGHT_HAND_WIRE_ORDER)):
        assert order == tuple(f"{side}_hand_{finger}_joint" for finger in UNITREE_DEX3_API_ORDER)
    # The 36-D action and the state store each hand in motor order (Psi0's layout).
    assert ACTION_NAMES[:14] == g1.LEFT_HAND_WIRE_ORDER + g1.RIGHT_HAND_WIRE_ORDER == STATE_NAMES[:14]
    # A distinct value per joint lands on the motor of that joint's name, on both hands.
    q = np.zeros(43)
    for i, name in enumerate(g1.HAND_JOINTS):
        q[g1.JOINT_INDEX[name]] = 0.01 * (i + 1)
    command = JointCommand.position(q, g1.table("kp"), g1.table("kd"))
    for side in ("left", "right"):
        hand = fill_hand_cmd(default_hand_cmd(), command, side)
        expected = [q[g1.JOINT_INDEX[f"{side}_hand_{finger}_joint"]] for finger in UNITREE_DEX3_API_ORDER]
        assert np.allclose([m.q for m in hand.motor_cmd], expected, atol=1e-7)


def test_a_per_hand_wire_order_override_moves_only_that_hand():
    swapped = ("thumb_0", "thumb_1", "thumb_2", "index_0", "index_1", "middle_0", "middle_1")
    config = UnitreeConfig(dds="cyclonedds", right_hand_wire_order=list(swapped))
    q = np.zeros(43)
    q[g1.JOINT_INDEX["right_hand_index_0_joint"]] = 0.5
    q[g1.JOINT_INDEX["left_hand_index_0_joint"]] = -0.5
    command = JointCommand.position(q, g1.table("kp"), g1.table("kd"))
    right = fill_hand_cmd(default_hand_cmd(), command, "right", config.hand_slots("right"))
    left = fill_hand_cmd(default_hand_cmd(), command, "left", config.hand_slots("left"))
    assert [round(m.q, 6) for m in right.motor_cmd] == [0, 0, 0, 0.5, 0, 0, 0]  # index on motor 3 now
    assert [round(m.q, 6) for m in left.motor_cmd] == [0, 0, 0, 0, 0, -0.5, 0]  # left keeps Unitree's order
    with pytest.raises(ValueError, match="right hand wire order must be a permutation"):
        UnitreeConfig(right_hand_wire_order=("thumb_0",) * 7)


def test_disabled_hand_commands_follow_unitrees_stop_path():
    """unitree_sdk2 example/g1/dex3/g1_dex3_example.cpp stopMotors: status 0x01, timeout 1, all zero."""
    q = np.full(43, 0.3)
    command = JointCommand.position(q, g1.table("kp"), g1.table("kd"))
    disabled = JointCommand(q=command.q, dq=command.dq, tau=command.tau, kp=command.kp, kd=command.kd, enabled=False)
    for side in ("left", "right"):
        hand = fill_hand_cmd(default_hand_cmd(), disabled, side)
        for motor_id, motor in enumerate(hand.motor_cmd):
            assert motor.mode == (motor_id | 0x01 << 4 | 1 << 7)
            assert (motor.q, motor.dq, motor.tau, motor.kp, motor.kd) == (0.0, 0.0, 0.0, 0.0, 0.0)


def test_the_shipped_default_is_the_path_that_works_with_any_cyclonedds():
    """unitree_sdk2py's types crash a robot-side cyclonedds 0.10.x under a newer cyclonedds, so the
    default (UnitreeConfig, the node's parameter, config/robot_bridge.yaml) is the own types."""
    from psi0_ros.robot import params

    assert UnitreeConfig().dds == "cyclonedds"
    assert params.DEFAULTS["unitree.dds"] == "cyclonedds"
    assert params.load_yaml(Path(__file__).parents[1] / "config" / "robot_bridge.yaml")["unitree.dds"] == "cyclonedds"


def _cyclonedds_version() -> str:
    from importlib.metadata import version

    return version("cyclonedds")


def test_the_sdk_path_is_refused_unless_cyclonedds_is_the_robots(capsys):
    """With a cyclonedds other than 0.10.x, unitree.dds='sdk' stops at start, before unitree_sdk2py is
    even imported, with one line naming the version and what to install; `psi0 doctor --hands
    --dds sdk` prints that line and exits 1."""
    from psi0_ros.cli import main

    installed = _cyclonedds_version()
    if installed.startswith("0.10."):
        pytest.skip(f"cyclonedds {installed} here is the robot's: the sdk path is not refused")
    with pytest.raises(RuntimeError) as refused:
        UnitreeBackend(UnitreeConfig(dds="sdk")).start()
    message = str(refused.value)
    assert "\n" not in message and f"cyclonedds {installed}" in message
    assert "pip install cyclonedds==0.10.2" in message and "Set unitree.dds to 'cyclonedds'" in message
    assert main(["doctor", "--hands", "--dds", "sdk", "--domain-id", "149"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: {message}"]


class FakeRobot:
    def __init__(self, domain: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HELPER), str(domain), str(MODE_MACHINE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        self.lines: queue.Queue[dict] = queue.Queue()
        self.latest: dict = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def report(self, timeout: float = 30.0) -> dict:
        """The newest report (waits for at least one more)."""
        self.latest = self.lines.get(timeout=timeout)
        while not self.lines.empty():
            self.latest = self.lines.get_nowait()
        return self.latest

    def wait(self, condition, what: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                report = self.report(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if condition(report):
                return report
        raise AssertionError(f"timed out waiting for {what}; last report: {json.dumps(self.latest)[:2000]}")

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def test_wire_path_over_dds_loopback():
    domain = free_domain(150, 70, os.getpid())  # cyclonedds domain of its own, apart from the ROS tests' 11-90
    robot = FakeRobot(domain)
    bridge = None
    try:
        assert robot.report(timeout=60.0).get("ready")
        backend = UnitreeBackend(UnitreeConfig(dds="cyclonedds", domain_id=domain, hands=True))
        bridge = Bridge(backend, BridgeConfig(SafetyConfig(control_rate_hz=200.0, hold_after_s=1.0, damp_after_s=5.0)))
        bridge.start()
        first = robot.wait(lambda r: r["lowcmd"] > 20 and r["hand_cmds"]["left"] > 20, "LowCmd_ and HandCmd_ traffic")
        # Until a command arrives, the bridge holds the pose the robot reported (clamped to the limits).
        start_pose = [0.05 * ((i % 7) - 3) for i in range(29)]
        lower, upper = g1.table("lower", g1.BODY_JOINTS) + 0.02, g1.table("upper", g1.BODY_JOINTS) - 0.02
        assert np.allclose(first["first_q"], np.clip(start_pose, lower, upper), atol=1e-4)

        # Distinct targets for every hand joint show each hand's wire order.
        names = list(g1.HAND_JOINTS) + ["left_shoulder_yaw_joint"]
        left = {
            "thumb_0": 0.1,
            "thumb_1": 0.2,
            "thumb_2": 0.3,
            "index_0": -0.4,
            "index_1": -0.5,
            "middle_0": -0.6,
            "middle_1": -0.7,
        }
        right = {
            "thumb_0": -0.1,
            "thumb_1": -0.2,
            "thumb_2": -0.3,
            "index_0": 0.4,
            "index_1": 0.5,
            "middle_0": 0.6,
            "middle_1": 0.7,
        }
        values = [left[n.split("_hand_")[1][:-6]] for n in g1.LEFT_HAND_JOINTS]
        values += [right[n.split("_hand_")[1][:-6]] for n in g1.RIGHT_HAND_JOINTS] + [0.3]
        deadline = time.monotonic() + 60.0

        def reached(report: dict) -> bool:
            bridge.submit_upper(names, values)
            hands = report["hand"]
            return (
                hands["left"] is not None
                and np.allclose(hands["left"]["q"], [0.1, 0.2, 0.3, -0.6, -0.7, -0.4, -0.5], atol=1e-4)
                and np.allclose(hands["right"]["q"], [-0.1, -0.2, -0.3, 0.6, 0.7, 0.4, 0.5], atol=1e-4)
                and abs(report["last"]["q"][17] - 0.3) < 1e-4
            )

        report = robot.wait(reached, "the targets on the wire", timeout=max(1.0, deadline - time.monotonic()))
        assert report["crc_bad"] == 0 and report["crc_ok"] == report["lowcmd"]
        assert report["mode_machine_ok"] == report["lowcmd"] and report["modes_ok"] == report["lowcmd"]
        assert report["hand_modes_ok"]["left"] == report["hand_cmds"]["left"] > 0
        assert report["hand_modes_ok"]["right"] == report["hand_cmds"]["right"] > 0
        assert np.allclose(report["last"]["kp"], g1.table("kp", g1.BODY_JOINTS), atol=1e-4)
        assert np.allclose(report["hand"]["left"]["kp"], 1.5, atol=1e-6)

        # The robot's state comes back through rt/lowstate and rt/dex3/*/state into the bridge.
        def state_seen() -> bool:
            bridge.submit_upper(names, values)
            state = bridge.snapshot().state
            return (
                state is not None
                and abs(state.q[g1.JOINT_INDEX["left_shoulder_yaw_joint"]] - 0.3) < 0.01
                and abs(state.q[g1.JOINT_INDEX["right_hand_middle_0_joint"]] - 0.6) < 0.01
            )

        deadline = time.monotonic() + 60.0
        while not state_seen() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state_seen()
        state = bridge.snapshot().state
        assert state.imu_accel[2] == pytest.approx(9.81, abs=1e-5)
        stats = bridge.backend.stats()
        assert stats["mode_machine"] == MODE_MACHINE and stats["lowstate_crc_errors"] == 0

        # Estop: every motor gets kp = 0 and damping.
        bridge.set_estop(True)
        report = robot.wait(lambda r: max(r["last"]["kp"]) == 0.0 and min(r["last"]["kd"]) > 0.0, "damping on the wire")
        assert max(report["hand"]["right"]["kp"]) == 0.0
        assert report["crc_bad"] == 0
    finally:
        if bridge is not None:
            bridge.stop()
        robot.close()


UNITREE_TYPE_INFO = Path(__file__).parent / "data" / "unitree_hg_type_info.json"


def _type_blobs(cls: type) -> tuple[bytes, bytes]:
    """(type information, type map) as cyclonedds announces them in discovery (XCDR2 LE, no header)."""
    cls.__idl__.fill_type_data()
    return cls.__idl__._xt_bytedata


@pytest.mark.parametrize("name", ["LowCmd_", "LowState_", "HandCmd_", "HandState_"])
def test_type_information_equals_unitrees_cpp_idl(name):
    """The bytes compiled into unitree_sdk2's C++ headers (source in the JSON): with type discovery
    on, a reader and a writer match only when these agree (octet, not uint8, for the mode fields)."""
    import hashlib
    import importlib

    from psi0_ros.robot import unitree_idl

    recorded = json.loads(UNITREE_TYPE_INFO.read_text())
    assert "unitree_sdk2" in recorded["source"]
    expected = recorded["types"][f"unitree_hg::msg::dds_::{name}"]
    sys.path.insert(0, str(HELPER.parent))
    try:
        peer = importlib.import_module("unitree_hg_types")
    finally:
        sys.path.remove(str(HELPER.parent))
    for cls in (getattr(unitree_idl, name), getattr(peer, name)):  # the project's, and the test peer's
        info, type_map = _type_blobs(cls)
        assert info.hex() == expected["type_info_hex"], cls.__module__
        assert (len(type_map), hashlib.sha256(type_map).hexdigest()) == (
            expected["type_map_len"],
            expected["type_map_sha256"],
        )


def test_doctor_hands_moves_one_finger_motor_at_a_time(tmp_path):
    """`psi0 doctor --hands` against the (Unitree-typed) fake G1: each hand's motors 0-6 move alone,
    in order, named by the Dex3 table; no LowCmd_ is sent (the body is left alone)."""
    from psi0_ros.cli import main

    domain = 150 + (os.getpid() + 7) % 70
    robot = FakeRobot(domain)
    try:
        assert robot.report(timeout=60.0).get("ready")
        out = tmp_path / "hands.json"
        assert (
            main(
                [
                    "doctor",
                    "--hands",
                    "--dds",
                    "cyclonedds",
                    "--domain-id",
                    str(domain),
                    "--move-s",
                    "0.2",
                    "--json",
                    str(out),
                ]
            )
            == 0
        )
        report = robot.wait(lambda r: len(r["hand_moves"]["right"]) >= 7, "every right-hand motor moved")
        assert report["hand_moves"] == {"left": list(range(7)), "right": list(range(7))}
        assert report["lowcmd"] == 0
        moved = json.loads(out.read_text())["hands"]
        assert moved == {"left": list(g1.LEFT_HAND_WIRE_ORDER), "right": list(g1.RIGHT_HAND_WIRE_ORDER)}
    finally:
        robot.close()


def test_gains_are_psi0s_deployed_table_and_amos_sim_table():
    """Psi0 real/teleop/robot_control/robot_body.py (stiffness/damping, body motor order) and
    OpenTeleVision/AMO play_amo.py (23-DoF view: legs, waist, shoulders + elbows), typed in here."""
    psi0_kp = [165, 165, 165, 330, 160, 40] * 2 + [440] * 3 + ([50] * 4 + [30] * 3) * 2
    psi0_kd = [2, 2, 2, 4, 2, 1] * 2 + [15] * 3 + ([7.5] * 4 + [6] * 3) * 2
    assert g1.table("kp", g1.BODY_JOINTS).tolist() == psi0_kp and g1.table("kd", g1.BODY_JOINTS).tolist() == psi0_kd
    assert np.array_equal(g1.gains(g1.BACKEND_GAINS["unitree"])[0], g1.table("kp"))
    amo_kp = [150, 150, 150, 300, 80, 20] * 2 + [400] * 3 + [80, 80, 40, 60]
    amo_kd = [2, 2, 2, 4, 2, 1] * 2 + [15] * 3 + [2, 2, 1, 1]
    amo_joints = g1.BODY_JOINTS[:19] + g1.RIGHT_ARM_JOINTS[:4]
    kp, kd = g1.gains(g1.BACKEND_GAINS["sim"], amo_joints)
    assert kp.tolist() == amo_kp[:19] + amo_kp[15:19] and kd.tolist() == amo_kd[:19] + amo_kd[15:19]
    assert g1.table("kp", g1.HAND_JOINTS).tolist() == [1.5] * 14  # xr_teleoperate Dex3_1_Controller
    with pytest.raises(KeyError, match="unknown gain set"):
        g1.gains("mine")
