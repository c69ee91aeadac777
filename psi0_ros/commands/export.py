"""`psi0 export`: the action expert of a checkpoint as an ONNX graph (fp32, fp16 or int8) or a
torch.export program (fp32, fp16, bf16), with a parity report; `psi0 export --verify DIR` loads
an export and samples one chunk from it;
`psi0 export --checkpoint BASE --merge-adapter ADAPTER --out DIR` writes an ordinary checkpoint
with a per-task LoRA adapter merged into the base's weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "export"
HELP = (
    "export a checkpoint's action expert (ONNX or torch.export, fp32/fp16/bf16/int8) with a parity report, "
    "verify an export, or merge a LoRA adapter into its base"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, help="the checkpoint directory to export (or to verify against)")
    parser.add_argument("--out", type=Path, help="the export directory to write")
    parser.add_argument(
        "--format", dest="export_format", default="onnx", choices=["onnx", "exported-program"], help="export format"
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "fp16", "bf16", "int8"],
        help="onnx: fp32 | fp16 | int8; exported-program: fp32 | fp16 | bf16 (docs/export.md)",
    )
    parser.add_argument("--parity-observations", type=int, default=8, help="observations in parity.json")
    parser.add_argument(
        "--observations",
        type=Path,
        nargs="+",
        metavar="EPISODES",
        help="recorded episodes (HDF5 files or directories) to take the parity observations from, through "
        "the checkpoint's VLM (default: random valid observations)",
    )
    parser.add_argument("--max-tokens", type=int, default=512, help="most VLM tokens the graph accepts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the parity observations and noise")
    parser.add_argument(
        "--verify", type=Path, metavar="EXPORT_DIR", help="load an export, check it (and against --checkpoint), sample"
    )
    parser.add_argument(
        "--merge-adapter",
        type=Path,
        metavar="ADAPTER_DIR",
        help="write --out as an ordinary checkpoint: the base --checkpoint with this LoRA adapter merged (docs/adapters.md)",
    )
    parser.add_argument("--copy-vlm", action="store_true", help="--merge-adapter: copy the base's VLM into --out")


def _verify(directory: Path, checkpoint: Path | None) -> str:
    import numpy as np

    from psi0_ros.policy.checkpoint import read_config
    from psi0_ros.policy.export import checkpoint_hashes
    from psi0_ros.policy.interface import Observation, Policy
    from psi0_ros.policy.onnx_expert import FORMAT_BACKENDS, ExportError, check_export, read_export

    document = read_export(directory)
    if checkpoint is not None:
        config, _ = read_config(checkpoint)
        check_export(directory, config.expert)  # shapes against that checkpoint's config
        if document["source"]["sha256"] != checkpoint_hashes(checkpoint)["sha256"]:
            raise ExportError(
                f"export {directory} was not made from checkpoint {checkpoint} (its files' sha256 differ)"
            )
    backend = FORMAT_BACKENDS.get(document.get("export_format"), "onnxruntime")
    policy = Policy.from_checkpoint(directory, load_vlm=False, backend=backend)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(32, policy.config.expert.vlm_dim)).astype(np.float32)
    chunk = policy.infer(Observation(state=np.zeros(32, np.float32), vlm_features=features))
    return f"OK {directory}: {document['precision']} {document['export_format']}, chunk {chunk.shape}, finite"


def run(args: argparse.Namespace) -> int:
    from psi0_ros.policy.adapters import AdapterError
    from psi0_ros.policy.checkpoint import CheckpointError
    from psi0_ros.policy.onnx_expert import ExportError

    try:
        if args.verify is not None:
            print(_verify(args.verify, args.checkpoint))
            return 0
        if args.merge_adapter is not None:
            from psi0_ros.policy.adapters import merge_adapter

            if args.checkpoint is None or args.out is None:
                raise ValueError("--merge-adapter needs --checkpoint BASE and --out DIR")
            merge_adapter(args.checkpoint, args.merge_adapter, args.out, copy_vlm=args.copy_vlm)
            print(f"wrote {args.out}: {args.checkpoint} with {args.merge_adapter} merged")
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
            observations=args.observations,
        )
    except (FileNotFoundError, CheckpointError, ExportError, AdapterError, ValueError) as err:
        print(f"psi0 export: error: {err}".splitlines()[0], file=sys.stderr)
        return 1
    parity = document["parity"]
    line = f"wrote {args.out}: {args.precision}, {document['model_bytes'] / 1e6:.1f} MB, "
    line += f"fp32 max |export - eager| {parity['fp32']['max_abs_normalized']:.2g} (normalised)"
    if args.precision != "fp32":
        arms = parity[args.precision]["arm_error_rad"]
        line += f", {args.precision} p99 arm error " + ", ".join(f"{k} {v['p99']:.2g} rad" for k, v in arms.items())
    print(line)
    return 0
