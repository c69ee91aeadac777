"""Export of the action expert: export -> load -> sample round trips on a tiny checkpoint (ONNX
and torch.export), fp32 parity, a bounded int8 error, onnxruntime's CUDA path (skipped without
one), and clear one-line errors for corrupt or mismatched exports."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from psi0_ros.cli import main
from psi0_ros.policy.checkpoint import CONFIG_FILE, load_checkpoint
from psi0_ros.policy.config import expert_preset
from psi0_ros.policy.export import PARITY_TOLERANCE, checkpoint_hashes, export_checkpoint
from psi0_ros.policy.exported_program import PROGRAM_FILE, ProgramExpert
from psi0_ros.policy.interface import ActionPrefix, Observation, Policy
from psi0_ros.policy.mmdit import Conditioning
from psi0_ros.policy.onnx_expert import EXPORT_FILE, MODEL_FILE, PARITY_FILE, ExportError, OnnxExpert, load_export
from psi0_ros.policy.tiny import tiny_policy_config, write_tiny_checkpoint

PARITY_OBSERVATIONS = 4


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("export")
    checkpoint = write_tiny_checkpoint(root / "checkpoint", seed=3, with_vlm=False)
    fp32 = root / "fp32"
    export_checkpoint(checkpoint, fp32, precision="fp32", parity_observations=PARITY_OBSERVATIONS)
    int8 = root / "int8"
    export_checkpoint(
        checkpoint, int8, precision="int8", parity_observations=PARITY_OBSERVATIONS, fp32_graph=fp32 / MODEL_FILE
    )
    program = root / "program"
    export_checkpoint(checkpoint, program, "exported-program", parity_observations=PARITY_OBSERVATIONS)
    return {"root": root, "checkpoint": checkpoint, "fp32": fp32, "int8": int8, "program": program}


def _observation(seed: int = 0, tokens: int = 24) -> Observation:
    rng = np.random.default_rng(seed)
    mask = np.ones(tokens, dtype=bool)
    mask[-5:] = False
    return Observation(
        state=rng.uniform(-0.5, 0.5, 32).astype(np.float32),
        vlm_features=rng.normal(size=(tokens, 64)).astype(np.float32),
        vlm_mask=mask,
    )


def _copy(source, target):
    shutil.copytree(source, target)
    return target


def test_export_directory_describes_itself(exports):
    document = json.loads((exports["fp32"] / EXPORT_FILE).read_text())
    assert document["export_format"] == "onnx" and document["precision"] == "fp32"
    assert [i["name"] for i in document["inputs"]] == [
        "noisy_actions",
        "sigma",
        "prefix_mask",
        "vlm_features",
        "vlm_mask",
        "state",
    ]
    assert document["inputs"][0]["shape"] == ["batch", 16, 36]
    assert document["outputs"] == [{"name": "velocity", "dtype": "float32", "shape": ["batch", 16, 36]}]
    assert document["source"]["sha256"] == checkpoint_hashes(exports["checkpoint"])["sha256"]
    assert set(document["files"]) == {MODEL_FILE, MODEL_FILE + ".data"}  # fp32 weights in external data
    for name in (CONFIG_FILE, "normalization.json", PARITY_FILE):
        assert (exports["fp32"] / name).is_file()
    int8 = json.loads((exports["int8"] / EXPORT_FILE).read_text())
    assert int8["precision"] == "int8" and set(int8["files"]) == {MODEL_FILE}
    assert int8["model_bytes"] < 0.6 * document["model_bytes"]


def test_fp32_export_samples_the_same_chunks_as_eager(exports):
    parity = json.loads((exports["fp32"] / PARITY_FILE).read_text())
    assert parity["fp32"]["ok"] and parity["fp32"]["max_abs_normalized"] <= PARITY_TOLERANCE
    assert parity["with_prefix"] > 0  # the held RTC prefix path was compared too

    eager = Policy.from_checkpoint(exports["checkpoint"], load_vlm=False, seed=7)
    onnx = Policy.from_checkpoint(exports["fp32"], load_vlm=False, seed=7, backend="onnxruntime")
    assert isinstance(onnx.expert, OnnxExpert) and onnx.config == eager.config
    observation = _observation()
    assert np.abs(onnx.infer_normalized(observation) - eager.infer_normalized(observation)).max() <= PARITY_TOLERANCE
    first = onnx.infer(observation)
    prefix = ActionPrefix(actions=first[6:], delay=3)
    eager.reset()
    onnx.reset()  # the same noise for both again
    eager_chunk, onnx_chunk = eager.infer(observation, prefix), onnx.infer(observation, prefix)
    assert onnx_chunk.shape == (16, 36)
    assert np.array_equal(onnx_chunk[:3], first[6:9])  # the held prefix, exactly
    assert np.abs(onnx_chunk - eager_chunk).max() <= 1e-3  # physical units: normalised error x range


def test_dynamic_batch_tokens_and_per_token_sigma(exports):
    """One graph call for a batch of 3 with 40 tokens, padding and a clean prefix per sample,
    against ActionExpert.forward's own per-token path."""
    checkpoint = load_checkpoint(exports["checkpoint"])
    expert = OnnxExpert.from_export(exports["fp32"], checkpoint.config.expert)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 16, 36, generator=generator)
    sigma = torch.rand(3, generator=generator)[:, None].expand(3, 16).clone()
    sigma[0, :4] = 0.0
    sigma[2, :1] = 0.0
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[1, 30:] = False
    cond = Conditioning(torch.randn(3, 40, 64, generator=generator), mask, torch.randn(3, 36, generator=generator))
    with torch.no_grad():
        reference = checkpoint.expert(x, sigma, cond)
    assert (expert(x, sigma, cond) - reference).abs().max() <= PARITY_TOLERANCE
    with pytest.raises(ValueError, match="one noise level per sample"):
        expert(x, torch.rand(3, 16, generator=generator), cond)


