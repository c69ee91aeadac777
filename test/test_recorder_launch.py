"""launch/record.launch.py and the recording configs: the launch file compiles and takes its topic
list from config/record.yaml (launch_ros is not installed here, so it is not executed); the
teleop recorder's YAML names only parameters the node declares; config errors quote the value."""

from __future__ import annotations

import importlib.util
import py_compile
from pathlib import Path

import pytest
import yaml
from helpers.tiers import require

from psi0_ros.data.config import ConvertConfig, RecordConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "record.launch.py"


def _launch_module():
    spec = importlib.util.spec_from_file_location("record_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports launch/launch_ros only inside generate_launch_description()
    return module


def test_launch_file_compiles_and_records_the_configured_topics(tmp_path):
    py_compile.compile(str(LAUNCH), cfile=str(tmp_path / "record.launch.pyc"), doraise=True)
    module = _launch_module()
    record = module.read_record_config(ROOT / "config" / "record.yaml")
    assert record["topics"] == list(load_config().record.topics)
    command = module.bag_record_command(record, output="/data/session_1")
    assert command[:5] == ["ros2", "bag", "record", "--storage", "mcap"]
    assert command[5:7] == ["--output", "/data/session_1"] and command[7:] == record["topics"]
    assert module.bag_record_command(record, storage="sqlite3")[4] == "sqlite3"
    custom = tmp_path / "record.yaml"
    custom.write_text(yaml.safe_dump({"record": {"storage": "mcap", "topics": ["/only/this"]}}))
    assert module.bag_record_command(module.read_record_config(custom))[-1] == "/only/this"
    parameters = module.recorder_parameters(ROOT / "config" / "teleop_recorder.yaml", "stack cups")
    assert parameters == [str(ROOT / "config" / "teleop_recorder.yaml"), {"task": "stack cups"}]
    assert module.recorder_parameters(ROOT / "config" / "teleop_recorder.yaml", "") == parameters[:1]


def test_teleop_recorder_yaml_matches_the_node():
    rclpy = require("rclpy")
    from psi0_ros.commands.record import recorder_parameters
    from psi0_ros.nodes.teleop_recorder_node import NODE_NAME, TeleopRecorderNode
    from psi0_ros.robot.params import node_parameters

    document = yaml.safe_load((ROOT / "config" / "teleop_recorder.yaml").read_text())
    assert "/**" in document  # namespace-proof, and `ros2 param load --use-wildcard` reads it (test_param_files.py)
    values = node_parameters(document, NODE_NAME)
    rclpy.init()
    try:
        node = TeleopRecorderNode(recorder_parameters(None, "open the door"))
        try:
            declared = {name: node.get_parameter(name).value for name in values}
            assert declared == {**values, "task": "open the door"}
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown()


def test_config_errors_quote_the_bad_value(tmp_path):
    config = load_config()
    assert config.record.storage == "mcap" and "/psi0/episode_events" in config.record.topics
    assert config.convert == ConvertConfig()  # the YAML spells out the defaults, topics as in constants.py
    with pytest.raises(ValueError, match="state_rule must be one of .* got 'linear'"):
        ConvertConfig(state_rule="linear")
    with pytest.raises(ValueError, match="image_tolerance_s must be a positive number of seconds, got -0.1"):
        ConvertConfig(image_tolerance_s=-0.1)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['fsp'\]"):
        ConvertConfig.from_mapping({"fsp": 30})
    with pytest.raises(ValueError, match="storage must be one of .* got 'bag'"):
        RecordConfig(topics=("/a",), storage="bag")
    with pytest.raises(ValueError, match="absolute topic names, got \\['joint_states'\\]"):
        RecordConfig(topics=("joint_states",))
    bad = tmp_path / "bad.yaml"
    bad.write_text("record:\n  topics: [/a]\nconvert:\n  fps: 0\n")
    with pytest.raises(ValueError, match="bad.yaml: convert.fps must be in"):
        load_config(bad)
