"""Masks -> label map: how a mask model's output (SAM's automatic masks, a panoptic model's segments) becomes a
tokenizer's label map under the package's rules (every pixel in exactly one region, ids area-descending, at
most ``max_tokens`` regions, nothing dropped).

>>> label_map = masks_to_label_map(masks, scores, max_tokens=64)   # masks (N, H, W) bool -> (H, W) int32

The rules, in order:

1. **Overlaps: smaller masks on top.** A pixel covered by several masks goes to the smallest of them (ties: the
   higher score, then the lower index). SAM's automatic masks nest (whole, part, subpart): painting the small
   ones on top keeps every part visible and leaves the whole object its remaining pixels, where highest score
   first would let one confident whole-object mask hide all its parts. A mask whose every pixel is taken by
   smaller masks leaves no region of its own: its pixels are its parts' tokens.
2. **Holes: uncovered pixels are regions too.** Pixels no mask covers form 4-connected components, and each
   component becomes a region of its own. A component smaller than ``min_hole_area`` pixels (default: one
   ten-thousandth of the image; a sliver between two masks that both stopped short) joins instead the region of
   the nearest covered pixel (Euclidean distance, as EPOC's ``assign="nearest"``). With no mask at all the
   image is one region.
3. **Budget: merge, never drop.** While more than ``max_tokens`` regions remain, the two regions whose shared
   border is weakest merge (``regions.merge_regions``, weakest boundary first, as EPOC). A border's strength is
   the mean, along it, of the masks' own edge evidence: at each pixel, the summed score of the masks whose edge
   passes there (both pixels either side of a mask's edge count), over the largest such sum. A border that
   many confident masks draw (an object outline, drawn by the object's mask and by its parts') outlives one
   that a single weak mask draws. ``boundary_probs`` replaces that evidence with any boundary map (e.g.
   ``gradient.gradient_boundary_probs(image)``).
4. **Ids** ``0..n-1`` in area-descending order (``regions.relabel_by_area``).

Cost: painting and the edge evidence are whole-array passes over ``(N, chunk)`` blocks, O(N * H * W) time and
O(H * W + N * chunk) memory beyond the masks themselves (chunks of at most 2**24 elements); no loop over pixels,
a loop over blocks of masks or pixels only. The merge costs what ``merge_regions`` does.
"""

from __future__ import annotations

import numbers

import cv2
import numpy as np

from .epoc import _assign_nearest
from .options import check_max_tokens
from .regions import _as_probs_of, _merge_regions, relabel_by_area

_BLOCK = 1 << 24  # elements of one (masks x pixels) block: 16 MB of bool


