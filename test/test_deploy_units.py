"""Deploy graph pieces without spinning: the node list (psi0 deploy and the launch file), message
conversions, state parity with the converter, and chunk_node's input checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from psi0_ros.control.chunk_runner import joint_positions
from psi0_ros.control.scheduler import catch_up_ticks
from psi0_ros.data.streams import joint_columns, lower_body_vector
from psi0_ros.deploy_graph import GRAPH_NODES, NodeSpec, deploy_nodes
from psi0_ros.g1 import ALL_JOINTS
from psi0_ros.layout import build_state, deploy_state

ROOT = Path(__file__).resolve().parents[1]


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(f"psi0_ros.nodes.{name}") is not None


def test_catch_up_ticks():
    assert catch_up_ticks(None, 7) == [7]
    assert catch_up_ticks(8, 7) == []
    assert catch_up_ticks(5, 7) == [5, 6, 7]
    assert catch_up_ticks(0, 100, limit=5) == [96, 97, 98, 99, 100]
    assert len(catch_up_ticks(0, 100)) == 15  # at most 0.5 s of ticks


def test_deploy_nodes_for_each_backend():
    sim = deploy_nodes("sim", "/ckpt", "pick", overrides={"chunk_node": {"mode": "sync"}})
    names = [n.name for n in sim]
    assert names[:3] == ["robot_bridge_node", "vlm_node", "chunk_node"]
    assert ("lower_body_node" in names) is False  # kinematic sim: the bridge follows the 8-D command
    assert ("viz_node" in names) == _module_exists("viz_node")
    params = {n.name: n.params for n in sim}
    assert params["robot_bridge_node"]["lower_body_input"] == "command"
    assert params["chunk_node"]["checkpoint"] == "/ckpt" and params["chunk_node"]["mode"] == "sync"
    assert params["vlm_node"]["instruction"] == "pick"
    robot = [n.name for n in deploy_nodes("unitree", "/ckpt")]
    assert "camera_node" in robot
    assert ("lower_body_node" in robot) == _module_exists("lower_body_node")
    with pytest.raises(ValueError, match="backend"):
        deploy_nodes("gazebo")
    assert not any("use_sim_time" in n.params for n in sim)  # the wall clock unless asked


def test_every_graph_node_is_in_the_graph_and_a_missing_module_is_named(monkeypatch):
    names = [n.name for n in deploy_nodes("sim", "/ckpt")] + [n.name for n in deploy_nodes("unitree", "/ckpt")]
    names += [n.name for n in deploy_nodes("unitree", "/ckpt", role="robot")]  # chunk_executor_node
    assert set(names) == set(GRAPH_NODES)  # lower_body_node and viz_node are never dropped
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psi0_ros.nodes.viz_node" else real(name, *a)
    )
    with pytest.raises(ModuleNotFoundError, match="deploy graph node 'viz_node' is missing"):
        deploy_nodes("sim", "/ckpt")


def test_the_bridge_gets_its_config_files_parameters_for_each_backend():
    """config/sim.yaml and config/robot_bridge.yaml key their parameters `/**` (any node loading
    them, in any namespace); the graph must apply them as rcl does, not fall back to the parameter
    defaults (it did: the robot ran with safety.max_step 0.02 instead of its file's 0.01)."""
    import yaml

    def file_params(name: str) -> dict:
        document = yaml.safe_load((ROOT / "config" / name).read_text())
        return document["/**"]["ros__parameters"]

    robot_file, sim_file = file_params("robot_bridge.yaml"), file_params("sim.yaml")
    robot = deploy_nodes("unitree", "/ckpt")[0].params
    assert robot["safety.max_step"] == robot_file["safety"]["max_step"] == 0.01
    assert robot["safety.damp_after_s"] == robot_file["safety"]["damp_after_s"]
    assert robot["safety.hold_after_s"] == robot_file["safety"]["hold_after_s"]
    assert robot["control_rate_hz"] == robot_file["control_rate_hz"]
    sim = deploy_nodes("sim", "/ckpt")[0].params
    assert sim["control_rate_hz"] == sim_file["control_rate_hz"] == 250.0
    assert (sim["sim.camera_width"], sim["sim.camera_height"]) == (320, 240)  # what the policy consumes
    assert sim["safety.auto_resume"] is True and sim["safety.hold_after_s"] == sim_file["safety"]["hold_after_s"]
    assert sim["diagnostics_rate_hz"] == 1.0  # deploy.yaml's robot_bridge_node section overlays the file


def test_sim_time_puts_every_node_on_the_sims_clock():
    nodes = deploy_nodes("sim", "/ckpt", "pick", sim_time=True)
    assert all(n.params["use_sim_time"] is True for n in nodes), [n.name for n in nodes]
    assert nodes[0].name == "robot_bridge_node" and nodes[0].params["publish_clock"] is True
    with pytest.raises(ValueError, match="sim_time needs the sim backend"):
        deploy_nodes("unitree", "/ckpt", sim_time=True)


def test_an_evaluation_episode_runs_the_policy_nodes_on_sim_time():
    from psi0_ros.jobs.evaluation import CAMERA_RATE_HZ, episode_nodes

    nodes = episode_nodes("/ckpt", "can_to_basket", seed=100007)
    names = [n.name for n in nodes]
    assert names == ["vlm_node", "chunk_node", "robot_bridge_node"], names  # the scorer (the sim) last, no rviz feed
    bridge = nodes[-1].params
    assert bridge["sim.seed"] == 100007 and bridge["publish_clock"] is True
    assert bridge["sim.camera_rate_hz"] == CAMERA_RATE_HZ < 30.0  # frames vlm_node can use, not 30 Hz
    assert all(n.params["use_sim_time"] is True for n in nodes)
    assert nodes[0].params["instruction"] == "pick up the red can and put it in the blue basket"


def test_the_node_class_table_names_every_graph_node():
    pytest.importorskip("rclpy")
    from psi0_ros.nodes.graph import NODE_CLASSES, node_class

    assert set(NODE_CLASSES) == set(GRAPH_NODES)
    for name, cls in NODE_CLASSES.items():
        assert cls.__module__ == NodeSpec(name).module, name  # the class `python -m` and launch run
    with pytest.raises(ValueError, match="'rviz_node'"):
        node_class("rviz_node")


def test_deploy_yaml_names_only_declared_chunk_node_parameters():
    from psi0_ros.deploy_graph import read_sections
    from psi0_ros.nodes import chunk_node

    declared = {name for name, _, _ in chunk_node.PARAMETERS}
    sections = read_sections(ROOT / "config" / "deploy.yaml", ("chunk_node",))
    assert set(sections["chunk_node"]) <= declared


def test_launch_file_lists_the_graph_nodes():
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is not installed here (no PyPI wheel); psi0 deploy runs the same graph")
    from launch_ros.actions import Node

    from launch import LaunchContext

    spec = importlib.util.spec_from_file_location("deploy_launch", ROOT / "launch" / "deploy.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    for action in description.entities:
        action.visit(context)
    nodes = module.graph_actions(context)
    names = [n.node_executable for n in nodes if isinstance(n, Node)]
    assert names[:3] == ["robot_bridge_node", "vlm_node", "chunk_node"]


rclpy = pytest.importorskip("rclpy")


def test_state_parity_with_the_converter():
    from psi0_ros.msg import LowerBodyCommand
    from sensor_msgs.msg import JointState

    rng = np.random.default_rng(0)
    msg = JointState()
    order = rng.permutation(len(ALL_JOINTS))
    msg.name = [ALL_JOINTS[i] for i in order]
    msg.position = rng.uniform(-1, 1, len(ALL_JOINTS)).tolist()
    command = LowerBodyCommand(vx=0.1, vy=0.0, vyaw=0.2, target_yaw=0.3, torso_roll=0.05, torso_pitch=-0.1)
    command.torso_yaw, command.height = 0.2, 0.7
    # The converter's path: joint_columns + lower_body_vector + build_state.
    positions = np.zeros((1, len(ALL_JOINTS)))
    src, dst = joint_columns(msg.name)
    positions[0, dst] = np.asarray(msg.position)[src]
    converted = build_state(positions, lower_body_vector(command)[None])[0]
    # chunk_node's path: the commanded action's lower-body dims.
    action = np.zeros(36)
    action[28:36] = lower_body_vector(command)
    deployed = deploy_state(joint_positions(msg.name, msg.position), action)
    np.testing.assert_array_equal(deployed, converted)


def test_message_round_trips():
    from psi0_ros.constants import ACTION_NAMES
    from psi0_ros.ros_messages import (
        action_chunk_array,
        action_chunk_message,
        stamp_tick,
        tick_stamp,
        vlm_features_arrays,
        vlm_features_message,
    )

    big = 30 * 1_800_000_000  # ticks of a ROS clock in 2027
    assert stamp_tick(*tick_stamp(big + 7, 30.0), 30.0) == big + 7
    actions = np.arange(16 * 36, dtype=np.float32).reshape(16, 36)
    msg = action_chunk_message(3, big, actions, 5, 30.0, 12.5, ACTION_NAMES)
    np.testing.assert_array_equal(action_chunk_array(msg), actions)
    msg.actions = msg.actions[:-1]
    with pytest.raises(ValueError, match="values for horizon"):
        action_chunk_array(msg)
    from builtin_interfaces.msg import Time

    features = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    mask = np.array([1, 1, 1, 0, 1], bool)
    out = vlm_features_message(features, mask, "go", 4, Time(sec=1, nanosec=2))
    back, back_mask = vlm_features_arrays(out)
    np.testing.assert_array_equal(back, features)
    np.testing.assert_array_equal(back_mask, mask)
    out.attention_mask = bytes(5)
    with pytest.raises(ValueError, match="no real token"):
        vlm_features_arrays(out)


@pytest.fixture
def chunk_node(tmp_path):
    from rclpy.parameter import Parameter

    from psi0_ros.nodes.chunk_node import ChunkNode
    from psi0_ros.policy.tiny import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint(tmp_path / "ckpt", with_vlm=False)
    rclpy.init()
    node = ChunkNode(parameter_overrides=[Parameter("checkpoint", value=str(ckpt))])
    yield node
    node.destroy_node()
    rclpy.shutdown()


def test_chunk_node_input_checks(chunk_node):
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, String

    from psi0_ros.ros_messages import vlm_features_message

    node = chunk_node
    assert node._observation() == (None, "no_features")
    now = node.get_clock().now().nanoseconds
    stamp = Time(sec=now // 10**9, nanosec=now % 10**9)
    wrong = vlm_features_message(np.zeros((4, 8), np.float32), np.ones(4, bool), "go", 1, stamp)
    node._on_features(wrong)  # feature_dim 8 != the expert's 64
    assert node.counters["features_rejected"] == 1 and node._observation()[1] == "no_features"
    old = Time(sec=stamp.sec - 5, nanosec=stamp.nanosec)  # a frozen camera: the newest image is 5 s old
    node._on_features(vlm_features_message(np.zeros((4, 64), np.float32), np.ones(4, bool), "go", 2, old))
    assert node._observation()[1] == "stale_features"
    node._on_features(vlm_features_message(np.zeros((4, 64), np.float32), np.ones(4, bool), "go", 2, stamp))
    assert node._observation()[1] == "stale_joint_states"
    joints = JointState(name=list(ALL_JOINTS), position=[0.0] * len(ALL_JOINTS))
    joints.position[20] = float("nan")
    node._on_joints(joints)
    assert node._observation()[1] == "bad_joint_states"
    joints.position[20] = 0.0
    node._on_joints(joints)
    observation, reason = node._observation()
    assert reason == "" and observation[0].state.shape == (36,)
    node._on_estop(Bool(data=True))
    assert node._observation()[1] == "estop"
    node._on_estop(Bool(data=False))
    # A new instruction: features computed under the old one are dropped, and never used again.
    node._on_instruction(String(data="wave"))
    assert node._observation()[1] == "no_features"
    node._on_features(vlm_features_message(np.zeros((4, 64), np.float32), np.ones(4, bool), "go", 3, stamp))
    assert node.counters["features_old_instruction"] == 1 and node._observation()[1] == "no_features"


def test_psi0_deploy_dry_run_and_bad_checkpoint(tmp_path, capsys):
    from psi0_ros.cli import main
    from psi0_ros.policy.tiny import write_tiny_checkpoint

    with pytest.raises(SystemExit, match="no checkpoint at"):
        main(["deploy", "--checkpoint", str(tmp_path / "missing")])
    ckpt = write_tiny_checkpoint(tmp_path / "ckpt", with_vlm=False)
    assert main(["deploy", "--checkpoint", str(ckpt), "--dry-run", "--param", "chunk_node:mode=sync"]) == 0
    out = capsys.readouterr().out
    assert "robot_bridge_node, vlm_node, chunk_node" in out and "'mode': 'sync'" in out
    with pytest.raises(SystemExit, match="NODE:NAME=VALUE"):
        main(["deploy", "--checkpoint", str(ckpt), "--param", "mode=sync"])


def test_psi0_bench_rtc_writes_rows(tmp_path):
    import json

    from psi0_ros.cli import main

    out = tmp_path / "rtc.json"
    assert main(["bench", "rtc", "--json", str(out), "--modes", "sync,naive_async", "--latencies-ms", "0,300"]) == 0
    rows = json.loads(out.read_text())["results"]["rows"]
    assert [(r["mode"], r["latency_ms"]) for r in rows] == [
        ("sync", 0.0),
        ("sync", 300.0),
        ("naive_async", 0.0),
        ("naive_async", 300.0),
    ]
    by = {(r["mode"], r["latency_ms"]): r for r in rows}
    assert by[("sync", 300.0)]["missed_ticks"] > 0 and by[("naive_async", 300.0)]["missed_ticks"] == 0


def test_deploy_stop_escalates_on_a_second_ctrl_c():
    import subprocess
    import sys

    from psi0_ros.commands.deploy import _stop_all

    stubborn = (
        "import signal, time; signal.signal(signal.SIGINT, lambda *a: None); print('up', flush=True); time.sleep(60)"
    )
    polite = "import time\ntry:\n    print('up', flush=True); time.sleep(60)\nexcept KeyboardInterrupt:\n    pass"
    processes = []
    for name, code in (("stubborn", stubborn), ("polite", polite)):
        process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "up"
        processes.append((name, process))
    calls = []

    def interrupts() -> int:  # Ctrl-C count: the second press comes after 40 polls (~2 s)
        calls.append(1)
        return 1 if len(calls) <= 40 else 2

    _stop_all(processes, grace_s=600.0, interrupts=interrupts)
    assert len(calls) == 41  # returned at the second press, not after the 600 s grace
    codes = {name: p.returncode for name, p in processes}
    assert codes == {"stubborn": -15, "polite": 0}


def test_sim_speed_needs_the_sims_clock():
    from psi0_ros.robot.params import bridge_setup

    assert bridge_setup({}).bridge_config.pace == 1.0
    fast = bridge_setup({"sim.speed": 2.0, "publish_clock": True})
    assert fast.bridge_config.pace == 2.0
    with pytest.raises(ValueError, match="sim.speed=2.0 needs backend 'sim' with publish_clock"):
        bridge_setup({"sim.speed": 2.0})  # nodes on the wall clock would fall behind the robot
    with pytest.raises(ValueError, match="sim.speed=2.0 needs backend 'sim'"):
        bridge_setup({"backend": "unitree", "sim.speed": 2.0, "publish_clock": True})
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="sim.speed"):
            bridge_setup({"sim.speed": bad, "publish_clock": True})


def test_the_bridge_loop_runs_pace_times_its_rate_and_never_ahead():
    """BridgeConfig.pace: a sim bridge ticks rate_hz * pace times a wall second; never more (the
    loop never starts a tick ahead of its schedule), and clearly more than at pace 1."""
    pytest.importorskip("mujoco")
    from psi0_ros.control import SafetyConfig
    from psi0_ros.robot.bridge import Bridge, BridgeConfig
    from psi0_ros.robot.sim_backend import SimBackend, SimBackendConfig

    rate, seconds = 100.0, 0.6
    ticks = {}
    for pace in (1.0, 4.0):
        backend = SimBackend(SimBackendConfig(camera_mode="off"))
        bridge = Bridge(backend, BridgeConfig(SafetyConfig(control_rate_hz=rate), pace=pace))
        backend.start()
        bridge.run(duration_s=seconds)
        ticks[pace] = bridge.timing().ticks
        assert backend.sim_time() == pytest.approx(ticks[pace] / rate, abs=1e-6)  # 1/rate of sim time a tick
        backend.close()
        assert ticks[pace] <= rate * pace * seconds + 1, (pace, ticks)
    assert ticks[4.0] >= 2.0 * ticks[1.0], ticks
    with pytest.raises(ValueError, match="pace"):
        BridgeConfig(SafetyConfig(), pace=0.0)