def test_int8_error_is_bounded(exports):
    """int8 weights (per tensor) with activations quantised to 8 bits per call err by about one
    part in a few hundred per matrix product; through the tiny expert's few layers and 4 Euler
    steps that stays within a few percent of the [-1, 1] range. Bounds: at most 0.05 normalised
    (measured ~1e-3), and on each arm a p99 error under 5% of the median gap between two eager
    chunks drawn with different noise (the sampler's own spread; measured < 1%)."""
    parity = json.loads((exports["int8"] / PARITY_FILE).read_text())
    assert parity["fp32"]["ok"]
    int8 = parity["int8"]
    assert 0 < int8["max_abs_normalized"] <= 0.05
    for arm in ("left_arm", "right_arm"):
        error = int8["arm_error_rad"][arm]
        assert error["median"] <= error["p99"] <= error["max"]
        assert error["p99"] <= 0.05 * parity["noise_spread"]["arm_error_rad"][arm]["median"]
    onnx = Policy.from_checkpoint(exports["int8"], load_vlm=False, backend="onnxruntime")
    assert onnx.expert.precision == "int8"
    assert np.isfinite(onnx.infer(_observation())).all()


def test_cli_exports_and_verifies(exports, capsys):
    out = exports["root"] / "cli"
    code = main(["export", "--checkpoint", str(exports["checkpoint"]), "--out", str(out), "--parity-observations", "1"])
    assert code == 0 and (out / EXPORT_FILE).is_file()
    assert main(["export", "--verify", str(out), "--checkpoint", str(exports["checkpoint"])]) == 0
    assert "OK" in capsys.readouterr().out


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("psi0 export: error:"), captured.err
    return lines[0]


def test_corrupted_onnx_is_one_clear_error(exports, tmp_path, capsys):
    broken = _copy(exports["int8"], tmp_path / "broken")
    model = broken / MODEL_FILE
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    assert "corrupt" in _one_line_error(capsys, ["export", "--verify", str(broken)])
    # the graph itself, with no export.json hashes in front of it
    config = load_checkpoint(exports["checkpoint"]).config
    with pytest.raises(ExportError, match="not a readable ONNX model"):
        OnnxExpert(model, config.expert)


