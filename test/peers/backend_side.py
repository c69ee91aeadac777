"""The psi0_ros side against the robot-side peer: UnitreeBackend in whatever interpreter runs this.

Run by the tests with the test interpreter (the project's cyclonedds) and with the peer's (the
robot's cyclonedds 0.10.x), so one script shows the backend working under both. Starts
UnitreeBackend(dds=DDS) on DOMAIN_ID, prints one JSON line when started (cyclonedds version, and for
the own types whether their type information equals Unitree's C++ bytes and the fast CDR equals
cyclonedds's own encoder here), one line with the first complete state it reads (body and both
hands), then sends damping commands (kp 0) at ~100 Hz until stdin closes, printing {"stale": true}
once the state goes stale (the peer left). A start that fails prints
{"error": ...} and exits 1.
Usage: backend_side.py DOMAIN_ID DDS  (DDS: a unitree.dds value, or "default" for UnitreeConfig's)
"""

import hashlib
import json
import select
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the checkout, for psi0_ros

from psi0_ros import g1  # noqa: E402
from psi0_ros.control.command import JointCommand  # noqa: E402
from psi0_ros.robot.unitree_backend import UnitreeBackend, UnitreeConfig  # noqa: E402

STATE_WAIT_S = 30.0


def own_types_check() -> dict:
    """The own types here: type information vs Unitree's C++ bytes, and fast vs generic CDR."""
    import cyclonedds.idl as idl

    from psi0_ros.robot import unitree_idl

    recorded = json.loads((ROOT / "test" / "data" / "unitree_hg_type_info.json").read_text())["types"]
    equal = {}
    for name in ("LowCmd_", "LowState_", "HandCmd_", "HandState_"):
        cls = getattr(unitree_idl, name)
        cls.__idl__.fill_type_data()
        info, type_map = cls.__idl__._xt_bytedata
        expected = recorded[f"unitree_hg::msg::dds_::{name}"]
        equal[name] = info.hex() == expected["type_info_hex"] and (
            len(type_map),
            hashlib.sha256(type_map).hexdigest(),
        ) == (expected["type_map_len"], expected["type_map_sha256"])
    cmd = unitree_idl.LowCmd_(mode_pr=1, mode_machine=7, crc=123)
    cmd.motor_cmd[3].q, cmd.motor_cmd[3].mode = 0.5, 1
    hand = unitree_idl.default_hand_cmd()
    hand.motor_cmd[2].q = -0.25
    state = unitree_idl.LowState_(mode_machine=3, tick=9)
    state.motor_state[5].q = 1.5
    hand_state = unitree_idl.default_hand_state()
    hand_state.motor_state[1].q = 0.75
    generic_state, generic_hand_state = idl.IdlStruct.serialize(state), idl.IdlStruct.serialize(hand_state)
    fast = (
        cmd.serialize() == idl.IdlStruct.serialize(cmd)
        and hand.serialize() == idl.IdlStruct.serialize(hand)
        and state.serialize() == generic_state
        and idl.IdlStruct.serialize(unitree_idl.LowState_.deserialize(generic_state)) == generic_state
        and idl.IdlStruct.serialize(unitree_idl.HandState_.deserialize(generic_hand_state)) == generic_hand_state
    )
    return {"type_info_equal": equal, "fast_cdr_equal": fast}


def main() -> int:
    domain, dds = int(sys.argv[1]), sys.argv[2]
    chosen = {} if dds == "default" else {"dds": dds}
    backend = UnitreeBackend(UnitreeConfig(domain_id=domain, hands=True, **chosen))
    try:
        backend.start()
    except RuntimeError as err:
        print(json.dumps({"error": str(err), "cyclonedds": version("cyclonedds")}), flush=True)
        return 1
    started = {"started": True, "dds": backend.config.dds, "cyclonedds": version("cyclonedds")}
    started["python"] = sys.version.split()[0]
    if backend.config.dds == "cyclonedds":
        started.update(own_types_check())
    print(json.dumps(started), flush=True)
    deadline = time.monotonic() + STATE_WAIT_S
    state = backend.read_state()
    while state is None and time.monotonic() < deadline:
        time.sleep(0.02)
        state = backend.read_state()
    if state is None:
        print(
            json.dumps({"error": f"no LowState_ and HandState_ within {STATE_WAIT_S:.0f} s", "stats": backend.stats()})
        )
        backend.close()
        return 1
    config = backend.config
    hands = {side: state.q[config.hand_slots(side)].tolist() for side in ("left", "right")}
    body = state.q[: g1.NUM_BODY_MOTORS].tolist()
    print(
        json.dumps(
            {"state": {"body_q": body, "hands": hands, "accel": list(state.imu_accel)}, "stats": backend.stats()}
        ),
        flush=True,
    )
    damping = JointCommand.damping(g1.table("kd"))
    stale = False
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], 0.01)
        if readable and not sys.stdin.readline():
            break
        backend.write_command(damping)
        if not stale and np.isnan(backend.read_state().q).any():  # the peer stopped publishing
            stale = True
            print(json.dumps({"stale": True, "stats": backend.stats()}), flush=True)
    print(json.dumps({"stats": backend.stats()}), flush=True)
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
