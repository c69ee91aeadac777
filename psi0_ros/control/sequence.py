"""Counting commands lost before they reached the bridge, from publisher sequence numbers.

DDS numbers every sample a writer publishes (1, 2, 3, ...); rmw hands that number to the
subscriber with each message (rclpy's MessageInfo "publication_sequence_number", with the
publisher's GID). A queue that overflows (KEEP_LAST depth 10, a slow callback) silently replaces
old samples, so the numbers the bridge sees jump: the size of each jump is the number lost.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class SequenceGaps:
    """Per publisher: the newest sequence number seen; observe() returns how many were skipped."""

    newest: dict[Hashable, int] = field(default_factory=dict)
    lost: int = 0  # total skipped numbers over all publishers
    reordered: int = 0  # numbers at or below one already seen (duplicates / out of order; not lost)

    def observe(self, publisher: Hashable, sequence: int) -> int:
        previous = self.newest.get(publisher)
        if previous is not None and sequence <= previous:
            self.reordered += 1
            return 0
        self.newest[publisher] = sequence
        gap = 0 if previous is None else sequence - previous - 1
        self.lost += gap
        return gap
