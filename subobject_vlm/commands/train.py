"""``subobject-vlm train --config X``: LoRA fine-tuning of a SubobjectLlava from a YAML config."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "fine-tune a SubobjectLlava with LoRA from a YAML config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML training config (see configs/vlm_*.yaml)")
    parser.add_argument("--output-dir", default=None, help="override the config's output_dir")
    parser.add_argument("--max-steps", type=int, default=None, help="override training.max_steps")
    parser.add_argument(
        "--merge",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="merge the adapters into output_dir/merged after training (overrides the config)",
    )


def run(args: argparse.Namespace) -> int:
    """Prints the output folder; exit status 2 on a bad config or data."""
    from ..training.config import run_config_command
    from ..training.train_vlm import train_vlm

    overrides = {"output_dir": args.output_dir, "training.max_steps": args.max_steps, "merge": args.merge}
    return run_config_command(train_vlm, args.config, overrides)


if __name__ == "__main__":  # python -m subobject_vlm.commands.train ... (e.g. under torchrun)
    from . import run_as_script

    raise SystemExit(run_as_script("train"))
