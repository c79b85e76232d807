"""EPOC's options and the token budget: their valid values, the defaults, and the one check of each.

The bottom of ``segmentation``: imports nothing of ours, so EPOC, the region merge and the baselines check
their options here without reaching up to the settings (which gather these with the tokenizer's name).
"""

from __future__ import annotations

import numbers

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


__all__ = [
    "ASSIGN_MODES",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_SEEDS",
    "MERGE_ORDERS",
    "SEED_MODES",
    "check_epoc_options",
    "check_max_tokens",
]
