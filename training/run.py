"""Entry point of every stage: `psi0 train stage1|stage2|stage3 --preset NAME --set key=value`,
the same under torchrun (`torchrun --nproc_per_node N -m training.run stage3 --preset psi0 ...`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from training.cli import add_arguments
from training.config import ExpertStageConfig, Stage1Config, apply_overrides, preset
from training.engine import TrainResult, train


def build_config(stage: str, preset_name: str, assignments: Sequence[str] = ()) -> Stage1Config | ExpertStageConfig:
    return apply_overrides(preset(stage, preset_name), list(assignments))


def run_stage(config: Stage1Config | ExpertStageConfig, max_steps: int | None = None) -> TrainResult:
    """Train one stage from its config (resuming from output_dir when it holds a checkpoint)."""
    if isinstance(config, Stage1Config):
        from training.stage1 import Stage1Task

        task = Stage1Task(config)
    elif config.adapter.method != "none":
        from training.adapters import AdapterTask

        task = AdapterTask(config)
    else:
        from training.expert import ExpertTask

        task = ExpertTask(config)
    return train(task, config.run, config.optim, config, max_steps=max_steps)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.run", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def run_from_args(args: argparse.Namespace) -> int:
    import json

    from training.config import to_dict

    config = build_config(args.stage, args.preset, args.sets)
    if args.print_config:
        print(json.dumps(to_dict(config), indent=1))
        return 0
    result = run_stage(config)
    if result.output is not None:
        print(
            f"{args.stage}: {result.final_step} steps, last loss {result.losses[-1] if result.losses else float('nan'):.4f}"
        )
        print(f"output: {result.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
