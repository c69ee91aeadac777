"""A robot-side peer: a G1 with two Dex3-1 hands on the robot's DDS (cyclonedds 0.10.x), Unitree-typed.

Runs in another interpreter than the tests (the Python 3.10 environment scripts/setup.sh prepares
with cyclonedds 0.10.2, what unitree_sdk2_python pins and unitree_sdk2 bundles). Its types are
unitree_sdk2py's own where that package is installed, else test/peers/unitree_sdk2py_hg.py (declared
as unitree_sdk2py declares them); psi0_ros's types are never used here.

Publishes rt/lowstate (correct CRC, a recognisable pose) and rt/dex3/{left,right}/state at ~100 Hz,
subscribes rt/lowcmd and rt/dex3/{left,right}/cmd and counts what it gets (CRC, mode_machine echo).
Prints one JSON line when ready, then one every 0.2 s; exits 0 when stdin closes.
Usage: g1_peer.py DOMAIN_ID MODE_MACHINE
"""

import json
import select
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for psi0_ros.robot.crc
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cyclonedds.core import Listener
from cyclonedds.domain import DomainParticipant
from cyclonedds.internal import InvalidSample
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic

from psi0_ros.robot.crc import low_cmd_crc, low_state_crc

try:
    from unitree_sdk2py.idl.default import unitree_hg_msg_dds__HandState_ as zeroed_hand_state
    from unitree_sdk2py.idl.default import unitree_hg_msg_dds__LowState_ as zeroed_low_state
    from unitree_sdk2py.idl.unitree_hg.msg.dds_ import HandCmd_, HandState_, LowCmd_, LowState_

    TYPES = "unitree_sdk2py"
except ImportError:
    from unitree_sdk2py_hg import HandCmd_, HandState_, LowCmd_, LowState_, zeroed_hand_state, zeroed_low_state

    TYPES = "test/peers/unitree_sdk2py_hg.py"

BODY = 29
SIDES = ("left", "right")
# What the peer reports: body motor i at BODY_Q(i), hand motor i at HAND_Q[side](i).
BODY_Q = [0.01 * (i + 1) for i in range(BODY)]
HAND_Q = {"left": [0.1 * (i + 1) for i in range(7)], "right": [-0.1 * (i + 1) for i in range(7)]}


def main() -> None:
    domain, mode_machine = int(sys.argv[1]), int(sys.argv[2])
    participant = DomainParticipant(domain)
    lock = threading.Lock()
    seen = {"lowcmd": 0, "crc_ok": 0, "mode_machine_ok": 0, "hand_cmds": {side: 0 for side in SIDES}}

    def on_lowcmd(reader) -> None:
        for cmd in reader.take(N=16):
            if isinstance(cmd, InvalidSample):  # a writer went away: no data
                continue
            with lock:
                seen["lowcmd"] += 1
                seen["crc_ok"] += int(low_cmd_crc(cmd) == cmd.crc)
                seen["mode_machine_ok"] += int(cmd.mode_machine == mode_machine)

    def on_hand_cmd(side: str):
        def handler(reader) -> None:
            for cmd in reader.take(N=16):
                if isinstance(cmd, InvalidSample):
                    continue
                with lock:
                    seen["hand_cmds"][side] += int(len(cmd.motor_cmd) == 7)

        return handler

    readers = [
        DataReader(
            participant, Topic(participant, "rt/lowcmd", LowCmd_), listener=Listener(on_data_available=on_lowcmd)
        )
    ]
    for side in SIDES:
        topic = Topic(participant, f"rt/dex3/{side}/cmd", HandCmd_)
        readers.append(DataReader(participant, topic, listener=Listener(on_data_available=on_hand_cmd(side))))
    state_writer = DataWriter(participant, Topic(participant, "rt/lowstate", LowState_))
    hand_writers = {
        side: DataWriter(participant, Topic(participant, f"rt/dex3/{side}/state", HandState_)) for side in SIDES
    }
    print(json.dumps({"ready": True, "cyclonedds": version("cyclonedds"), "types": TYPES}), flush=True)

    state = zeroed_low_state()
    state.mode_machine = mode_machine
    state.imu_state.quaternion = [1.0, 0.0, 0.0, 0.0]
    state.imu_state.accelerometer = [0.0, 0.0, 9.81]
    for i in range(BODY):
        state.motor_state[i].mode, state.motor_state[i].q = 1, BODY_Q[i]
    hands = {}
    for side in SIDES:
        hands[side] = zeroed_hand_state()
        for i, q in enumerate(HAND_Q[side]):
            hands[side].motor_state[i].q = q
    tick, last_report = 0, 0.0
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], 0.01)
        if readable and not sys.stdin.readline():
            break
        tick += 1
        state.tick = tick
        state.crc = low_state_crc(state)
        state_writer.write(state)
        for side in SIDES:
            hand_writers[side].write(hands[side])
        if time.monotonic() - last_report > 0.2:
            last_report = time.monotonic()
            with lock:
                print(json.dumps(seen), flush=True)
    del readers


if __name__ == "__main__":
    main()