def test_mismatched_export_is_one_clear_error(exports, tmp_path, capsys):
    # an export whose config.json no longer matches its graph
    edited = _copy(exports["int8"], tmp_path / "edited")
    document = json.loads((edited / CONFIG_FILE).read_text())
    document["policy"]["expert"]["horizon"] = 12
    (edited / CONFIG_FILE).write_text(json.dumps(document))
    with pytest.raises(ExportError, match="noisy_actions"):
        Policy.from_checkpoint(edited, load_vlm=False, backend="onnxruntime")
    assert "does not match" in _one_line_error(capsys, ["export", "--verify", str(edited)])

    # an export checked against a checkpoint of another shape, and of the same shape but other weights
    config = tiny_policy_config()
    other_shape = dataclasses.replace(config, expert=expert_preset("tiny", horizon=12))
    shaped = write_tiny_checkpoint(tmp_path / "other_shape", seed=3, with_vlm=False, config=other_shape)
    line = _one_line_error(capsys, ["export", "--verify", str(exports["int8"]), "--checkpoint", str(shaped)])
    assert "does not match the expert config" in line
    weights = write_tiny_checkpoint(tmp_path / "other_weights", seed=4, with_vlm=False)
    line = _one_line_error(capsys, ["export", "--verify", str(exports["int8"]), "--checkpoint", str(weights)])
    assert "was not made from checkpoint" in line


def test_not_an_export_and_guidance_are_clear_errors(exports, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="not an export directory"):
        Policy.from_checkpoint(exports["checkpoint"], load_vlm=False, backend="onnxruntime")
    with pytest.raises(ValueError, match="guidance"):
        Policy.from_checkpoint(exports["fp32"], load_vlm=False, backend="onnxruntime", rtc_mode="guidance")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    argv = ["export", "--checkpoint", str(exports["checkpoint"]), "--out", str(occupied)]
    assert "not an export directory" in _one_line_error(capsys, argv)
    assert (occupied / "notes.txt").read_text() == "mine"


def test_exported_program_samples_the_same_chunks_as_eager(exports):
    """torch.export round trip: model.pt2 in a self-describing directory, served by the
    exported_program backend with the same chunks (and held prefix) as eager PyTorch."""
    document = json.loads((exports["program"] / EXPORT_FILE).read_text())
    assert document["export_format"] == "exported-program" and document["precision"] == "fp32"
    assert set(document["files"]) == {PROGRAM_FILE} and document["opset"] is None
    parity = json.loads((exports["program"] / PARITY_FILE).read_text())
    assert parity["fp32"]["ok"] and parity["export_format"] == "exported-program" and parity["with_prefix"] > 0

    eager = Policy.from_checkpoint(exports["checkpoint"], load_vlm=False, seed=5)
    program = Policy.from_checkpoint(exports["program"], load_vlm=False, seed=5, backend="exported_program")
    assert isinstance(program.expert, ProgramExpert) and program.config == eager.config
    observation = _observation(seed=2, tokens=57)  # another token count than the trace's 20
    assert np.abs(program.infer_normalized(observation) - eager.infer_normalized(observation)).max() <= PARITY_TOLERANCE
    first = program.infer(observation)
    prefix = ActionPrefix(actions=first[5:], delay=2)
    eager.reset()
    program.reset()
    held = program.infer(observation, prefix)
    assert np.array_equal(held[:2], first[5:7])
    assert np.abs(held - eager.infer(observation, prefix)).max() <= 1e-3
    assert main(["export", "--verify", str(exports["program"]), "--checkpoint", str(exports["checkpoint"])]) == 0


def test_an_export_served_by_the_other_backend_is_one_clear_error(exports, tmp_path, capsys):
    with pytest.raises(ExportError, match="is exported-program: serve it with backend 'exported_program'"):
        Policy.from_checkpoint(exports["program"], load_vlm=False, backend="onnxruntime")
    with pytest.raises(ExportError, match="is onnx: serve it with backend 'onnxruntime'"):
        Policy.from_checkpoint(exports["fp32"], load_vlm=False, backend="exported_program")
    with pytest.raises(ValueError, match="torch_compile applies to backend 'torch'"):
        Policy.from_checkpoint(exports["fp32"], load_vlm=False, backend="onnxruntime", torch_compile=True)
    with pytest.raises(ValueError, match="backend must be one of"):
        Policy.from_checkpoint(exports["fp32"], load_vlm=False, backend="tensorrt")
    # a truncated program, behind its export.json and on its own
    broken = _copy(exports["program"], tmp_path / "broken")
    model = broken / PROGRAM_FILE
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    assert "corrupt" in _one_line_error(capsys, ["export", "--verify", str(broken)])
    config = load_checkpoint(exports["checkpoint"]).config
    with pytest.raises(ExportError, match="not a readable exported program"):
        ProgramExpert(model, config.expert)
    # a program checked against a checkpoint of another horizon
    shaped = write_tiny_checkpoint(
        tmp_path / "other",
        seed=3,
        with_vlm=False,
        config=dataclasses.replace(config, expert=expert_preset("tiny", horizon=12)),
    )
    line = _one_line_error(capsys, ["export", "--verify", str(exports["program"]), "--checkpoint", str(shaped)])
    assert "does not match the expert config" in line
    with pytest.raises(ExportError, match="noisy_actions"):
        ProgramExpert(exports["program"] / PROGRAM_FILE, load_checkpoint(shaped).config.expert)


