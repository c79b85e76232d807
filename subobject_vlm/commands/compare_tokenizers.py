"""``subobject-vlm compare-tokenizers --config X``: the token-efficiency experiment."""

from __future__ import annotations

import argparse

NAME = "compare-tokenizers"
HELP = "train the same small VLM per tokenizer and token budget; compare val perplexity and accuracy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML comparison config (configs/compare_*.yaml)")
    parser.add_argument("--output-dir", default=None, help="override the config's output_dir")
    parser.add_argument("--steps", type=int, default=None, help="override training.steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override the config's seeds")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild results.md and the figures from results.jsonl (e.g. merged from several machines)",
    )


def run(args: argparse.Namespace) -> int:
    """Prints the output folder; exit status 2 on a bad config or data."""
    from functools import partial
    from pathlib import Path

    from ..evaluation.token_efficiency import compare_tokenizers, write_report
    from ..training.config import run_config_command

    overrides = {"output_dir": args.output_dir, "training.steps": args.steps, "seeds": args.seeds}
    step = write_report if args.report_only else compare_tokenizers
    return run_config_command(partial(step, base_dir=Path(args.config).parent), args.config, overrides)


if __name__ == "__main__":  # python -m subobject_vlm.commands.compare_tokenizers ... (e.g. under torchrun)
    from . import run_as_script

    raise SystemExit(run_as_script("compare_tokenizers"))
