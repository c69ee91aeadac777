"""Child process: a fake G1 on DDS (cyclonedds) for the wire test, Unitree-typed.

Its unitree_hg types are declared as Unitree's C++ IDL declares them (test/helpers/unitree_hg_types.py,
octet fields), not imported from psi0_ros: the project's types must match them under type discovery.

Subscribes rt/lowcmd and rt/dex3/{left,right}/cmd, checks every LowCmd_ (CRC, mode_machine echo,
motor modes) and HandCmd_ (Dex3 mode bytes), moves its "motors" a fraction of the way to each
commanded q, and publishes rt/lowstate (with a correct CRC) and rt/dex3/*/state at ~200 Hz.
Every 0.2 s it prints one JSON line of what it saw; it exits when stdin closes.
Usage: fake_g1.py DOMAIN_ID MODE_MACHINE
"""

from __future__ import annotations

import json
import select
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for psi0_ros
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the peer's own types

from cyclonedds.core import Listener
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from unitree_hg_types import HandCmd_, HandState_, LowCmd_, LowState_, MotorState_

from psi0_ros.robot.crc import low_cmd_crc, low_state_crc

BODY = 29


def main() -> None:
    domain, mode_machine = int(sys.argv[1]), int(sys.argv[2])
    participant = DomainParticipant(domain)
    lock = threading.Lock()
    body_q = [0.05 * ((i % 7) - 3) for i in range(BODY)]  # a recognisable start pose, not the default
    hand_q = {"left": [0.0] * 7, "right": [0.0] * 7}
    seen = {
        "lowcmd": 0,
        "crc_ok": 0,
        "crc_bad": 0,
        "mode_machine_ok": 0,
        "modes_ok": 0,
        "first_q": None,
        "last": None,
        "hand": {"left": None, "right": None},
        "hand_modes_ok": {"left": 0, "right": 0},
        "hand_cmds": {"left": 0, "right": 0},
        # Motors seen moving alone (|q| > 0.05 rad on exactly one motor), in order; -1: several at once.
        "hand_moves": {"left": [], "right": []},
    }

    def on_lowcmd(reader) -> None:
        for cmd in reader.take(N=16):
            with lock:
                seen["lowcmd"] += 1
                seen["crc_ok" if low_cmd_crc(cmd) == cmd.crc else "crc_bad"] += 1
                seen["mode_machine_ok"] += int(cmd.mode_machine == mode_machine)
                motors = cmd.motor_cmd
                seen["modes_ok"] += int(
                    all(m.mode == 1 for m in motors[:BODY]) and all(m.mode == 0 for m in motors[BODY:])
                )
                q = [m.q for m in motors[:BODY]]
                if seen["first_q"] is None:
                    seen["first_q"] = q
                seen["last"] = {"q": q, "kp": [m.kp for m in motors[:BODY]], "kd": [m.kd for m in motors[:BODY]]}
                for i, m in enumerate(motors[:BODY]):
                    if m.kp > 0:
                        body_q[i] += 0.2 * (m.q - body_q[i])

    def on_hand(side: str):
        def handler(reader) -> None:
            for cmd in reader.take(N=16):
                with lock:
                    seen["hand_cmds"][side] += 1
                    ok = len(cmd.motor_cmd) == 7 and all(m.mode == (i | (1 << 4)) for i, m in enumerate(cmd.motor_cmd))
                    seen["hand_modes_ok"][side] += int(ok)
                    seen["hand"][side] = {"q": [m.q for m in cmd.motor_cmd], "kp": [m.kp for m in cmd.motor_cmd]}
                    active = [i for i, m in enumerate(cmd.motor_cmd) if abs(m.q) > 0.05]
                    moves = seen["hand_moves"][side]
                    if active and (-1 if len(active) > 1 else active[0]) not in moves[-1:]:
                        moves.append(-1 if len(active) > 1 else active[0])
                    for i, m in enumerate(cmd.motor_cmd):
                        if m.kp > 0:
                            hand_q[side][i] += 0.2 * (m.q - hand_q[side][i])

        return handler

    readers = [
        DataReader(
            participant, Topic(participant, "rt/lowcmd", LowCmd_), listener=Listener(on_data_available=on_lowcmd)
        )
    ]
    for side in ("left", "right"):
        topic = Topic(participant, f"rt/dex3/{side}/cmd", HandCmd_)
        readers.append(DataReader(participant, topic, listener=Listener(on_data_available=on_hand(side))))
    state_writer = DataWriter(participant, Topic(participant, "rt/lowstate", LowState_))
    hand_writers = {
        side: DataWriter(participant, Topic(participant, f"rt/dex3/{side}/state", HandState_))
        for side in ("left", "right")
    }
    print(json.dumps({"ready": True}), flush=True)
    tick, last_report = 0, 0.0
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], 0.005)
        if readable and not sys.stdin.readline():
            break
        tick += 1
        with lock:
            state = LowState_(mode_machine=mode_machine, tick=tick)
            state.imu_state.accelerometer = [0.0, 0.0, 9.81]
            for i in range(BODY):
                state.motor_state[i] = MotorState_(mode=1, q=body_q[i])
            hands = {}
            for side in ("left", "right"):
                msg = HandState_(motor_state=[MotorState_() for _ in range(7)])
                for i in range(7):
                    msg.motor_state[i].q = hand_q[side][i]
                hands[side] = msg
            report = json.dumps(seen) if time.monotonic() - last_report > 0.2 else None
        state.crc = low_state_crc(state)
        state_writer.write(state)
        for side, msg in hands.items():
            hand_writers[side].write(msg)
        if report is not None:
            last_report = time.monotonic()
            print(report, flush=True)
    del readers


if __name__ == "__main__":
    main()