def test_a_cuda_device_without_onnxruntime_gpu_is_a_clear_error(exports):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider (test_onnxruntime_cuda_matches_the_cpu runs)")
    with pytest.raises(ExportError, match="needs onnxruntime's CUDAExecutionProvider"):
        Policy.from_checkpoint(exports["fp32"], device="cuda", load_vlm=False, backend="onnxruntime")
    with pytest.raises(ExportError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        load_export(exports["fp32"], device="tpu")


@pytest.mark.gpu
def test_onnxruntime_cuda_matches_the_cpu(exports):
    """The same command on a CUDA machine: onnxruntime's CUDA (and TensorRT, where installed)
    provider runs the graph. Skipped here: this onnxruntime is the CPU build."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"needs onnxruntime-gpu with a CUDA GPU; this onnxruntime has {ort.get_available_providers()}")
    cpu = Policy.from_checkpoint(exports["fp32"], load_vlm=False, backend="onnxruntime")
    gpu = Policy.from_checkpoint(exports["fp32"], device="cuda", load_vlm=False, backend="onnxruntime")
    assert "CUDAExecutionProvider" in gpu.expert.providers
    observation = _observation()
    assert np.abs(gpu.infer_normalized(observation) - cpu.infer_normalized(observation)).max() <= 1e-3


@pytest.mark.gpu
def test_exported_program_on_cuda_matches_the_cpu(exports):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)")
    cpu = Policy.from_checkpoint(exports["program"], load_vlm=False, backend="exported_program")
    gpu = Policy.from_checkpoint(exports["program"], device="cuda", load_vlm=False, backend="exported_program")
    observation = _observation()
    assert np.abs(gpu.infer_normalized(observation) - cpu.infer_normalized(observation)).max() <= 1e-3


def test_parity_on_recorded_observations(exports, tmp_path, capsys):
    """parity.json over recorded episodes: their states, their frames through the checkpoint's
    VLM, the recorded actions as held prefixes; the int8 bound holds there too."""
    from training import synthetic

    episodes = tmp_path / "episodes"
    synthetic.write_episodes(episodes, episodes=2, frames=12, size=(32, 32))
    checkpoint = write_tiny_checkpoint(tmp_path / "with_vlm", seed=3)
    out = tmp_path / "recorded"
    document = export_checkpoint(
        checkpoint,
        out,
        precision="int8",
        parity_observations=4,
        fp32_graph=exports["fp32"] / MODEL_FILE,
        observations=[episodes],
    )
    parity = document["parity"]
    assert parity["observations_from"] == [str(episodes.resolve())] and parity["observations"] == 4
    assert parity["with_prefix"] >= 1 and parity["fp32"]["ok"]  # not on a frame with no action after it
    assert 0 < parity["int8"]["max_abs_normalized"] <= 0.05
    # tokens of a 32x32 frame and the prompt, not the random cases' 16-128
    features, _ = Policy.from_checkpoint(checkpoint).encode(np.zeros((32, 32, 3), np.uint8), "x")
    assert parity["tokens"][0] > 0 and parity["tokens"][1] < len(features) + 64
    argv = ["export", "--checkpoint", str(exports["checkpoint"]), "--out", str(tmp_path / "none")]
    capsys.readouterr()  # the VLM's loading progress above
    assert "needs the checkpoint's VLM" in _one_line_error(capsys, argv + ["--observations", str(episodes)])
