"""Child process: publishes every sample message (test/helpers/msg_samples.py) once a second
until its stdin closes or 60 s pass. Started by test/test_messages.py."""

from __future__ import annotations

import select
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test/ directory

from helpers.msg_samples import SAMPLES, TOPICS
from psi0_ros.transport import apply_transport_defaults


def main() -> None:
    apply_transport_defaults()
    import rclpy

    from psi0_ros.nodes.qos import CONTROL

    rclpy.init()
    node = rclpy.create_node("psi0_sample_publisher")
    try:
        publishers = {
            name: node.create_publisher(type(make()), TOPICS[name], CONTROL) for name, make in SAMPLES.items()
        }
        messages = {name: make() for name, make in SAMPLES.items()}
        print("ready", flush=True)
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            for name, pub in publishers.items():
                pub.publish(messages[name])
            readable, _, _ = select.select([sys.stdin], [], [], 0.2)
            if readable and not sys.stdin.readline():
                break
    finally:
        node.destroy_node()
        rclpy.shutdown()


if __name__ == "__main__":
    main()
