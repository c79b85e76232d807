"""The ``subobject-vlm`` command line: one module per command (``NAME``, ``HELP``, ``add_arguments``, ``run``),
as transformers' ``commands/``. Each imports what it runs inside ``run``, so ``--help`` loads no torch."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = (
    "segment",
    "boundary",
    "eval_bsds",
    "train_boundary",
    "convert",
    "train",
    "compare_tokenizers",
    "precompute",
    "precompute_merge",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="subobject-vlm", description="Subobject-level image tokenization.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        command = importlib.import_module(f".{name}", __name__)
        child = sub.add_parser(
            command.NAME,
            help=command.HELP,
            description=getattr(command, "DESCRIPTION", command.HELP),
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        command.add_arguments(child)
        child.set_defaults(func=command.run)
    return parser


def run_as_script(module: str, argv: list[str] | None = None) -> int:
    """One command as a script, ``python -m subobject_vlm.commands.MODULE ...`` (what torchrun launches)."""
    command = importlib.import_module(f".{module}", __name__)
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}.{module}", description=command.HELP)
    command.add_arguments(parser)
    parser.set_defaults(func=command.run)
    return _run(parser, argv)


def main(argv: list[str] | None = None) -> int:
    return _run(build_parser(), argv)


def _run(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv`` and run its command: a bad option or input is one clear line and exit status 2."""
    args = parser.parse_args(argv)
    if getattr(args, "max_tokens", None) is not None and args.max_tokens < 1:
        parser.error("--max-tokens must be a positive integer")
    try:
        return args.func(args)
    except (ValueError, OSError) as error:  # bad model name, unreadable checkpoint, ...: one clear line
        print(f"error: {error}", file=sys.stderr)
        return 2


__all__ = ["COMMANDS", "build_parser", "main", "run_as_script"]
