"""`psi0 bench train` writes the keys the issue names, from a real (tiny) training run."""

from __future__ import annotations

import json
import math

from psi0_ros.cli import main


def test_bench_train_reports_throughput_data_wait_and_cache_speedup(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["bench", "train", "--json", str(out), "--episodes", "2", "--frames", "8", "--steps", "3"]
    assert main([*argv, "--warmup", "1", "--batch", "8", "--workers", "0", "--dir", str(tmp_path / "work")]) == 0
    results = json.loads(out.read_text())["results"]
    for key in ("samples_per_s", "samples_per_s_without_cache", "feature_cache_speedup"):
        assert math.isfinite(results[key]) and results[key] > 0, key
    assert 0.0 <= results["data_wait_fraction"] < 1.0
    assert results["feature_cache_bytes"] > 0 and results["feature_cache_frames"] == 16
    assert (tmp_path / "work" / "cached" / "feature_cache" / "features.bin").is_file()
    assert not (tmp_path / "work" / "live" / "feature_cache").exists()
