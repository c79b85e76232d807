"""The tokenizer options of every command that segments (``segment``, ``boundary``, ``precompute``,
``eval-bsds``), in one place: one flag, one help text and one default each, and choices from the settings' tuples.

>>> add_segmentation_arguments(parser)                  # in a command's add_arguments
>>> settings = SegmentationSettings.from_args(args)     # in its run: the options become settings, once

Every option defaults to ``None``, "not given": ``from_args`` then keeps the value of its ``base``, the settings'
own defaults (``SegmentationSettings()``) or, for ``precompute --processor``, a saved processor's. So the one
default of each option is the settings' and the help states it. Importing this module loads no torch.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Sequence
from typing import Any

from ..segmentation.settings import ASSIGN_MODES, MERGE_ORDERS, SEED_MODES, SegmentationSettings
from ._files import DTYPE_NAMES

DEFAULTS = SegmentationSettings()
_WORDS = {"true": True, "false": False, "none": None, "null": None}


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> ``(key, value)``: the value read as a Python literal (``16``, ``0.86``, ``True``,
    ``[1, 2]`` as a tuple), ``true`` / ``false`` / ``none`` in any case, or else kept as text (``cuda``). The
    ``type`` of every ``--...-option`` flag."""
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. points_per_side=16), got {text!r}")
    value = value.strip()
    if value.lower() in _WORDS:
        return key, _WORDS[value.lower()]
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return key, value
    return key, tuple(parsed) if isinstance(parsed, list) else parsed


def named_options(
    pairs: Sequence[Sequence[str]] | None, flag: str, names: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """``--flag TOKENIZER KEY=VALUE`` pairs (repeatable) -> ``{tokenizer: {key: value}}``; a tokenizer that is
    not among ``names`` (when given) or a key given two values is a ``ValueError`` naming it."""
    options: dict[str, dict[str, Any]] = {}
    for name, text in pairs or ():
        if names is not None and name not in names:
            raise ValueError(
                f"{flag} {name} {text}: {name!r} is not among the tokenizers ({', '.join(names)})"
            )
        try:
            key, value = key_value(text)
        except argparse.ArgumentTypeError as error:
            raise ValueError(f"{flag} {name}: {error}") from None
        given = options.setdefault(name, {})
        if key in given and given[key] != value:
            raise ValueError(f"{flag} {name}: {key} given twice ({given[key]!r} and {value!r})")
        given[key] = value
    return options


def add_named_option_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, of: str, note: str = ""
) -> None:
    """Add ``flag TOKENIZER KEY=VALUE`` (repeatable): an option of one of the tokenizers that ``of`` names
    (``--baselines``, ``--compare``); ``named_options`` reads the pairs."""
    parser.add_argument(
        flag,
        action="append",
        nargs=2,
        default=None,
        metavar=("TOKENIZER", "KEY=VALUE"),
        help=f"an option of one of {of}, repeatable: e.g. {flag} sam:facebook/sam-vit-base points_per_side=16{note}",
    )


def add_segmentation_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    baselines: bool = True,
    epoc: bool = True,
    max_tokens_sweep: Sequence[int] | None = None,
) -> None:
    """Add ``--model``, the boundary model's options and (``epoc``) EPOC's to ``parser`` (or an argument group).

    Args:
        baselines: whether ``--model`` may name a baseline (``False``: the command needs a boundary map).
        epoc: add EPOC's options (``--max-tokens``, ``--threshold``, ``--min-area``, ``--merge``, ``--assign``,
            ``--seeds``); ``boundary`` takes the model's only.
        max_tokens_sweep: ``--max-tokens`` takes one or more values, these by default (``eval-bsds`` sweeps it).
    """
    from ..segmentation.registry import describe_names

    parser.add_argument(
        "--model",
        default=None,
        help=f"tokenizer: {describe_names(baselines)} (default: {DEFAULTS.boundary_model})",
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="boundary model input size (default: the checkpoint's own)",
    )
    parser.add_argument(
        "--keep-aspect",
        action="store_true",
        default=None,
        help="resize keeping the aspect ratio (default: the checkpoint's choice; EdgeNet keeps it)",
    )
    parser.add_argument(
        "--pyramid-layers",
        type=int,
        default=None,
        help="extra crop-pyramid passes of the boundary model (default: 0)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device of the boundary model: cpu, cuda, cuda:N, mps, xpu (default: cpu)",
    )
    parser.add_argument(
        "--dtype",
        default=None,
        choices=DTYPE_NAMES,
        help="boundary model dtype; half precision only pays on a GPU (default: float32)",
    )
    parser.add_argument(
        "--model-option",
        action="append",
        type=key_value,
        default=None,
        metavar="KEY=VALUE",
        help="any other option of --model's tokenizer, repeatable: e.g. points_per_side=16, pred_iou_thresh=0.86, "
        "crops_n_layers=1 (sam:), score_threshold=0.7 (mask2former:, oneformer:), batch_size=8 (a boundary "
        "model); a name the tokenizer lacks is refused with the list of its options",
    )
    if not epoc:
        return
    budget = (
        "at most N tokens per image, a cap (regions are merged, never dropped); the baselines make exactly N"
    )
    if max_tokens_sweep is None:
        parser.add_argument(
            "--max-tokens", type=int, default=None, help=f"{budget} (default: {DEFAULTS.max_tokens})"
        )
    else:
        parser.add_argument(
            "--max-tokens",
            type=int,
            nargs="+",
            default=list(max_tokens_sweep),
            help=f"{budget}; one run per value",
        )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"EPOC boundary threshold (default: {DEFAULTS.threshold})",
    )
    parser.add_argument(
        "--min-area",
        type=int,
        default=None,
        help=f"merge regions smaller than this many pixels first (default: {DEFAULTS.min_area})",
    )
    parser.add_argument(
        "--merge",
        default=None,
        choices=MERGE_ORDERS,
        help=f"which regions merge first to meet --max-tokens (default: {DEFAULTS.merge})",
    )
    parser.add_argument(
        "--assign",
        default=None,
        choices=ASSIGN_MODES,
        help=f"how boundary pixels join a region: flooding the map, or the nearest seed (default: {DEFAULTS.assign})",
    )
    parser.add_argument(
        "--seeds",
        default=None,
        choices=SEED_MODES,
        help="EPOC seeds: components under the threshold, or also every regional minimum (fills the budget) "
        f"(default: {DEFAULTS.seeds})",
    )


__all__ = ["add_named_option_argument", "add_segmentation_arguments", "key_value", "named_options"]
