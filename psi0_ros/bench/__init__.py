"""Benchmarks behind `psi0 bench NAME`: one module per benchmark.

Each module defines HELP, configure(parser) and run(args) -> dict. Results are ratios against a
baseline measured in the same run (never absolute timings asserted in tests); the dict is
written as JSON by the bench command together with the machine it ran on.
"""
