"""QoS profiles shared by the nodes, one per kind of stream (docs/transport.md)."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# Large messages (images, VLM features): reliable so that fragments are re-sent, depth 1 so
# that a slow subscriber gets the newest message instead of a queue of stale ones.
LARGE_LATEST = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
# Commands, joint states, chunks: reliable, a short queue.
CONTROL = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
# Latched values (the language instruction, estop): late joiners get the last one.
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# /clock: as rclpy's TimeSource subscribes (best effort, the newest only).
CLOCK = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
# A state re-sent every control tick (chunk_executor_node's ExecutorState): best effort, the
# newest only; over a lossy link a re-sent old state is worth less than the next one.
PERIODIC_LATEST = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
