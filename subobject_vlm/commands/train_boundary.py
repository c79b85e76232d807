"""``subobject-vlm train-boundary --config X``: train a boundary model (DirectSAM SegFormer or EdgeNet)."""

from __future__ import annotations

import argparse

NAME = "train-boundary"
HELP = "train a boundary model (DirectSAM SegFormer or EdgeNet) from a YAML config"
DESCRIPTION = (
    "Train a boundary model with the Hugging Face Trainer. Runs unchanged under torchrun / accelerate launch. "
    "Example configs: configs/boundary_*.yaml."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML training config (see configs/boundary_*.yaml)")


def run(args: argparse.Namespace) -> int:
    """Prints the output folder; exit status 2 on a bad config or data."""
    from ..training.config import run_config_command
    from ..training.train_boundary import train_boundary

    return run_config_command(train_boundary, args.config, {})


if __name__ == "__main__":  # python -m subobject_vlm.commands.train_boundary ... (e.g. under torchrun)
    from . import run_as_script

    raise SystemExit(run_as_script("train_boundary"))
