"""robot_bridge_node's parameters: one table of names, defaults and descriptions (ROS-free).

The node declares every entry (with its description) and config/robot_bridge.yaml /
config/sim.yaml set them as ros__parameters; `psi0 sim` reads the same YAML without ROS.
Nested YAML keys become dotted names ("safety.max_step"). build_bridge() turns a complete
parameter dict into the typed configs, the backend and the Bridge, failing with the offending
name and value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from psi0_ros import g1
from psi0_ros.control.lower_body import LowerBodyCommandLimits
from psi0_ros.control.safety import SafetyConfig
from psi0_ros.robot.backend import RobotBackend
from psi0_ros.robot.bridge import Bridge, BridgeConfig

NODE_NAME = "robot_bridge_node"


@dataclass(frozen=True)
class Param:
    name: str
    default: Any  # its type is the parameter's type
    description: str


def _safety_params() -> list[Param]:
    defaults = SafetyConfig()
    described = {
        "position_margin": "rad kept clear of each URDF position limit",
        "velocity_scale": "fraction of each URDF joint velocity limit a target may move at",
        "max_velocity": "rad/s cap on every joint target's velocity",
        "max_step": "rad cap on a joint target's change per control tick",
        "max_acceleration": "rad/s^2 bound on every joint's commanded acceleration and deceleration",
        "estop_wait_s": "s to wait at start, counted from the first command, for an estop publisher to be "
        "matched; a matched one is waited for until its latched value arrives (.inf: wait for an explicit "
        "estop message)",
        "hold_after_s": "no fresh command for this long -> stop at the last commanded setpoint and hold it",
        "damp_after_s": "no fresh command for this long -> damp (kp = 0)",
        "auto_resume": "leave a watchdog damp by itself when commands return (false on a robot: estop true->false resets)",
        "kp_scale": "multiplies the kp table of psi0_ros/g1.py",
        "kd_scale": "multiplies the kd table of psi0_ros/g1.py",
        "damping_kd_scale": "kd while damping = kd table * this",
    }
    params = [Param(f"safety.{name}", getattr(defaults, name), text) for name, text in described.items()]
    params.append(
        Param("safety.gains", "", f"gain set of psi0_ros/g1.py; '' = the backend's default {g1.BACKEND_GAINS}")
    )
    lower = LowerBodyCommandLimits()
    for name in LowerBodyCommandLimits.__dataclass_fields__:
        unit = "m" if "height" in name else ("m/s" if name in ("max_vx", "max_vy") else "rad or rad/s")
        params.append(Param(f"safety.lower_body.{name}", getattr(lower, name), f"lower-body command bound ({unit})"))
    return params


PARAMETERS: tuple[Param, ...] = (
    Param("backend", "sim", "robot backend: 'sim' or 'unitree' (BACKEND_FACTORIES)"),
    Param("control_rate_hz", 500.0, "command loop rate (Hz); DESIGN: 250-500"),
    Param("state_rate_hz", 100.0, "/joint_states and /imu/data publish rate (Hz)"),
    Param("diagnostics_rate_hz", 2.0, "/diagnostics publish rate (Hz)"),
    Param(
        "publish_clock",
        False,
        "sim only: publish the simulated time on /clock (run the other nodes with use_sim_time:=true) and "
        "run the safety watchdog on it, so a sim slower than real time slows the whole graph with it",
    ),
    Param(
        "clock_rate_hz",
        125.0,
        "publish_clock: at most this many /clock messages per second of simulated time (one every k-th loop tick)",
    ),
    Param(
        "lower_body_input",
        "targets",
        "'targets': follow /psi0/lower_body_targets; 'command': the backend follows "
        "/psi0/lower_body_command itself (sim kinematic mode only)",
    ),
    *_safety_params(),
    Param("sim.scene", "tabletop", "sim: 'tabletop' (table, can, cube, basket) or 'empty'"),
    Param("sim.seed", 0, "sim: seed of the randomised object layout"),
    Param(
        "sim.layout", "full", "sim: ranges the object layout is drawn from: 'full' (anywhere) or 'lab' (docs/sim.md)"
    ),
    Param("sim.base_mode", "kinematic", "sim: 'kinematic' (the base follows the lower-body command) or 'physics'"),
    Param("sim.timestep", 0.002, "sim: physics step (s)"),
    Param(
        "sim.harness",
        True,
        "sim physics mode: hold the pelvis up and upright with a virtual gantry (false "
        "when lower_body_node balances the robot)",
    ),
    Param(
        "sim.speed",
        1.0,
        "sim with publish_clock: run the command loop at this multiple of real time (2.0: two simulated "
        "seconds a wall second, where the CPU keeps up); every node follows /clock, so only the wall time changes",
    ),
    Param("sim.camera_rate_hz", 30.0, "sim: head camera frames per second of sim time"),
    Param("sim.camera_mode", "thread", "sim: 'thread' (render beside the loop), 'sync' or 'off'"),
    Param("sim.camera_width", 640, "sim: head camera image width (px, at most 640; the policy consumes 320)"),
    Param("sim.camera_height", 480, "sim: head camera image height (px, at most 480; the policy consumes 240)"),
    Param("sim.grasp_assist", False, "sim: weld an object to a hand that closes on it (a labelled aid, docs/sim.md)"),
    Param(
        "sim.heading", "target_yaw", "sim kinematic: heading follows 'target_yaw' (+ vyaw feed-forward) or 'vyaw' only"
    ),
    Param(
        "unitree.dds",
        "cyclonedds",
        "unitree: 'cyclonedds' (psi0_ros's own unitree_hg types, any cyclonedds) or 'sdk' (unitree_sdk2py; "
        "refused unless cyclonedds is 0.10.x, the robot's)",
    ),
    Param("unitree.network_interface", "", "unitree: DDS network interface to the robot, e.g. 'eth0' ('' = default)"),
    Param("unitree.domain_id", 0, "unitree: DDS domain of the robot (Unitree uses 0)"),
    Param("unitree.hands", True, "unitree: command the two Dex3-1 hands on rt/dex3/{left,right}/cmd"),
    Param("unitree.state_timeout_s", 0.5, "unitree: LowState_ older than this is reported as lost"),
    Param(
        "unitree.left_hand_wire_order",
        list(g1.DEX3_WIRE_ORDER),
        "unitree: left Dex3-1 motor order 0-6 (finger names); change only if `psi0 doctor --hands` shows a swap",
    ),
    Param(
        "unitree.right_hand_wire_order",
        list(g1.DEX3_WIRE_ORDER),
        "unitree: right Dex3-1 motor order 0-6 (finger names); change only if `psi0 doctor --hands` shows a swap",
    ),
)
DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMETERS}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"safety": {"max_step": 0.02}} -> {"safety.max_step": 0.02}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def load_yaml(path: Path | str, node_name: str = NODE_NAME) -> dict[str, Any]:
    """The node's ros__parameters from a ROS 2 parameter file, flattened; unknown names are an error."""
    path = Path(path)
    document = yaml.safe_load(path.read_text()) or {}
    found = node_parameters(document, node_name)
    if found is None:
        raise ValueError(f"{path}: no '/**: ros__parameters:' (or '/**/{node_name}:') section")
    params = flatten(found)
    check_names(params, str(path))
    return params


