"""`psi0 ablate rtc`, the fast variant: two scheduler modes at two injected latencies, one short
episode per cell, closed loop through the real deploy graph on the MuJoCo sim, with a tiny random
checkpoint made here. Checks the mechanics (every cell ran on the same layout, the latency reached
the inference worker, the scheduler felt it, the motion and collision measures came back, the
table and plot were written); a random policy's success and smoothness mean nothing."""

from __future__ import annotations

import json

import pytest
from helpers.tiers import require

require("rclpy")
require("mujoco")
require("psi0_ros.msg", "the generated messages (make setup)")

from psi0_ros.cli import main  # noqa: E402

LATENCY_MS = 300.0  # 9 ticks at 30 Hz: beyond the tiny checkpoint's trained max delay (8, d <= 7)


def test_ablate_rtc_fast_variant(tmp_path):
    from psi0_ros.policy.tiny import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "ablate.json"
    status = main(
        [
            "ablate",
            "rtc",
            "--checkpoint",
            str(checkpoint),
            "--modes",
            "rtc,naive_async",
            "--latency-ms",
            f"0,{LATENCY_MS:g}",
            "--episodes",
            "1",
            "--max-episode-s",
            "1.5",
            "--json",
            str(out),
        ]
    )
    assert status == 0
    document = json.loads(out.read_text())
    cells = {(c["mode"], c["latency_ms"]): c for c in document["cells"]}
    assert set(cells) == {(m, lat) for m in ("rtc", "naive_async") for lat in (0.0, LATENCY_MS)}
    assert len({tuple(c["layout_seeds"]) for c in cells.values()}) == 1, "cells ran on different layouts"
    for (_mode, latency), cell in cells.items():
        assert cell["errors"] == 0 and cell["episodes"] == 1
        assert 0.0 <= cell["success_rate"] <= 1.0
        # the injected latency is inside the measured inference time, the model's own beside it
        if latency:
            assert cell["inference_p50_ms"] >= LATENCY_MS, cell
        else:
            assert cell["inference_p50_ms"] < LATENCY_MS, cell
        assert cell["chunks"] >= 2 and cell["jerk_rad_s3"] is not None and cell["junction_jump_rad"] is not None
        assert isinstance(cell["collisions"], float)
    # beyond the trained max delay, RTC clamps its prefix; at 0 ms it never needs to
    assert cells[("rtc", LATENCY_MS)]["delay_clamped"] >= 1
    assert cells[("rtc", 0.0)]["delay_clamped"] == 0
    # the queue runs dry more often when every chunk is 300 ms late
    for mode in ("rtc", "naive_async"):
        assert cells[(mode, LATENCY_MS)]["missed_ticks"] > cells[(mode, 0.0)]["missed_ticks"]
    table = out.with_suffix(".md").read_text()
    assert table.count("| rtc |") == 2 and table.count("| naive_async |") == 2
    assert out.with_suffix(".png").stat().st_size > 1000
    # the per-tick commands behind the motion figures are kept
    episode = tmp_path / "ablate_cells" / "rtc_300ms" / "episode_0000.json"
    result = json.loads(episode.read_text())
    assert result["motion"]["commanded_ticks"] > 20
    assert (tmp_path / "ablate_cells" / "rtc_300ms" / "commands_0000.npz").is_file()


def test_ablate_rtc_rejects_bad_input(tmp_path, capsys):
    from psi0_ros.policy.tiny import write_tiny_checkpoint

    out = tmp_path / "a.json"
    assert main(["ablate", "rtc", "--checkpoint", str(tmp_path / "none"), "--json", str(out)]) == 2
    assert "config.json missing" in capsys.readouterr().err
    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt", with_vlm=False)
    assert main(["ablate", "rtc", "--checkpoint", str(checkpoint), "--modes", "rtc,fast", "--json", str(out)]) == 2
    assert "unknown scheduler modes ['fast']" in capsys.readouterr().err
    assert main(["ablate", "rtc", "--checkpoint", str(checkpoint), "--latency-ms", "-5", "--json", str(out)]) == 2
    assert "latencies must be >= 0 ms" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["ablate", "rtc", "--checkpoint", str(checkpoint), "--chunk-param", "novalue", "--json", str(out)])


def test_bench_rtc_says_whether_its_junction_figures_mean_anything(tmp_path, capsys):
    from psi0_ros.policy.tiny import write_tiny_checkpoint

    out = tmp_path / "rtc.json"
    common = ["--modes", "rtc", "--latencies-ms", "100", "--ticks", "60", "--json", str(out)]
    assert main(["bench", "rtc", *common]) == 0
    assert "junction figures are not meaningful" in capsys.readouterr().err
    assert "not meaningful" in json.loads(out.read_text())["results"]["note"]
    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt", with_vlm=False)
    assert main(["bench", "rtc", "--checkpoint", str(checkpoint), *common]) == 0
    results = json.loads(out.read_text())["results"]
    assert results["policy"] == str(checkpoint) and "psi0 ablate rtc" in results["note"]
    assert results["rows"][0]["chunks"] >= 2
