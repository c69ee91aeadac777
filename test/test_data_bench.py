"""`psi0 bench convert` runs end to end on a tiny bag and writes the keys the issue asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_convert_writes_its_ratios(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "convert", "--episodes", "2", "--seconds", "1", "--width", "64", "--height", "48"]
    args += ["--joint-rate", "100", "--repeat", "1", "--workers", "1", "--dir", str(tmp_path), "--json", str(out)]
    result = subprocess.run([sys.executable, "-m", "psi0_ros.cli", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert document["benchmark"] == "convert"
    results = document["results"]
    for key in ("convert_frames_per_s", "read_frames_per_s", "convert_over_read", "hdf5_bytes_over_raw_image_bytes"):
        assert results[key] > 0, key
    ratio = results["convert_frames_per_s"] / results["read_frames_per_s"]
    assert abs(results["convert_over_read"] - ratio) < 0.002
    assert results["episode_frames"] == 62 and results["episodes"] == 2
    assert results["hdf5_bytes_over_raw_image_bytes"] < 1.0
    assert list(tmp_path.iterdir()) == [out]  # the generated bag and episodes are cleaned up


def test_bench_convert_keeps_its_bag_when_asked(tmp_path):
    """--keep leaves the generated bag and the episodes in work_dir, for profiling the conversion."""
    out = tmp_path / "bench.json"
    args = ["bench", "convert", "--episodes", "1", "--seconds", "0.5", "--width", "32", "--height", "24"]
    args += ["--joint-rate", "100", "--repeat", "1", "--workers", "1", "--dir", str(tmp_path), "--keep"]
    result = subprocess.run(
        [sys.executable, "-m", "psi0_ros.cli", *args, "--json", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    work = Path(json.loads(out.read_text())["results"]["work_dir"])
    assert work.parent == tmp_path
    assert (work / "bench_bag" / "metadata.yaml").is_file()
    assert len(list((work / "episodes").glob("*.hdf5"))) == 1
