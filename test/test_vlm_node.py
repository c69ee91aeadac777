"""vlm_node in a real process with a tiny random Qwen3-VL checkpoint made here: features carry
the source image's stamp and an increasing seq, a burst of frames is not queued (the newest one
is encoded, not a backlog), a bad frame is dropped, and a new instruction on the latched topic
applies to the following frames."""

from __future__ import annotations

import time

import numpy as np
import pytest
from helpers.scenes import two_object_scene

rclpy = pytest.importorskip("rclpy")
from helpers.ros_nodes import NodeProcess, ros_parameters  # noqa: E402


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
    proc = NodeProcess(
        "psi0_ros.nodes.vlm_node",
        *ros_parameters({"checkpoint": str(checkpoint), "instruction": "pick up the can", "torch_threads": "1"}),
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
        proc.stop()
    seqs = [f.image_seq for f in features]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert not any(f.header.stamp.sec == 2000 for f in features)
    last = next(f for f in features if f.header.stamp.sec == 3000)
    assert last.instruction == "wave"
    assert all(f.instruction == "pick up the can" for f in features if f.header.stamp.sec < 2000)
    values, mask = vlm_features_arrays(last)
    assert values.shape == (last.num_tokens, 64) and mask.all()


def test_vlm_node_on_compressed_images_matches_raw_and_drops_a_corrupt_jpeg(tmp_path):
    """Two vlm_nodes, one on the raw Image (role all), one with the policy role's parameters
    (image_transport compressed), are fed the same frames: a scene, and the scene with one object
    moved by 16 px (5 % of the width). The compressed node's features of the JPEG (quality 90,
    camera_node's encoder) differ from the raw node's by less than a third of what moving the
    object changes: the JPEG error (0.9 grey levels mean on this frame) moves the features 4 %
    of their norm, the moved object 21 %, so the VLM sees the compressed frame as the same scene.
    A corrupt JPEG is dropped with a warning; the node goes on encoding the next frame."""
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray
    from psi0_ros.msg import VLMFeatures
    from sensor_msgs.msg import CompressedImage, Image

    from psi0_ros.constants import TOPIC_DIAGNOSTICS, TOPIC_IMAGE, TOPIC_VLM_FEATURES
    from psi0_ros.data.jpeg import encode_jpeg
    from psi0_ros.deploy_graph import deploy_nodes
    from psi0_ros.image import compressed_topic, rgb_to_image_fields
    from psi0_ros.nodes.qos import CONTROL, LARGE_LATEST
    from psi0_ros.policy.tiny import write_tiny_checkpoint
    from psi0_ros.ros_messages import vlm_features_arrays

    def transport(role: str) -> str:
        return next(s for s in deploy_nodes("sim", "ckpt", role=role) if s.name == "vlm_node").params["image_transport"]

    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt")
    logs, procs = {}, []
    for namespace, role in (("raw", "all"), ("jpeg", "policy")):
        logs[namespace] = tmp_path / f"{namespace}.log"
        params = {"checkpoint": str(checkpoint), "instruction": "pick up the can", "torch_threads": "1"}
        params["image_transport"] = transport(role)
        ros_args = ["-r", f"__ns:=/{namespace}", *ros_parameters(params)]
        procs.append(NodeProcess("psi0_ros.nodes.vlm_node", *ros_args, log=logs[namespace]))
    rclpy.init()
    node = rclpy.create_node("vlm_feeder")
    features: dict[str, dict[int, VLMFeatures]] = {"raw": {}, "jpeg": {}}
    for namespace, store in features.items():
        node.create_subscription(
            VLMFeatures,
            f"/{namespace}{TOPIC_VLM_FEATURES}",
            lambda m, s=store: s.setdefault(m.header.stamp.sec, m),
            LARGE_LATEST,
        )
    rejected = [0]  # frames_rejected of the compressed node (the raw one rejects none)

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            rejected[0] = max(rejected[0], int(values.get("frames_rejected", 0)))

    node.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, on_diagnostics, CONTROL)
    raw_pub = node.create_publisher(Image, f"/raw{TOPIC_IMAGE}", LARGE_LATEST)
    jpeg_pub = node.create_publisher(CompressedImage, compressed_topic(f"/jpeg{TOPIC_IMAGE}"), LARGE_LATEST)

    def publish(sec: int, rgb: np.ndarray | None, jpeg: bytes | None = None) -> None:
        stamp = Time(sec=sec, nanosec=0)
        if rgb is not None:
            raw = Image(**rgb_to_image_fields(rgb))
            raw.header.stamp = stamp
            raw_pub.publish(raw)
            jpeg = encode_jpeg(rgb, 90)
        compressed = CompressedImage(format="jpeg", data=jpeg)
        compressed.header.stamp = stamp
        jpeg_pub.publish(compressed)

    def spin_until(condition, what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            rclpy.spin_once(node, timeout_sec=0.05)
        assert condition(), f"timed out waiting for {what}; logs in {tmp_path}"

    def both(sec: int) -> bool:
        return all(sec in store for store in features.values())

    try:
        spin_until(lambda: raw_pub.get_subscription_count() > 0 and jpeg_pub.get_subscription_count() > 0, "nodes")
        sec = 100
        while not both(sec):  # until both are up and encoding
            sec += 1
            publish(sec, two_object_scene())
            pause_end = time.monotonic() + 0.8
            while time.monotonic() < pause_end and not both(sec):
                rclpy.spin_once(node, timeout_sec=0.05)
        for sec, rgb in ((1, two_object_scene()), (2, two_object_scene(shift=16))):  # one at a time: each is encoded
            publish(sec, rgb)
            spin_until(lambda sec=sec: both(sec), f"features of frame {sec}")
        good = encode_jpeg(two_object_scene(), 90)
        # One at a time (the mailbox is one frame deep): a truncated JPEG, then garbage after a
        # JPEG marker; each is rejected (the counter on /diagnostics), then a good frame.
        for sec, data in ((3, good[: len(good) // 2]), (4, b"\xff\xd8 not a jpeg")):
            publish(sec, None, data)
            spin_until(lambda sec=sec: rejected[0] >= sec - 2, f"corrupt frame {sec} rejected")
        publish(5, two_object_scene())
        spin_until(lambda: 5 in features["jpeg"], "features after the corrupt frames")
        alive = [proc.proc.poll() is None for proc in procs]
    finally:
        node.destroy_node()
        rclpy.shutdown()
        for proc in procs:  # each stopped with Ctrl-C, killed if it does not exit
            proc.stop()
    assert alive == [True, True]
    assert 3 not in features["jpeg"] and 4 not in features["jpeg"]
    log = logs["jpeg"].read_text()
    assert "dropped image: undecodable 'jpeg' image" in log, log
    raw_a, _ = vlm_features_arrays(features["raw"][1])
    raw_b, _ = vlm_features_arrays(features["raw"][2])
    jpeg_a, mask = vlm_features_arrays(features["jpeg"][1])
    assert jpeg_a.shape == raw_a.shape and mask.all()
    jpeg_change = np.linalg.norm(jpeg_a - raw_a) / np.linalg.norm(raw_a)
    scene_change = np.linalg.norm(raw_b - raw_a) / np.linalg.norm(raw_a)
    assert 0.0 < jpeg_change < scene_change / 3, (jpeg_change, scene_change)
