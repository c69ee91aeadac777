"""`psi0 export`: the action expert of a checkpoint as an ONNX graph (fp32 or int8 weights), with
a parity report; `psi0 export --verify DIR` loads an export and samples one chunk from it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "export"
HELP = "export a checkpoint's action expert to ONNX (fp32 or int8) with a parity report, or verify an export"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, help="the checkpoint directory to export (or to verify against)")
    parser.add_argument("--out", type=Path, help="the export directory to write")
    parser.add_argument("--format", dest="export_format", default="onnx", choices=["onnx"], help="export format")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "int8"], help="weights: fp32 or int8")
    parser.add_argument("--parity-observations", type=int, default=8, help="random observations in parity.json")
    parser.add_argument("--max-tokens", type=int, default=512, help="most VLM tokens the graph accepts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the parity observations and noise")
    parser.add_argument(
        "--verify", type=Path, metavar="EXPORT_DIR", help="load an export, check it (and against --checkpoint), sample"
    )


def _verify(directory: Path, checkpoint: Path | None) -> str:
    import numpy as np

    from psi0_ros.policy.checkpoint import read_config
    from psi0_ros.policy.export import checkpoint_hashes
    from psi0_ros.policy.interface import Observation, Policy
    from psi0_ros.policy.onnx_expert import ExportError, OnnxExpert, read_export

    document = read_export(directory)
    if checkpoint is not None:
        config, _ = read_config(checkpoint)
        OnnxExpert.from_export(directory, config.expert)  # shapes against that checkpoint's config
        if document["source"]["sha256"] != checkpoint_hashes(checkpoint)["sha256"]:
            raise ExportError(
                f"export {directory} was not made from checkpoint {checkpoint} (its files' sha256 differ)"
            )
    policy = Policy.from_checkpoint(directory, load_vlm=False, backend="onnxruntime")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(32, policy.config.expert.vlm_dim)).astype(np.float32)
    chunk = policy.infer(Observation(state=np.zeros(32, np.float32), vlm_features=features))
    return f"OK {directory}: {document['precision']} {document['export_format']}, chunk {chunk.shape}, finite"


def run(args: argparse.Namespace) -> int:
    from psi0_ros.policy.checkpoint import CheckpointError
    from psi0_ros.policy.onnx_expert import ExportError

    try:
        if args.verify is not None:
            print(_verify(args.verify, args.checkpoint))
            return 0
        if args.checkpoint is None or args.out is None:
            raise ValueError("give --checkpoint and --out (or --verify EXPORT_DIR)")
        from psi0_ros.policy.export import export_checkpoint

        document = export_checkpoint(
            args.checkpoint,
            args.out,
            args.export_format,
            args.precision,
            args.parity_observations,
            args.max_tokens,
            args.seed,
        )
    except (FileNotFoundError, CheckpointError, ExportError, ValueError) as err:
        print(f"psi0 export: error: {err}".splitlines()[0], file=sys.stderr)
        return 1
    parity = document["parity"]
    line = f"wrote {args.out}: {args.precision}, {document['model_bytes'] / 1e6:.1f} MB, "
    line += f"fp32 max |ONNX - eager| {parity['fp32']['max_abs_normalized']:.2g} (normalised)"
    if "int8" in parity:
        arms = parity["int8"]["arm_error_rad"]
        line += ", int8 p99 arm error " + ", ".join(f"{k} {v['p99']:.2g} rad" for k, v in arms.items())
    print(line)
    return 0
