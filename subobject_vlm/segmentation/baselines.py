"""Baseline tokenizers with the same output as EPOC: ``(H, W)`` int32 label maps, ids ``0..n-1`` by area.

Each takes ``num_tokens`` and returns exactly ``min(num_tokens, H * W)`` regions, so tokenizers can be
compared at equal per-image token counts: SLIC and Felzenszwalb over-segment, then the excess is merged
smallest region first across the weakest colour-gradient border (no pixel is dropped).
"""

from __future__ import annotations

import numpy as np

from .gradient import gradient_boundary_probs
from .regions import merge_regions, relabel_by_area
from .settings import BASELINES


def _check_num_tokens(num_tokens: int, height: int, width: int) -> int:
    if int(num_tokens) < 1:
        raise ValueError(f"num_tokens must be a positive integer, got {num_tokens}")
    return min(int(num_tokens), height * width)


def patch_grid(height: int, width: int, num_tokens: int = 256) -> np.ndarray:
    """A grid of exactly ``num_tokens`` near-square patches over an ``height x width`` image.

    Rows of patches are chosen so cells are as square as possible; when ``num_tokens`` does not factor,
    the first rows get one patch more. Returns an ``(H, W)`` int32 label map in area order.
    """
    num_tokens = _check_num_tokens(num_tokens, height, width)
    rows = int(np.clip(round(np.sqrt(num_tokens * height / width)), 1, min(height, num_tokens)))
    while -(-num_tokens // rows) > width:  # ceil(num_tokens / rows) patches must fit in a row
        rows += 1
    per_row = num_tokens // rows + (np.arange(rows) < num_tokens % rows)  # (rows,) patches in each row
    offsets = np.concatenate([[0], np.cumsum(per_row)[:-1]])  # (rows,) first id of each row
    row = (np.arange(height) * rows) // height  # (H,) row index of each pixel row
    cols = per_row[row][:, None]  # (H, 1) patches in that row
    col = (np.arange(width)[None, :] * cols) // width  # (H, W)
    return relabel_by_area(offsets[row][:, None] + col)


def _merge_to_count(label_map: np.ndarray, image: np.ndarray, num_tokens: int) -> np.ndarray:
    label_map = relabel_by_area(label_map)
    if label_map.max() + 1 <= num_tokens:
        return label_map
    return merge_regions(
        label_map, gradient_boundary_probs(image), max_regions=num_tokens, order="smallest_region"
    )


def slic(image: np.ndarray, num_tokens: int = 256, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels (scikit-image) with exactly ``num_tokens`` regions.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
    """
    from skimage.segmentation import slic as skimage_slic

    height, width = image.shape[:2]
    num_tokens = _check_num_tokens(num_tokens, height, width)
    request = num_tokens
    for _ in range(6):  # SLIC returns roughly the requested count; ask for more until we have enough
        labels = skimage_slic(image, n_segments=request, compactness=compactness, start_label=0)
        count = int(labels.max()) + 1
        if count >= num_tokens or request >= height * width:
            break
        request = min(height * width, int(request * num_tokens / max(count, 1) * 1.2) + 1)
    if labels.max() + 1 < num_tokens:  # still short (tiny images): fall back to a grid refinement
        return patch_grid(height, width, num_tokens)
    return _merge_to_count(labels, image, num_tokens)


def felzenszwalb(
    image: np.ndarray, num_tokens: int = 256, scale: float = 100.0, sigma: float = 0.8
) -> np.ndarray:
    """Felzenszwalb-Huttenlocher graph segmentation (scikit-image) with exactly ``num_tokens`` regions.

    ``min_size`` controls the count: it is searched (bisection) for the largest value that still gives
    at least ``num_tokens`` regions, then the excess is merged. (Searching ``scale`` instead gives one giant
    region plus slivers at small budgets.)
    """
    from skimage.segmentation import felzenszwalb as skimage_felzenszwalb

    height, width = image.shape[:2]
    num_tokens = _check_num_tokens(num_tokens, height, width)
    low, high = 1, max(2, (height * width) // num_tokens)
    best = skimage_felzenszwalb(image, scale=scale, sigma=sigma, min_size=low)
    if best.max() + 1 < num_tokens:  # even the finest setting is short (tiny images)
        return patch_grid(height, width, num_tokens)
    while high - low > max(1, low // 8):  # count falls as min_size grows
        middle = (low + high) // 2
        labels = skimage_felzenszwalb(image, scale=scale, sigma=sigma, min_size=middle)
        if labels.max() + 1 >= num_tokens:
            best, low = labels, middle
        else:
            high = middle
    return _merge_to_count(best, image, num_tokens)


def run_baseline(name: str, image: np.ndarray, num_tokens: int = 256) -> np.ndarray:
    """Dispatch by name: ``patch``, ``slic`` or ``felzenszwalb``."""
    if name == "patch":
        return patch_grid(image.shape[0], image.shape[1], num_tokens)
    if name == "slic":
        return slic(image, num_tokens)
    if name == "felzenszwalb":
        return felzenszwalb(image, num_tokens)
    raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")


__all__ = ["BASELINES", "felzenszwalb", "patch_grid", "run_baseline", "slic"]
