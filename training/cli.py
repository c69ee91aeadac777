"""The arguments of a training run, shared by `psi0 train` and `python -m training.run` (torchrun).

Light on purpose (argparse only): `psi0 --help` builds this parser without importing torch.
"""

from __future__ import annotations

import argparse

STAGES = ("stage1", "stage2", "stage3")


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
