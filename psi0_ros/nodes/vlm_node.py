"""vlm_node: System-2 features (Qwen3-VL) of the newest camera frame (DESIGN §2).

Subscribes the camera image (depth 1: never a backlog) and /psi0/instruction (latched; the
`instruction` parameter until one arrives). A worker thread encodes the newest frame that has
not been encoded yet, and publishes /psi0/vlm_features stamped with the source image's stamp,
its seq (counts every image encoded) and the instruction it was computed with. A new
instruction applies from the next frame; chunk_node never combines features of an old
instruction with a new one (it drops them by the instruction field). Bad frames (encoding,
size, a JPEG that does not decode) are counted, logged and dropped.

`image_transport`: raw (sensor_msgs/Image on `image_topic`, one machine) or compressed
(sensor_msgs/CompressedImage on `image_topic`/compressed, what camera_node sends across a
two-machine link); a compressed frame is decoded on the worker thread, only when it is encoded.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from psi0_ros.constants import TOPIC_DIAGNOSTICS, TOPIC_IMAGE, TOPIC_INSTRUCTION, TOPIC_VLM_FEATURES, relative_topic
from psi0_ros.control.chunk_runner import RateCounter, percentiles_ms
from psi0_ros.image import compressed_to_rgb, compressed_topic, image_to_rgb
from psi0_ros.msg import VLMFeatures
from psi0_ros.nodes.qos import CONTROL, LARGE_LATEST, LATCHED
from psi0_ros.ros_messages import vlm_features_message

NODE_NAME = "vlm_node"
MIN_IMAGE_SIDE = 16  # px: anything smaller is not a camera frame
IMAGE_TRANSPORTS = ("raw", "compressed")


class VLMNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)

        def param(name: str, default: Any, text: str) -> Any:
            return self.declare_parameter(name, default, ParameterDescriptor(description=text)).value

        checkpoint = param("checkpoint", "", "checkpoint directory whose VLM (and image config) to load")
        self.instruction: str = param("instruction", "", "language instruction until /psi0/instruction has one")
        image_topic = param("image_topic", relative_topic(TOPIC_IMAGE), "camera image topic (sensor_msgs/Image)")
        transport = param(
            "image_transport", "raw", "raw: Image on image_topic | compressed: JPEG on image_topic/compressed"
        )
        if transport not in IMAGE_TRANSPORTS:
            raise ValueError(f"vlm_node: image_transport must be one of {IMAGE_TRANSPORTS}, got {transport!r}")
        self.wire_dtype = param("dtype", "float32", "VLMFeatures.dtype on the wire: float32 | float16 | bfloat16")
        backend = param("backend", "torch", "who runs the VLM: torch (onnxruntime: not exportable, docs/export.md)")
        device = param("device", "cpu", "torch device of the VLM")
        threads = int(param("torch_threads", 0, "torch CPU threads (0: torch's default)"))
        if not checkpoint:
            raise ValueError("vlm_node: parameter 'checkpoint' is empty; give a checkpoint directory")
        from psi0_ros.policy.vlm_export import check_vlm_backend

        check_vlm_backend(backend)
        import torch

        from psi0_ros.policy.checkpoint import read_config
        from psi0_ros.policy.vlm import VLMBackbone

        if threads > 0:
            torch.set_num_threads(threads)
        config, vlm_path = read_config(checkpoint)
        if vlm_path is None:
            raise FileNotFoundError(f"checkpoint {checkpoint} names no VLM directory")
        self.vlm = VLMBackbone.from_pretrained(vlm_path, torch.float32, device, config.image)
        self.counters: Counter[str] = Counter()
        self.latencies_s: list[float] = []
        self._rate = RateCounter()
        self._newest: Image | CompressedImage | None = None
        self._wake = threading.Condition()
        self._stop = False
        self._seq = 0
        group = MutuallyExclusiveCallbackGroup()
        if transport == "compressed":
            image_topic = compressed_topic(image_topic)
        image_type = CompressedImage if transport == "compressed" else Image
        self.create_subscription(image_type, image_topic, self._on_image, LARGE_LATEST, callback_group=group)
        self.create_subscription(
            String, relative_topic(TOPIC_INSTRUCTION), self._on_instruction, LATCHED, callback_group=group
        )
        self._pub = self.create_publisher(VLMFeatures, relative_topic(TOPIC_VLM_FEATURES), LARGE_LATEST)
        self._diag_pub = self.create_publisher(DiagnosticArray, relative_topic(TOPIC_DIAGNOSTICS), CONTROL)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=group)
        self._thread = threading.Thread(target=self._loop, name="psi0-vlm", daemon=True)
        self._thread.start()
        self.get_logger().info(f"features of {image_topic} ({transport})")

    def _on_image(self, msg: Image | CompressedImage) -> None:
        with self._wake:
            if self._newest is not None:
                self.counters["frames_skipped"] += 1  # a newer frame replaces one not yet encoded
            self._newest = msg
            self._wake.notify()

    def _on_instruction(self, msg: String) -> None:
        with self._wake:
            if msg.data != self.instruction:
                self.instruction = msg.data
                self.counters["instruction_changes"] += 1

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self._newest is None and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                msg, self._newest = self._newest, None
                instruction = self.instruction  # fixed for this frame
            try:
                rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
                if min(rgb.shape[:2]) < MIN_IMAGE_SIDE:
                    raise ValueError(f"image {rgb.shape[1]}x{rgb.shape[0]} is too small")
            except ValueError as err:
                self.counters["frames_rejected"] += 1
                self.get_logger().warning(f"dropped image: {err}", throttle_duration_sec=2.0)
                continue
            if not instruction:
                self.counters["frames_without_instruction"] += 1
                continue
            start = time.perf_counter()
            features, mask = self.vlm.encode([rgb], [instruction]).sample(0)
            self.latencies_s = (self.latencies_s + [time.perf_counter() - start])[-200:]
            self._seq += 1
            out = vlm_features_message(features, mask, instruction, self._seq, msg.header.stamp, self.wire_dtype)
            if not self.context.ok():
                return  # shutting down (Ctrl-C invalidates the context before the node is destroyed)
            try:
                self._pub.publish(out)
            except Exception:  # rclpy raises RCLError when the context went away during the publish
                if self.context.ok():
                    raise
                return
            self._rate.add(time.monotonic())
            self.counters["features_published"] += 1

    def _publish_diagnostics(self) -> None:
        p50, p99 = percentiles_ms(self.latencies_s)
        status = DiagnosticStatus(name=f"{NODE_NAME}: features", level=DiagnosticStatus.OK, message="running")
        values = {
            "features_rate_hz": f"{self._rate.rate(time.monotonic()):.2f}",
            "latency_p50_ms": f"{p50:.1f}",
            "latency_p99_ms": f"{p99:.1f}",
            "instruction": self.instruction,
            **self.counters,
        }
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)

    def destroy_node(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(timeout=10.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    from psi0_ros.nodes.runtime import spin_nodes

    return spin_nodes(lambda: [VLMNode()], args)


if __name__ == "__main__":
    sys.exit(main())
