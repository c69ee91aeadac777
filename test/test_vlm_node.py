"""vlm_node in a real process with a tiny random Qwen3-VL checkpoint made here: features carry
the source image's stamp and an increasing seq, a burst of frames is not queued (the newest one
is encoded, not a backlog), a bad frame is dropped, and a new instruction on the latched topic
applies to the following frames."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")


def test_vlm_node_newest_frame_stamps_and_instruction(tmp_path):
    from builtin_interfaces.msg import Time
    from psi0_ros.msg import VLMFeatures
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from psi0_ros.constants import TOPIC_IMAGE, TOPIC_INSTRUCTION, TOPIC_VLM_FEATURES
    from psi0_ros.image import rgb_to_image_fields
    from psi0_ros.nodes.qos import LARGE_LATEST, LATCHED
    from psi0_ros.policy.tiny import write_tiny_checkpoint
    from psi0_ros.ros_messages import vlm_features_arrays

    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt")
    proc = subprocess.Popen(
        [sys.executable, "-m", "psi0_ros.nodes.vlm_node", "--ros-args"]
        + ["-p", f"checkpoint:={checkpoint}", "-p", "instruction:=pick up the can", "-p", "torch_threads:=1"]
    )
    rclpy.init()
    node = rclpy.create_node("vlm_feeder")
    features: list = []
    node.create_subscription(VLMFeatures, TOPIC_VLM_FEATURES, features.append, LARGE_LATEST)
    images = node.create_publisher(Image, TOPIC_IMAGE, LARGE_LATEST)
    instruction = node.create_publisher(String, TOPIC_INSTRUCTION, LATCHED)
    rng = np.random.default_rng(0)

    def frame(sec: int, rgb: np.ndarray | None = None) -> Image:
        msg = Image(**rgb_to_image_fields(rgb if rgb is not None else rng.integers(0, 255, (48, 64, 3), np.uint8)))
        msg.header.stamp = Time(sec=sec, nanosec=0)
        return msg

    def spin_until(condition, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            rclpy.spin_once(node, timeout_sec=0.05)
        assert condition(), "timed out"

    def pause(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)

    try:
        spin_until(lambda: images.get_subscription_count() > 0)
        sec = 100
        while not features:  # until the node is up and encoding
            images.publish(frame(sec))
            sec += 1
            pause(0.8)
        # A burst of 30 frames: far fewer features come out, the last one from the newest frame.
        pause(1.0)
        before = len(features)
        burst = list(range(1000, 1030))
        for s in burst:
            images.publish(frame(s))
        spin_until(lambda: any(f.header.stamp.sec == burst[-1] for f in features))
        from_burst = [f for f in features[before:] if f.header.stamp.sec in burst]
        assert len(from_burst) < len(burst) // 2
        # A bad frame (bgr8 with a wrong step) is dropped, not encoded.
        bad = frame(2000)
        bad.step = 1
        images.publish(bad)
        # A new instruction applies to the next frames.
        instruction.publish(String(data="wave"))
        pause(1.0)  # the node has it before the next frame
        images.publish(frame(3000))
        spin_until(lambda: any(f.header.stamp.sec == 3000 for f in features))
    finally:
        node.destroy_node()
        rclpy.shutdown()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    seqs = [f.image_seq for f in features]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert not any(f.header.stamp.sec == 2000 for f in features)
    last = next(f for f in features if f.header.stamp.sec == 3000)
    assert last.instruction == "wave"
    assert all(f.instruction == "pick up the can" for f in features if f.header.stamp.sec < 2000)
    values, mask = vlm_features_arrays(last)
    assert values.shape == (last.num_tokens, 64) and mask.all()
