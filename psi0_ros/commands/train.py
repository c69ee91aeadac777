"""`psi0 train stage1|stage2|stage3 --preset NAME [--set key=value ...]`: the three training stages.

The stages live in the top-level `training` package (installed with psi0_ros by setup.py); this
command only hands its arguments over (parser from training/cli.py), importing training inside
functions so that psi0_ros as a library never depends on it. Multi-GPU: `torchrun --nproc_per_node N $(which psi0) train ...`.
"""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train Psi0: stage1 (VLM, FAST tokens), stage2 (action expert), stage3 (fine-tune on episodes)"


def configure(parser: argparse.ArgumentParser) -> None:
    from training.cli import add_arguments  # argparse only: no torch at `psi0 --help`

    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from training.run import run_from_args

    try:
        return run_from_args(args)
    except (KeyError, ValueError, FileNotFoundError) as err:
        print(f"psi0 train: {err}")
        return 2
