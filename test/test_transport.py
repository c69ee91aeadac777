"""DDS transport defaults (psi0_ros/transport.py)."""

from __future__ import annotations

from psi0_ros.transport import TRANSPORT_DEFAULTS, apply_transport_defaults


def test_defaults_are_set_where_nothing_is_set():
    env: dict[str, str] = {}
    effective = apply_transport_defaults(env)
    assert env["FASTDDS_BUILTIN_TRANSPORTS"] == "LARGE_DATA"
    assert env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
    assert effective == TRANSPORT_DEFAULTS


def test_a_users_choice_is_kept():
    env = {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4", "OTHER": "x"}
    effective = apply_transport_defaults(env)
    assert effective["FASTDDS_BUILTIN_TRANSPORTS"] == "UDPv4"
    assert env == {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4", "OTHER": "x", "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
