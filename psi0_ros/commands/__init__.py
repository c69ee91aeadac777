"""Subcommands of `psi0` (see psi0_ros.cli): one module each."""
