"""Baseline tokenizers with the same output as EPOC: ``(H, W)`` int32 label maps, ids ``0..n-1`` by area.

Each takes ``max_tokens`` (the token budget, as EPOC's) and returns exactly ``min(max_tokens, H * W)`` regions, so tokenizers can be
compared at equal per-image token counts: SLIC and Felzenszwalb over-segment, then the excess is merged
smallest region first across the weakest colour-gradient border (no pixel is dropped).
"""

from __future__ import annotations

import numpy as np

from .gradient import gradient_boundary_probs
from .regions import _merge_regions, relabel_by_area
from .registry import BASELINES
from .settings import DEFAULT_MAX_TOKENS, check_max_tokens


def _region_count(max_tokens: int | None, height: int, width: int) -> int:
    """How many regions a baseline makes: ``max_tokens`` (``DEFAULT_MAX_TOKENS`` when ``None``), at most one per
    pixel."""
    check_max_tokens(max_tokens)
    return min(DEFAULT_MAX_TOKENS if max_tokens is None else int(max_tokens), height * width)


def patch_grid(height: int, width: int, max_tokens: int | None = DEFAULT_MAX_TOKENS) -> np.ndarray:
    """A grid of exactly ``max_tokens`` near-square patches over an ``height x width`` image.

    Rows of patches are chosen so cells are as square as possible; when ``max_tokens`` does not factor,
    the first rows get one patch more. Returns an ``(H, W)`` int32 label map in area order.
    """
    count = _region_count(max_tokens, height, width)
    rows = int(np.clip(round(np.sqrt(count * height / width)), 1, min(height, count)))
    while -(-count // rows) > width:  # ceil(count / rows) patches must fit in a row
        rows += 1
    per_row = count // rows + (np.arange(rows) < count % rows)  # (rows,) patches in each row
    offsets = np.concatenate([[0], np.cumsum(per_row)[:-1]])  # (rows,) first id of each row
    row = (np.arange(height) * rows) // height  # (H,) row index of each pixel row
    cols = per_row[row][:, None]  # (H, 1) patches in that row
    col = (np.arange(width)[None, :] * cols) // width  # (H, W)
    return relabel_by_area(offsets[row][:, None] + col)


def _merge_to_count(label_map: np.ndarray, image: np.ndarray, count: int) -> np.ndarray:
    label_map = relabel_by_area(label_map)
    if label_map.max() + 1 <= count:
        return label_map
    return _merge_regions(
        label_map, gradient_boundary_probs(image), count, 0, "smallest_region", contrast=False
    )


def slic(
    image: np.ndarray, max_tokens: int | None = DEFAULT_MAX_TOKENS, compactness: float = 10.0
) -> np.ndarray:
    """SLIC superpixels (scikit-image) with exactly ``max_tokens`` regions.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
    """
    from skimage.segmentation import slic as skimage_slic

    height, width = image.shape[:2]
    count = _region_count(max_tokens, height, width)
    request = count
    for _ in range(6):  # SLIC returns roughly the requested count; ask for more until we have enough
        labels = skimage_slic(image, n_segments=request, compactness=compactness, start_label=0)
        found = int(labels.max()) + 1
        if found >= count or request >= height * width:
            break
        request = min(height * width, int(request * count / max(found, 1) * 1.2) + 1)
    if labels.max() + 1 < count:  # still short (tiny images): fall back to a grid refinement
        return patch_grid(height, width, count)
    return _merge_to_count(labels, image, count)


def felzenszwalb(
    image: np.ndarray, max_tokens: int | None = DEFAULT_MAX_TOKENS, scale: float = 100.0, sigma: float = 0.8
) -> np.ndarray:
    """Felzenszwalb-Huttenlocher graph segmentation (scikit-image) with exactly ``max_tokens`` regions.

    ``min_size`` controls the count: it is searched (bisection) for the largest value that still gives
    at least ``max_tokens`` regions, then the excess is merged. (Searching ``scale`` instead gives one giant
    region plus slivers at small budgets.)
    """
    from skimage.segmentation import felzenszwalb as skimage_felzenszwalb

    height, width = image.shape[:2]
    count = _region_count(max_tokens, height, width)
    low, high = 1, max(2, (height * width) // count)
    best = skimage_felzenszwalb(image, scale=scale, sigma=sigma, min_size=low)
    if best.max() + 1 < count:  # even the finest setting is short (tiny images)
        return patch_grid(height, width, count)
    while high - low > max(1, low // 8):  # count falls as min_size grows
        middle = (low + high) // 2
        labels = skimage_felzenszwalb(image, scale=scale, sigma=sigma, min_size=middle)
        if labels.max() + 1 >= count:
            best, low = labels, middle
        else:
            high = middle
    return _merge_to_count(best, image, count)


def run_baseline(name: str, image: np.ndarray, max_tokens: int | None = DEFAULT_MAX_TOKENS) -> np.ndarray:
    """Dispatch by name: ``patch``, ``slic`` or ``felzenszwalb``."""
    if name == "patch":
        return patch_grid(image.shape[0], image.shape[1], max_tokens)
    if name == "slic":
        return slic(image, max_tokens)
    if name == "felzenszwalb":
        return felzenszwalb(image, max_tokens)
    raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")


class BaselineTokenizer:
    """The ``LabelMapTokenizer`` of baseline ``name`` (what the registry's ``patch``, ``slic`` and
    ``felzenszwalb`` build): each image on its own, exactly ``max_tokens`` regions."""

    def __init__(self, name: str) -> None:
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")
        self.name = name

    def label_maps(self, images: list[np.ndarray], max_tokens: int | None) -> list[np.ndarray]:
        """``(H, W, 3)`` uint8 each -> ``(H, W)`` int32 label maps of ``min(max_tokens, H * W)`` regions."""
        return [run_baseline(self.name, image, max_tokens) for image in images]


__all__ = ["BASELINES", "BaselineTokenizer", "felzenszwalb", "patch_grid", "run_baseline", "slic"]
