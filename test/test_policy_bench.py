"""`psi0 bench policy` writes the JSON the issue asks for (values are measured, never asserted)."""

from __future__ import annotations

import json

from psi0_ros.cli import main


def test_bench_policy_writes_latency_flops_and_matmul_ratio(tmp_path):
    out = tmp_path / "policy.json"
    args = ["bench", "policy", "--presets", "tiny", "--repeats-tiny", "2", "--steps", "2", "--matmul-size", "256"]
    assert main([*args, "--obs-tokens", "20", "--no-vlm", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert abs(results["params_action_expert"] - 490e6) / 490e6 < 0.03  # the full preset, counted on meta
    tiny = results["presets"]["tiny"]
    assert tiny["chunk_ms_p50"] > 0 and tiny["chunk_ms_p99"] >= tiny["chunk_ms_p50"]
    assert tiny["flops_per_chunk"] > tiny["params"] * 20  # every weight meets about half of the 36 tokens, twice
    assert tiny["achieved_over_matmul"] > 0 and results["matmul"]["flops_per_s"] > 0
    assert tiny["rtc_training_ms_p50"] > 0 and tiny["rtc_guidance_ms_p50"] > 0
