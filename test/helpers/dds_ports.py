"""A cyclonedds domain for a test's own robot-side peer whose ports no socket holds now.

cyclonedds maps domain d to UDP ports 7400 + 250 d + 0..23 (discovery and data, multicast and
per participant). From d 102 on these lie in the kernel's ephemeral range (32768-60999), where any
process's socket may have taken one; a peer on that domain then fails to bind ("address in use")."""

from __future__ import annotations

import socket

PORTS_PER_DOMAIN = 24


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def free_domain(low: int, span: int, start: int) -> int:
    """The first domain of low..low+span-1, from low + start % span on (wrapping), whose ports are
    free now; the one at `start` if none is."""
    for step in range(span):
        domain = low + (start + step) % span
        if all(udp_port_free(7400 + 250 * domain + i) for i in range(PORTS_PER_DOMAIN)):
            return domain
    return low + start % span
