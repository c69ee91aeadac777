"""camera_node: the ego camera as /camera/ego/image_raw (rgb8) + camera_info (DESIGN §2).

Sources (parameter `source`): a V4L2 device ("0", "/dev/video0"), a video file, or an existing
driver's topic ("topic:/some/image_raw", sensor_msgs/Image; "compressed:/some/image/compressed",
sensor_msgs/CompressedImage). Every frame is resized and centre-cropped to width x height and
stamped with its capture time (a topic source keeps the driver's stamp). A device that cannot
be opened fails at start with its name; a source that stops delivering is reported on
/diagnostics (WARN "stalled") and no frame is ever published twice.

Outputs: the rgb8 Image + camera_info (`publish_raw`, default true) and, with
`publish_compressed` (default false; the robot role of a two-machine deploy turns it on), the
same frame as a JPEG sensor_msgs/CompressedImage (format "jpeg", `jpeg_quality` 90: the quality
the episode files are written at, so the policy sees the JPEG it was trained on) on
<image topic>/compressed, encoded only while something subscribes. `publish_raw: false` makes the
node a compressor behind another publisher of the raw topic (the sim bridge's head camera: source
topic:camera/ego/image_raw); a topic source that is its own raw output is refused at start.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from psi0_ros.camera import FrameGrabber, fit_frame
from psi0_ros.constants import FRAME_HEAD_CAMERA, TOPIC_CAMERA_INFO, TOPIC_DIAGNOSTICS, TOPIC_IMAGE, relative_topic
from psi0_ros.data.jpeg import encode_jpeg
from psi0_ros.image import compressed_to_rgb, compressed_topic, image_to_rgb, rgb_to_image_fields
from psi0_ros.nodes.qos import CONTROL, LARGE_LATEST

NODE_NAME = "camera_node"


def _stamp(seconds: float) -> Time:
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class CameraNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)

        def param(name: str, default: Any, text: str) -> Any:
            return self.declare_parameter(name, default, ParameterDescriptor(description=text)).value

        source = str(param("source", "0", "device index/path, video file, topic:NAME or compressed:NAME"))
        self.width = int(param("width", 640, "output width [px]"))
        self.height = int(param("height", 480, "output height [px]"))
        rate = float(param("rate_hz", 30.0, "publish rate [Hz] (device/file sources)"))
        self.stall_timeout_s = float(param("stall_timeout_s", 0.5, "no new frame for this long: stalled [s]"))
        loop = bool(param("loop", False, "video file: start again at its end"))
        fov = float(param("horizontal_fov_deg", 90.0, "camera_info: horizontal field of view [deg]"))
        self.publish_raw = bool(param("publish_raw", True, "publish the rgb8 Image and camera_info"))
        self.publish_compressed = bool(
            param("publish_compressed", False, "also publish a JPEG CompressedImage on <image topic>/compressed")
        )
        self.jpeg_quality = int(param("jpeg_quality", 90, "JPEG quality of the compressed image (1-100)"))
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"camera_node: jpeg_quality must be in 1..100, got {self.jpeg_quality!r}")
        if not (self.publish_raw or self.publish_compressed):
            raise ValueError("camera_node: publish_raw and publish_compressed are both false: nothing to publish")
        self.counters: Counter[str] = Counter()
        self._last_frame_wall: float | None = None
        self._jpeg_bytes_last = 0
        image_topic = relative_topic(TOPIC_IMAGE)
        self._image_pub = self.create_publisher(Image, image_topic, LARGE_LATEST) if self.publish_raw else None
        self._compressed_pub = None
        if self.publish_compressed:
            self._compressed_pub = self.create_publisher(CompressedImage, compressed_topic(image_topic), LARGE_LATEST)
        self._info_pub = None  # camera_info goes with the raw image (its other publisher's, when publish_raw is false)
        if self.publish_raw:
            self._info_pub = self.create_publisher(CameraInfo, relative_topic(TOPIC_CAMERA_INFO), CONTROL)
        self._diag_pub = self.create_publisher(DiagnosticArray, relative_topic(TOPIC_DIAGNOSTICS), CONTROL)
        self._info = self._camera_info(fov)
        self.grabber: FrameGrabber | None = None
        self._published_seq = 0
        kind, _, topic = source.partition(":")
        if kind == "topic" and topic and self.publish_raw:
            if self.resolve_topic_name(topic) == self.resolve_topic_name(image_topic):
                raise ValueError(
                    f"camera_node: source {source!r} is its own output topic; set publish_raw false to only "
                    "compress another publisher's frames"
                )
        if kind == "topic" and topic:
            self.create_subscription(Image, topic, self._on_image, LARGE_LATEST)
        elif kind == "compressed" and topic:
            self.create_subscription(CompressedImage, topic, self._on_compressed, LARGE_LATEST)
        else:
            self.grabber = FrameGrabber(source, self.width, self.height, rate, loop)  # CameraError names the source
            self.create_timer(1.0 / rate, self._poll)
        self.create_timer(1.0, self._publish_diagnostics)
        outputs = (["rgb8"] if self.publish_raw else []) + (
            [f"jpeg q{self.jpeg_quality}"] if self.publish_compressed else []
        )
        self.get_logger().info(f"camera {source!r} -> {TOPIC_IMAGE} {self.width}x{self.height} {' + '.join(outputs)}")

    def _camera_info(self, fov_deg: float) -> CameraInfo:
        info = CameraInfo()
        info.header.frame_id = FRAME_HEAD_CAMERA
        info.width, info.height = self.width, self.height
        f = self.width / (2.0 * np.tan(np.radians(fov_deg) / 2.0))
        cx, cy = (self.width - 1) / 2.0, (self.height - 1) / 2.0
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return info

    def _publish(self, rgb: np.ndarray, stamp: Time) -> None:
        if self._image_pub is not None and self._info_pub is not None:
            image = Image(**rgb_to_image_fields(rgb))
            image.header.stamp = stamp
            image.header.frame_id = FRAME_HEAD_CAMERA
            self._image_pub.publish(image)
            self._info.header.stamp = stamp
            self._info_pub.publish(self._info)
        if self._compressed_pub is not None and self._compressed_pub.get_subscription_count() > 0:
            compressed = CompressedImage(format="jpeg", data=encode_jpeg(rgb, self.jpeg_quality))
            compressed.header.stamp = stamp
            compressed.header.frame_id = FRAME_HEAD_CAMERA
            self._compressed_pub.publish(compressed)
            self.counters["frames_compressed"] += 1
            self._jpeg_bytes_last = len(compressed.data)
        self._last_frame_wall = time.monotonic()
        self.counters["frames_published"] += 1

    def _poll(self) -> None:
        frame = self.grabber.latest()
        if frame is None or frame.seq == self._published_seq:
            return  # nothing new: never re-publish an old frame
        if frame.seq > self._published_seq + 1:
            self.counters["frames_skipped"] += frame.seq - self._published_seq - 1
        self._published_seq = frame.seq
        self._publish(frame.rgb, _stamp(frame.capture_time_s))

    def _on_image(self, msg: Image) -> None:
        try:
            rgb = image_to_rgb(msg)
        except ValueError as err:
            self.counters["frames_rejected"] += 1
            self.get_logger().warning(f"dropped frame: {err}", throttle_duration_sec=2.0)
            return
        self._publish(fit_frame(rgb, self.width, self.height), msg.header.stamp)

    def _on_compressed(self, msg: CompressedImage) -> None:
        try:
            rgb = compressed_to_rgb(msg)
        except ValueError as err:
            self.counters["frames_rejected"] += 1
            self.get_logger().warning(f"dropped compressed frame: {err}", throttle_duration_sec=2.0)
            return
        self._publish(fit_frame(rgb, self.width, self.height), msg.header.stamp)

    def _publish_diagnostics(self) -> None:
        age = None if self._last_frame_wall is None else time.monotonic() - self._last_frame_wall
        status = DiagnosticStatus(name=f"{NODE_NAME}: frames", level=DiagnosticStatus.OK, message="streaming")
        if age is None or age > self.stall_timeout_s:
            status.level = DiagnosticStatus.WARN
            status.message = "no frame yet" if age is None else f"stalled: no new frame for {age:.1f} s"
            self.counters["stall_reports"] += 1
        if self.grabber is not None and self.grabber.error is not None:
            status.level, status.message = DiagnosticStatus.ERROR, f"camera read failed: {self.grabber.error}"
        values = {"frame_age_s": "none" if age is None else f"{age:.3f}", **self.counters}
        if self._compressed_pub is not None:
            values["jpeg_bytes_last"] = self._jpeg_bytes_last
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)

    def destroy_node(self) -> None:
        if self.grabber is not None:
            self.grabber.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    from psi0_ros.nodes.runtime import spin_nodes

    return spin_nodes(lambda: [CameraNode()], args)


if __name__ == "__main__":
    sys.exit(main())
