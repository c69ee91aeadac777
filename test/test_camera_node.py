"""camera_node in a real process: a video file written here (PyAV) comes out resized to the
configured size as rgb8 with camera_info, each frame once, with increasing capture stamps; when
the file ends the node reports a stall and publishes nothing more; a device that cannot be
opened is a clear error at start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from psi0_ros.camera import fit_frame

FRAMES = 150  # 5 s at 30 fps: time for this test's subscriber to match before the clip ends


def test_fit_frame_covers_then_crops():
    rgb = np.zeros((48, 96, 3), np.uint8)
    rgb[:, 40:56] = 255  # a centre stripe survives the crop
    out = fit_frame(rgb, 32, 32)
    assert out.shape == (32, 32, 3)
    assert out[:, 16].min() == 255 and out[:, 0].max() == 0


def _write_video(path, frames: int) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            rgb = np.full((48, 64, 3), (i * 10) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_camera_node_plays_a_video_once_and_reports_the_stall(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image

    from psi0_ros.constants import TOPIC_CAMERA_INFO, TOPIC_DIAGNOSTICS, TOPIC_IMAGE
    from psi0_ros.nodes.qos import CONTROL, LARGE_LATEST

    video = tmp_path / "clip.mp4"
    _write_video(video, FRAMES)
    params = ["-p", f"source:={video}", "-p", "width:=32", "-p", "height:=24", "-p", "stall_timeout_s:=0.3"]
    proc = subprocess.Popen([sys.executable, "-m", "psi0_ros.nodes.camera_node", "--ros-args", *params])
    rclpy.init()
    node = rclpy.create_node("camera_watcher")
    images, infos, stalls = [], [], []
    lock = threading.Lock()
    # Depth-1 image QoS like the VLM's: count frames by their distinct stamps, not deliveries.
    node.create_subscription(Image, TOPIC_IMAGE, lambda m: images.append(m), LARGE_LATEST)
    node.create_subscription(CameraInfo, TOPIC_CAMERA_INFO, lambda m: infos.append(m), CONTROL)

    def on_diag(msg):
        with lock:
            stalls.extend(s.message for s in msg.status if s.name == "camera_node: frames" and "stalled" in s.message)

    node.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, on_diag, CONTROL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (images and stalls):
            rclpy.spin_once(node, timeout_sec=0.1)
        assert images, "no image from camera_node"
        assert stalls, "the end of the video was not reported as a stall"
        count = len(images)
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert len(images) == count, "a frame was published after the source stalled"
    finally:
        node.destroy_node()
        rclpy.shutdown()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in images]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False)), "a frame was published twice or out of order"
    assert len(images) <= FRAMES
    assert {(m.width, m.height, m.encoding) for m in images} == {(32, 24, "rgb8")}
    assert infos and infos[0].width == 32 and infos[0].k[0] > 0


def test_a_device_that_cannot_open_is_a_clear_error():
    pytest.importorskip("rclpy")
    result = subprocess.run(
        [sys.executable, "-m", "psi0_ros.nodes.camera_node", "--ros-args", "-p", "source:=/dev/video97"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert result.returncode != 0
    assert "camera device /dev/video97 does not exist" in result.stderr


def test_camera_node_relays_a_driver_topic_resized_and_drops_bad_frames():
    rclpy = pytest.importorskip("rclpy")
    import io

    from builtin_interfaces.msg import Time
    from PIL import Image as PILImage
    from sensor_msgs.msg import CompressedImage, Image

    from psi0_ros.constants import TOPIC_IMAGE
    from psi0_ros.nodes.qos import LARGE_LATEST

    params = ["-p", "source:=compressed:/driver/image/compressed", "-p", "width:=40", "-p", "height:=30"]
    proc = subprocess.Popen([sys.executable, "-m", "psi0_ros.nodes.camera_node", "--ros-args", *params])
    rclpy.init()
    node = rclpy.create_node("camera_driver")
    images: list = []
    node.create_subscription(Image, TOPIC_IMAGE, images.append, LARGE_LATEST)
    driver = node.create_publisher(CompressedImage, "/driver/image/compressed", LARGE_LATEST)
    buffer = io.BytesIO()
    PILImage.fromarray(np.full((60, 100, 3), 200, np.uint8)).save(buffer, format="JPEG")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not images:
            rclpy.spin_once(node, timeout_sec=0.1)
            bad = CompressedImage(format="jpeg", data=b"not a jpeg")
            bad.header.stamp = Time(sec=1, nanosec=0)
            driver.publish(bad)
            good = CompressedImage(format="jpeg", data=buffer.getvalue())
            good.header.stamp = Time(sec=7, nanosec=5)
            driver.publish(good)
        assert images, "nothing relayed from the driver topic"
    finally:
        node.destroy_node()
        rclpy.shutdown()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert {(m.width, m.height, m.encoding) for m in images} == {(40, 30, "rgb8")}
    assert {(m.header.stamp.sec, m.header.stamp.nanosec) for m in images} == {(7, 5)}  # the driver's stamp
