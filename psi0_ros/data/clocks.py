"""Which clock a stream is aligned on, and the time margins read around an episode [ns].

docs/data.md "Clocks": a stream's header stamps are used when they are on the recorder's clock;
otherwise (sim time, an unsynchronised robot clock, zero stamps) its receive times are.
"""

from __future__ import annotations

import numpy as np

from psi0_ros.data.config import ConvertConfig

NS_PER_S = 1_000_000_000

# Receive-time margins read around an episode. Messages reach the recorder after their header
# stamp, sometimes seconds later when the recorder falls behind on a loaded machine (up to about
# 5 s was seen in the live recorder test on a loaded 2-core machine); a little before START covers
# a stamp slightly ahead of the recorder's clock.
READ_MARGIN_BEFORE_NS = 500_000_000
READ_MARGIN_NS = 5_000_000_000
# A stream's header stamps are on the recorder's clock when, in the median, they are at most
# this far ahead of the receive time (clocks of two hosts a little apart) and at most
# READ_MARGIN_NS behind it (the recorder lagging). Outside that window the stamps come from
# another clock (sim time, a robot clock never synchronised) and the stream is aligned on its
# receive time instead. A lagging recorder must not switch clocks: its receive times are late.
CLOCK_AHEAD_NS = 1_000_000_000
TAIL_NS = 500_000_000  # stamps this far past STOP: the stream has nothing more for the episode


def choose_times(receive_ns: np.ndarray, header_ns: np.ndarray, config: ConvertConfig) -> tuple[np.ndarray, str]:
    """The stamps one stream is aligned on, and which clock that is (docs/data.md "Clocks")."""
    if config.time_source == "receive" or receive_ns.size == 0:
        return receive_ns, "receive"
    if np.any(header_ns == 0):
        return receive_ns, "receive (zero header stamps)"
    offset = float(np.median(header_ns - receive_ns))  # > 0: stamps ahead; < 0: received late
    if offset > CLOCK_AHEAD_NS or offset < -READ_MARGIN_NS:
        return receive_ns, f"receive (header clock off by {offset / NS_PER_S:.1f} s)"
    return header_ns, "header"


def near(receive_ns: int, header_ns: int, lo: int, hi: int) -> bool:
    """Whether a message may be near [lo, hi] on whichever clock its stream is aligned on."""
    return lo <= receive_ns <= hi or (header_ns != 0 and lo <= header_ns <= hi)


def seconds_to_ns(seconds: float) -> int:
    return int(seconds * NS_PER_S)
