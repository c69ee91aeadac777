"""camera_node: the ego camera as /camera/ego/image_raw (rgb8) + camera_info (DESIGN §2).

Sources (parameter `source`): a V4L2 device ("0", "/dev/video0"), a video file, or an existing
driver's topic ("topic:/some/image_raw", sensor_msgs/Image; "compressed:/some/image/compressed",
sensor_msgs/CompressedImage). Every frame is resized and centre-cropped to width x height and
stamped with its capture time (a topic source keeps the driver's stamp). A device that cannot
be opened fails at start with its name; a source that stops delivering is reported on
/diagnostics (WARN "stalled") and no frame is ever published twice.
"""

from __future__ import annotations

import io
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
from psi0_ros.image import image_to_rgb, rgb_to_image_fields
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
        self.counters: Counter[str] = Counter()
        self._last_frame_wall: float | None = None
        self._image_pub = self.create_publisher(Image, relative_topic(TOPIC_IMAGE), LARGE_LATEST)
        self._info_pub = self.create_publisher(CameraInfo, relative_topic(TOPIC_CAMERA_INFO), CONTROL)
        self._diag_pub = self.create_publisher(DiagnosticArray, relative_topic(TOPIC_DIAGNOSTICS), CONTROL)
        self._info = self._camera_info(fov)
        self.grabber: FrameGrabber | None = None
        self._published_seq = 0
        kind, _, topic = source.partition(":")
        if kind == "topic" and topic:
            self.create_subscription(Image, topic, self._on_image, LARGE_LATEST)
        elif kind == "compressed" and topic:
            self.create_subscription(CompressedImage, topic, self._on_compressed, LARGE_LATEST)
        else:
            self.grabber = FrameGrabber(source, self.width, self.height, rate, loop)  # CameraError names the source
            self.create_timer(1.0 / rate, self._poll)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(f"camera {source!r} -> {TOPIC_IMAGE} {self.width}x{self.height} rgb8")

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
        image = Image(**rgb_to_image_fields(rgb))
        image.header.stamp = stamp
        image.header.frame_id = FRAME_HEAD_CAMERA
        self._image_pub.publish(image)
        self._info.header.stamp = stamp
        self._info_pub.publish(self._info)
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
        from PIL import Image as PILImage

        try:
            rgb = np.asarray(PILImage.open(io.BytesIO(bytes(msg.data))).convert("RGB"))
        except Exception as err:  # PIL raises several types for undecodable data
            self.counters["frames_rejected"] += 1
            self.get_logger().warning(f"dropped compressed frame ({msg.format!r}): {err}", throttle_duration_sec=2.0)
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
