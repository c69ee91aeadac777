"""chunk_node and the ablations, in real chunk_node processes fed VLM features and joint states by
a probe node: the injected inference latency (inference_latency_ms) measured where an operator
sees it, the inference latency on /diagnostics, with and without the injection; and a naive DiT
head trained a few steps by `psi0 train stage3` serving chunks."""

from __future__ import annotations

import numpy as np
from helpers.tiers import require

require("rclpy")
require("psi0_ros.msg", "the generated messages (make setup)")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from helpers.ros_nodes import NodeProcess, ProbeNode, ros_parameters  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from psi0_ros import g1  # noqa: E402
from psi0_ros.constants import TOPIC_DIAGNOSTICS, TOPIC_JOINT_STATES, TOPIC_VLM_FEATURES  # noqa: E402
from psi0_ros.nodes.qos import CONTROL, LARGE_LATEST  # noqa: E402
from psi0_ros.ros_messages import joint_state_message, vlm_features_message  # noqa: E402

LATENCY_MS = 250.0
CHUNKS = 6  # chunks each run waits for before reading its latency


class Feeder(ProbeNode):
    """Publishes fresh VLM features (10 Hz) and standing joint states (30 Hz); keeps chunk_node's
    /diagnostics values."""

    def __init__(self, vlm_dim: int) -> None:
        super().__init__("latency_feeder")
        from psi0_ros.msg import VLMFeatures

        rng = np.random.default_rng(0)
        self.features = rng.standard_normal((8, vlm_dim)).astype(np.float32)
        self.values: dict[str, str] = {}
        self._features = self.node.create_publisher(VLMFeatures, TOPIC_VLM_FEATURES, LARGE_LATEST)
        self._joints = self.node.create_publisher(JointState, TOPIC_JOINT_STATES, CONTROL)
        self.node.create_timer(0.1, self._publish_features)
        self.node.create_timer(1.0 / 30.0, self._publish_joints)
        self.watch(DiagnosticArray, TOPIC_DIAGNOSTICS, keep=self._keep)
        self.start()

    def _publish_features(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        self._features.publish(vlm_features_message(self.features, np.ones(8, bool), "", 0, stamp))

    def _publish_joints(self) -> None:
        msg = joint_state_message(g1.ALL_JOINTS, g1.table("default"))
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._joints.publish(msg)

    def _keep(self, msg: DiagnosticArray) -> None:  # called under the lock
        for status in msg.status:
            if status.name.startswith("chunk_node"):
                self.values = {kv.key: kv.value for kv in status.values}

    def chunks(self) -> int:
        with self.lock:
            return int(self.values.get("chunks", 0))

    def latency_p50_ms(self) -> float:
        with self.lock:
            return float(self.values["inference_latency_p50_ms"])


def _measured_p50_ms(checkpoint, latency_ms: float, tmp_path) -> tuple[float, dict[str, str]]:
    params = {
        "checkpoint": str(checkpoint),
        "torch_threads": 1,
        "inference_niceness": 0,
        "diagnostics_rate_hz": 4.0,
        "inference_latency_ms": f"{latency_ms:.1f}",
    }
    node = NodeProcess(
        "psi0_ros.nodes.chunk_node", *ros_parameters(params), log=tmp_path / f"chunk_node_{latency_ms:g}.log"
    )
    feeder = Feeder(vlm_dim=64)
    try:
        feeder.wait(lambda: feeder.chunks() >= CHUNKS, f"{CHUNKS} chunks at {latency_ms:g} ms")
        with feeder.lock:
            values = dict(feeder.values)
        return feeder.latency_p50_ms(), values
    finally:
        feeder.close()
        node.stop()


def test_injected_latency_delays_every_chunk_by_the_set_amount(tmp_path):
    from psi0_ros.policy.tiny import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt", with_vlm=False)
    plain, _ = _measured_p50_ms(checkpoint, 0.0, tmp_path)
    delayed, values = _measured_p50_ms(checkpoint, LATENCY_MS, tmp_path)
    assert values["inference_latency_injected_ms"] == f"{LATENCY_MS:g}"
    assert plain < LATENCY_MS / 2, plain  # the tiny model's own inference
    # the set amount on top of the model's own time (on a loaded 2-core machine, give it 150 ms)
    assert LATENCY_MS <= delayed <= LATENCY_MS + plain + 150.0, (plain, delayed)


def test_a_negative_latency_is_refused(tmp_path):
    from psi0_ros.policy.tiny import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt", with_vlm=False)
    params = {"checkpoint": str(checkpoint), "inference_latency_ms": "-1.0"}
    node = NodeProcess("psi0_ros.nodes.chunk_node", *ros_parameters(params))
    try:
        assert node.wait() != 0
        assert "inference_latency_ms must be >= 0" in node.output
    finally:
        node.close()


def test_a_naive_dit_trained_a_few_steps_serves_through_chunk_node(tmp_path):
    from psi0_ros.msg import ActionChunk

    from psi0_ros.cli import main
    from psi0_ros.policy.checkpoint import read_config
    from training import synthetic

    synthetic.write_episodes(tmp_path / "episodes", episodes=2, frames=30)
    out = tmp_path / "dit"
    sets = [f"run.output_dir={out}", f"data.root={tmp_path / 'episodes'}", "run.steps=4", "model.expert_arch=dit"]
    assert main(["train", "stage3", "--preset", "tiny", *[a for s in sets for a in ("--set", s)]]) == 0
    config, _ = read_config(out / "checkpoint")
    assert config.expert.arch == "dit"
    params = {"checkpoint": str(out / "checkpoint"), "torch_threads": 1, "inference_niceness": 0}
    node = NodeProcess("psi0_ros.nodes.chunk_node", *ros_parameters(params), log=tmp_path / "chunk_node_dit.log")
    feeder = Feeder(vlm_dim=config.expert.vlm_dim)
    chunks = []
    feeder.watch(ActionChunk, "/psi0/action_chunk", keep=chunks.append)
    try:
        feeder.wait(lambda: len(chunks) >= 3, "3 chunks from the DiT checkpoint")
        with feeder.lock:
            shape = (chunks[-1].horizon, chunks[-1].action_dim)
            values = np.asarray(chunks[-1].actions)
        assert shape == (config.expert.horizon, 36)
        assert np.isfinite(values).all()
    finally:
        feeder.close()
        node.stop()
