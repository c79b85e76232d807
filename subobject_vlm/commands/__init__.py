"""The ``subobject-vlm`` command line: one module per command (``NAME``, ``HELP``, ``add_arguments``, ``run``),
as transformers' ``commands/``. Each imports what it runs inside ``run``, so ``--help`` loads no torch.

A command's ``run`` raises ``ValueError`` / ``OSError`` for a bad option or input; the one runner here prints it
as ``subobject-vlm <command>: error: ...`` (the prefix of argparse's own errors) and exits with 2, and ends a
Ctrl-C anywhere (start-up included) with one line and 130.
"""

from __future__ import annotations

import argparse
import importlib
import signal
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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help, except where there is none to show: a required option, ``None``, a flag (whose
    name says what it does)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or action.default is None or action.nargs == 0:
            return action.help or ""
        return super()._get_help_string(action)


def _add_command(parser: argparse.ArgumentParser, command) -> None:
    command.add_arguments(parser)
    parser.set_defaults(func=command.run, prog=parser.prog)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="subobject-vlm", description="Subobject-level image tokenization.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        command = importlib.import_module(f".{name}", __name__)
        child = sub.add_parser(
            command.NAME,
            help=command.HELP,
            description=getattr(command, "DESCRIPTION", command.HELP),
            formatter_class=HelpFormatter,
        )
        _add_command(child, command)
    return parser


def run_as_script(module: str, argv: list[str] | None = None) -> int:
    """One command as a script, ``python -m subobject_vlm.commands.MODULE ...`` (what torchrun launches); it
    speaks as ``subobject-vlm <command>``, its name on the command line."""
    command = importlib.import_module(f".{module}", __name__)
    parser = argparse.ArgumentParser(
        prog=f"subobject-vlm {command.NAME}", description=command.HELP, formatter_class=HelpFormatter
    )
    _add_command(parser, command)
    return _run(parser, argv)


def main(argv: list[str] | None = None) -> int:
    return _run(build_parser(), argv)


def _run(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv`` and run its command: a bad option or input is one clear line and exit status 2, Ctrl-C
    one line and 130."""
    prog = parser.prog
    try:
        args = parser.parse_args(argv)
        prog = args.prog
        return args.func(args)
    except (ValueError, OSError) as error:  # bad model name, unreadable checkpoint, ...: one clear line
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while torch or a model loads, or a second one in a loop
        print(f"{prog}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


__all__ = ["COMMANDS", "HelpFormatter", "build_parser", "main", "run_as_script"]