def node_parameters(document: Mapping[str, Any], node_name: str) -> dict[str, Any] | None:
    """The ros__parameters a ROS 2 parameter file gives node_name in any namespace, or None.

    Sections apply in the order rcl applies them: `/**` (every node), then `/**/<node>` (the node in
    any namespace: what config/*.yaml use, so a pushed namespace keeps them), then `<node>` or
    `/<node>` (the root namespace only). Later sections override earlier ones, key by key.
    """
    merged: dict[str, Any] | None = None
    for key in ("/**", f"/**/{node_name}", node_name, f"/{node_name}"):
        section = document.get(key)
        if isinstance(section, Mapping) and isinstance(section.get("ros__parameters"), Mapping):
            merged = _merge(merged or {}, section["ros__parameters"])
    return merged


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            base[key] = _merge(dict(base[key]), value)
        else:
            base[key] = value
    return base


def check_names(params: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"{where}: unknown robot_bridge_node parameters {unknown}")


def complete(params: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with params; values coerced to each parameter's type (bad values named)."""
    check_names(params, "parameters")
    merged = dict(DEFAULTS)
    for name, value in params.items():
        kind = type(DEFAULTS[name])
        if kind is str and isinstance(value, bool):  # YAML 1.1 (ROS params) reads off/on/yes/no as booleans
            raise ValueError(
                f"parameter {name}={value!r} is not a str: quote it (-p \"{name}:='off'\", or "
                "ParameterValue(..., value_type=str) in a launch file)"
            )
        try:
            if kind is bool and not isinstance(value, bool):
                raise TypeError
            merged[name] = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"parameter {name}={value!r} is not a {kind.__name__}") from None
    return merged


