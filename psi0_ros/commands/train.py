"""`psi0 train stage1|stage2|stage3 --preset NAME [--set key=value ...]`: the three training stages.

The stages live in the top-level `training` package (installed with psi0_ros by setup.py); this
command only hands its arguments over, importing training inside run() so that psi0_ros as a
library never depends on it. Multi-GPU: `torchrun --nproc_per_node N $(which psi0) train ...`.
"""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train Psi0: stage1 (VLM, FAST tokens), stage2 (action expert), stage3 (fine-tune on episodes)"
STAGES = ("stage1", "stage2", "stage3")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", choices=STAGES, help="which stage to train")
    parser.add_argument("--preset", default="tiny", help="named preset (psi0: the reference recipe; tiny: CPU smoke)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set run.output_dir=out --set optim.lr=3e-4 (repeatable)",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    import importlib

    entry = importlib.import_module("training.run")
    try:
        return entry.run_from_args(args)
    except (KeyError, ValueError, FileNotFoundError) as err:
        print(f"psi0 train: {err}")
        return 2
