"""The VLM's feature path does not export to ONNX (psi0_ros.policy.vlm_export says why), and
vlm_node's backend:=onnxruntime is one clear error naming that, before any model is loaded."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from psi0_ros.policy.vlm import VLMBackbone, write_tiny_vlm
from psi0_ros.policy.vlm_export import VLM_ONNX_BLOCKER, FeaturePath, check_vlm_backend, export_vlm_feature


def test_the_feature_path_fails_where_the_docs_say(tmp_path):
    """The documented failure, reproduced: torch.export (the dynamo exporter's first step) stops on
    the data-dependent split of Qwen3-VL's vision attention. When this test fails because the
    export succeeds, the VLM exports: serve it (vlm_node backend onnxruntime) and update the docs."""
    vlm = VLMBackbone.from_pretrained(write_tiny_vlm(tmp_path / "vlm", seed=0))
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    inputs = vlm.prepare([image], ["pick up the red can"])
    module = FeaturePath(vlm, inputs["image_grid_thw"])
    # the module exported is the feature vlm_node publishes
    features = module(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"])
    assert np.array_equal(features.detach().numpy(), vlm.encode([image], ["pick up the red can"]).hidden.numpy())
    with pytest.raises(Exception) as failure:
        export_vlm_feature(vlm, inputs, tmp_path / "vlm.onnx")
    text = f"{type(failure.value).__name__}: {failure.value} {failure.value.__cause__!r}"
    assert "GuardOnDataDependentSymNode" in text or "data-dependent" in text, text[:2000]
    assert "Could not guard on data-dependent expression" in text, text[:2000]


def test_onnxruntime_is_not_a_vlm_backend():
    check_vlm_backend("torch")
    with pytest.raises(ValueError, match="backend 'onnxruntime' is not available: the VLM does not export"):
        check_vlm_backend("onnxruntime")
    with pytest.raises(ValueError, match="backend must be one of"):
        check_vlm_backend("tensorrt")


def test_vlm_node_refuses_onnxruntime_in_one_line(tmp_path):
    """As a user starts it: one line naming why, exit status 1, before the (missing) checkpoint is read."""
    pytest.importorskip("rclpy")
    command = [sys.executable, "-m", "psi0_ros.nodes.vlm_node", "--ros-args"]
    command += ["-p", f"checkpoint:={tmp_path / 'missing'}", "-p", "backend:=onnxruntime"]
    process = subprocess.run(command, capture_output=True, text=True, timeout=120)
    lines = (process.stdout + process.stderr).strip().splitlines()
    assert process.returncode == 1 and len(lines) == 1, lines
    assert VLM_ONNX_BLOCKER in lines[0]