def default_min_hole_area(height: int, width: int) -> int:
    """The default ``min_hole_area``: one ten-thousandth of the image (105 pixels at 1024²), at least 1 (no
    hole is then a sliver)."""
    return max(1, (height * width) // 10_000)


def _check_masks(masks, scores) -> tuple[np.ndarray, np.ndarray]:
    """``masks`` as an ``(N, H, W)`` bool array and ``scores`` as ``(N,)`` float64 (ones when ``None``)."""
    if hasattr(masks, "detach"):  # torch.Tensor
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be an (N, H, W) array, got shape {masks.shape}")
    if masks.shape[1] == 0 or masks.shape[2] == 0:
        raise ValueError(f"masks have an empty image size (shape {masks.shape})")
    if masks.dtype != bool:
        if not (np.issubdtype(masks.dtype, np.integer) or np.issubdtype(masks.dtype, np.floating)):
            raise TypeError(f"masks must be bool (or 0/1 numbers), got dtype {masks.dtype}")
        masks = masks != 0
    if scores is None:
        scores = np.ones(len(masks))
    else:
        if hasattr(scores, "detach"):
            scores = scores.detach().float().cpu().numpy()
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape != (len(masks),):
            raise ValueError(f"scores must hold one number per mask ({len(masks)}), got shape {scores.shape}")
        if not np.isfinite(scores).all():
            raise ValueError(f"scores must be finite, got {scores[~np.isfinite(scores)][:3].tolist()}")
    return masks, scores


def paint_masks(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rule 1: ``(H, W)`` int32 map of the mask owning each pixel (its index in ``masks``), ``-1`` where none.

    Priority order: area ascending, then score descending, then index. Each block of pixels takes the first
    covering mask in that order (``argmax`` over the priority-ordered block).
    """
    count, height, width = masks.shape
    owner = np.full(height * width, -1, dtype=np.int32)  # (HW,)
    if count == 0:
        return owner.reshape(height, width)
    flat = masks.reshape(count, height * width)  # (N, HW) view
    areas = np.count_nonzero(flat, axis=1)  # (N,)
    order = np.lexsort((np.arange(count), -scores, areas)).astype(np.int32)  # (N,) highest priority first
    step = max(1, _BLOCK // count)
    for start in range(0, height * width, step):  # blocks of pixels, not pixels
        block = flat[order, start : start + step]  # (N, c) bool, rows in priority order
        first = block.argmax(axis=0)  # (c,) first covering mask (0 where none covers)
        covered = block[first, np.arange(block.shape[1])]  # (c,)
        owner[start : start + step] = np.where(covered, order[first], -1)
    return owner.reshape(height, width)


def fill_holes(owner: np.ndarray, min_hole_area: int) -> np.ndarray:
    """Rule 2: ``owner`` (``-1`` = uncovered) -> ``(H, W)`` int32 label map with every pixel labelled: each
    4-connected uncovered component becomes a new label (after the mask indices), those smaller than
    ``min_hole_area`` take the label of the nearest labelled pixel."""
    uncovered = (owner < 0).view(np.uint8)  # (H, W) uint8
    if not uncovered.any():
        return owner
    first_new = int(owner.max()) + 1  # 0 when no mask owns a pixel
    count, components = cv2.connectedComponents(uncovered, connectivity=4, ltype=cv2.CV_32S)  # 0 = covered
    areas = np.bincount(components.ravel(), minlength=count)  # (count,) areas[0]: covered pixels
    sliver = areas < min_hole_area  # (count,)
    sliver[0] = False
    if sliver[1:].all() and areas[0] == 0:  # nothing else to join: the slivers stay regions
        sliver[:] = False
    labels = np.where(uncovered.view(bool), components + (first_new - 1), owner)  # (H, W) int32
    if not sliver.any():
        return labels
    seeds = labels + 1  # (H, W) labels 1.., 0 = to assign (the slivers)
    seeds[sliver[components] & uncovered.view(bool)] = 0
    return _assign_nearest(seeds) - 1


def mask_edge_probs(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rule 3's boundary map: ``(H, W)`` float32 in [0, 1], at each pixel the summed weight of the masks whose edge
    passes there (a pixel whose 4-neighbour lies on the other side of the mask), over the largest such sum. A mask
    weighs its score clipped to [0, 1], plus 0.01 so that every mask edge counts."""
    count, height, width = masks.shape
    weights = (np.clip(scores, 0.0, 1.0) + 0.01).astype(np.float32)  # (N,)
    evidence = np.zeros((height, width), dtype=np.float32)
    step = max(1, (_BLOCK // 4) // (height * width))  # float32 products: 16 MB a block
    for start in range(0, count, step):  # blocks of masks
        block = masks[start : start + step]  # (k, H, W) bool
        edge = np.zeros_like(block)
        across = block[:, :, 1:] != block[:, :, :-1]  # (k, H, W-1) horizontal neighbours that differ
        edge[:, :, 1:] |= across
        edge[:, :, :-1] |= across
        across = block[:, 1:, :] != block[:, :-1, :]  # (k, H-1, W)
        edge[:, 1:, :] |= across
        edge[:, :-1, :] |= across
        evidence += np.tensordot(weights[start : start + step], edge, axes=1).astype(np.float32)
    peak = float(evidence.max()) if evidence.size else 0.0
    return evidence / peak if peak > 0 else evidence


def masks_to_label_map(
    masks,
    scores=None,
    *,
    max_tokens: int | None = None,
    min_hole_area: int | None = None,
    boundary_probs: np.ndarray | None = None,
) -> np.ndarray:
    """Turn a mask model's masks into a label map under the rules of this module's docstring.

    Args:
        masks: ``(N, H, W)`` bool (or 0/1) array or tensor, one mask per row; ``N`` may be 0.
        scores: ``(N,)`` confidence of each mask (predicted IoU, class score); ``None``: all equal.
        max_tokens: at most this many regions (``None``: no budget); met by merging, never by dropping.
        min_hole_area: uncovered components smaller than this join their nearest region (``None``:
            ``default_min_hole_area``).
        boundary_probs: ``(H, W)`` boundary map ranking borders for the budget merge; ``None``: the masks' own
            edge evidence (``mask_edge_probs``).

    Returns:
        ``(H, W)`` int32 label map, ids ``0..n-1`` in area-descending order, every pixel labelled.
    """
    masks, scores = _check_masks(masks, scores)
    check_max_tokens(max_tokens)
    height, width = masks.shape[1:]
    if min_hole_area is None:
        min_hole_area = default_min_hole_area(height, width)
    elif (
        isinstance(min_hole_area, bool)
        or not isinstance(min_hole_area, numbers.Integral)
        or min_hole_area < 0
    ):
        raise ValueError(f"min_hole_area must be a non-negative integer, got {min_hole_area!r}")
    labels = relabel_by_area(fill_holes(paint_masks(masks, scores), int(min_hole_area)))
    if max_tokens is None or int(labels.max()) + 1 <= max_tokens:
        return labels
    if boundary_probs is None:
        boundary_probs = mask_edge_probs(masks, scores)
    else:
        boundary_probs = _as_probs_of(boundary_probs, labels)
    return _merge_regions(labels, boundary_probs, max_tokens, 0, "weakest_boundary", contrast=False)


__all__ = ["default_min_hole_area", "fill_holes", "mask_edge_probs", "masks_to_label_map", "paint_masks"]