@dataclass(frozen=True)
class BridgeSetup:
    params: dict[str, Any]
    bridge_config: BridgeConfig

    @property
    def backend_name(self) -> str:
        return str(self.params["backend"])


def bridge_setup(params: Mapping[str, Any]) -> BridgeSetup:
    """Typed configuration from parameters: every value checked before anything starts."""
    p = complete(params)
    check_backend_name(p["backend"])
    for name in ("state_rate_hz", "diagnostics_rate_hz", "clock_rate_hz"):
        if not p[name] > 0.0:
            raise ValueError(f"parameter {name}={p[name]} must be > 0")
    safety = {k.split(".", 1)[1]: v for k, v in p.items() if k.startswith("safety.")}
    safety["control_rate_hz"] = p["control_rate_hz"]
    safety["gains"] = safety["gains"] or g1.BACKEND_GAINS.get(p["backend"], "psi0_real")
    speed = p["sim.speed"]
    if speed != 1.0:
        if not (math.isfinite(speed) and speed > 0.0):
            raise ValueError(f"parameter sim.speed={speed} must be a finite number > 0")
        if p["backend"] != "sim" or not p["publish_clock"]:
            raise ValueError(
                f"parameter sim.speed={speed} needs backend 'sim' with publish_clock true: nodes on the wall "
                "clock would see the robot move faster than they command it"
            )
    config = BridgeConfig(SafetyConfig.from_mapping(safety), lower_body_input=p["lower_body_input"], pace=float(speed))
    return BridgeSetup(p, config)


def _make_sim_backend(p: Mapping[str, Any]) -> RobotBackend:
    from psi0_ros.robot.sim_backend import SimBackend, SimBackendConfig
    from psi0_ros.sim.kinematic import KinematicConfig
    from psi0_ros.sim.simulator import SimConfig

    sim = SimConfig(
        base_mode=p["sim.base_mode"],
        scene=p["sim.scene"],
        seed=p["sim.seed"],
        layout=p["sim.layout"],
        timestep=p["sim.timestep"],
        harness=p["sim.harness"],
        grasp_assist=p["sim.grasp_assist"],
    )
    return SimBackend(
        SimBackendConfig(
            sim=sim,
            kinematic=KinematicConfig(heading=p["sim.heading"]),
            camera_rate_hz=p["sim.camera_rate_hz"],
            camera_mode=p["sim.camera_mode"],
            camera_width=p["sim.camera_width"],
            camera_height=p["sim.camera_height"],
        )
    )


def _make_unitree_backend(p: Mapping[str, Any]) -> RobotBackend:
    from psi0_ros.robot.unitree_backend import UnitreeBackend, UnitreeConfig

    return UnitreeBackend(
        UnitreeConfig(
            dds=p["unitree.dds"],
            network_interface=p["unitree.network_interface"],
            domain_id=p["unitree.domain_id"],
            hands=p["unitree.hands"],
            state_timeout_s=p["unitree.state_timeout_s"],
            left_hand_wire_order=tuple(p["unitree.left_hand_wire_order"]),
            right_hand_wire_order=tuple(p["unitree.right_hand_wire_order"]),
        )
    )


# Backend name (the `backend` parameter) -> factory taking the complete parameter dict. A new
# robot is one RobotBackend subclass plus one entry here (and its parameters in PARAMETERS).
BACKEND_FACTORIES: dict[str, Callable[[Mapping[str, Any]], RobotBackend]] = {
    "sim": _make_sim_backend,
    "unitree": _make_unitree_backend,
}


def check_backend_name(name: str) -> None:
    if name not in BACKEND_FACTORIES:
        raise ValueError(
            f"parameter backend={name!r} is not a known backend; expected one of {sorted(BACKEND_FACTORIES)}"
        )


def make_backend(setup: BridgeSetup) -> RobotBackend:
    """Construct (not start) the configured backend; heavy imports happen in its factory."""
    check_backend_name(setup.backend_name)
    return BACKEND_FACTORIES[setup.backend_name](setup.params)


def build_bridge(params: Mapping[str, Any]) -> tuple[BridgeSetup, Bridge]:
    setup = bridge_setup(params)
    return setup, Bridge(make_backend(setup), setup.bridge_config)
