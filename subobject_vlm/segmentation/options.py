"""EPOC's options and the token budget: their valid values, the defaults, and the one check of each; and the
one check of a tokenizer's own options (``check_tokenizer_options``).

The bottom of ``segmentation``: imports nothing of ours, so EPOC, the region merge and the baselines check
their options here without reaching up to the settings (which gather these with the tokenizer's name).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from typing import Any

ASSIGN_MODES = ("watershed", "nearest")
SEED_MODES = ("threshold", "minima")
MERGE_ORDERS = ("weakest_boundary", "smallest_region")

# The one default tokenizer budget of the processor, the CLI, precompute, convert and the demo. Chosen by
# measurement on BSDS500 (embedded EdgeNet): minima seeds fill the budget and, up to 128 tokens, beat threshold
# seeds on both boundary F and ASA (val: 127 tokens, F 0.678, ASA 0.926 against threshold seeds' 73 tokens,
# F 0.660, ASA 0.915); at 256 minima seeds trade boundary F for ASA. README "Python API" states it.
DEFAULT_MAX_TOKENS = 128
DEFAULT_SEEDS = "minima"


def check_max_tokens(max_tokens: int | None) -> None:
    """Raise ``ValueError`` unless ``max_tokens`` is a positive integer or ``None`` (the one check of the budget)."""
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral) or max_tokens < 1
    ):
        raise ValueError(f"max_tokens must be a positive integer or None, got {max_tokens!r}")


def check_epoc_options(
    threshold: float, max_tokens: int | None, min_area: int, merge: str, assign: str, seeds: str
) -> None:
    """Raise ``ValueError`` naming the first EPOC option that cannot work (the one definition of valid)."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1] (a boundary probability), got {threshold!r}")
    check_max_tokens(max_tokens)
    if isinstance(min_area, bool) or not isinstance(min_area, numbers.Integral) or min_area < 0:
        raise ValueError(f"min_area must be a non-negative integer, got {min_area!r}")
    if merge not in MERGE_ORDERS:
        raise ValueError(f"merge must be one of {MERGE_ORDERS}, got {merge!r}")
    if assign not in ASSIGN_MODES:
        raise ValueError(f"assign must be one of {ASSIGN_MODES}, got {assign!r}")
    if seeds not in SEED_MODES:
        raise ValueError(f"seeds must be one of {SEED_MODES}, got {seeds!r}")


# How any boundary model runs and what every one takes (the commands pass them to whichever is chosen): a model
# they do not apply to (the gradient model has no resolution) takes and ignores them.
BOUNDARY_MODEL_OPTIONS = ("resolution", "keep_aspect", "pyramid_layers", "device", "dtype", "batch_size")
# Where a tokenizer runs: one that runs on the CPU alone takes and ignores them.
DEVICE_OPTIONS = ("device", "dtype", "batch_size")


def check_tokenizer_options(
    tokenizer: str, options: Mapping[str, Any], known: Iterable[str], ignored: Iterable[str] = ()
) -> dict[str, Any]:
    """``options`` without the ``ignored`` ones; ``ValueError`` naming the first that is neither ``known`` nor
    ``ignored``, and listing the ``known`` ones (``tokenizer``: how the message names it, "the sam tokenizer")."""
    known, ignored = list(known), set(ignored)
    for name in options:
        if name not in known and name not in ignored:
            listed = ", ".join(known) if known else "none"
            raise ValueError(f"{tokenizer} has no option {name!r}; its options: {listed}")
    return {name: value for name, value in options.items() if name not in ignored}


__all__ = [
    "ASSIGN_MODES",
    "BOUNDARY_MODEL_OPTIONS",
    "DEVICE_OPTIONS",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_SEEDS",
    "MERGE_ORDERS",
    "SEED_MODES",
    "check_epoc_options",
    "check_max_tokens",
    "check_tokenizer_options",
]
