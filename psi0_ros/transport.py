"""DDS transport defaults that suit psi0_ros's large messages.

A 640x480 rgb8 image is 0.9 MB and a VLMFeatures message 0.3-1.2 MB. With Fast DDS's default
transports (UDP + shared memory with small segments), such messages fragment and best-effort
subscribers lose them; FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (shared memory + TCP for data,
UDP only for discovery) delivered 640x480 rgb8 in ~3 ms instead of ~13 ms in our trials.
The variable is read when the DDS participant is created, so apply_transport_defaults() must run
before rclpy.init(); a value the user already set is left alone. See docs/transport.md.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

TRANSPORT_DEFAULTS: dict[str, str] = {
    "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
    "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA",
}


def apply_transport_defaults(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set each default that is not already set; return the effective values."""
    env = os.environ if environ is None else environ
    for key, value in TRANSPORT_DEFAULTS.items():
        env.setdefault(key, value)
    return {key: env[key] for key in TRANSPORT_DEFAULTS}
