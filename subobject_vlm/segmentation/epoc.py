"""EPOC: boundary probabilities -> subobject label map.

``threshold`` the boundary map, take the 4-connected components of the non-boundary pixels as seeds, give
every boundary pixel to a seed (watershed flooding on the probabilities, or simply the nearest seed), then
optionally merge regions under a ``min_area`` / ``max_tokens`` budget without dropping any pixel.

>>> labels = epoc(boundary_probs, threshold=0.1, max_tokens=256)   # (H, W) int32, ids 0..n-1
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from .options import ASSIGN_MODES, SEED_MODES, check_epoc_options
from .regions import MergeOrder, _merge_regions, relabel_by_area

Assign = Literal["watershed", "nearest"]
Seeds = Literal["threshold", "minima"]
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_DONE = 255  # flooding state of labelled pixels and of the padding: never a candidate

try:  # the compiled flooding kernel, built by `pip install` where a C compiler is available
    from . import _flood
except ImportError:  # pragma: no cover - pure-numpy fallback, same labels
    _flood = None


def as_boundary_probs(boundary_probs, name: str = "boundary_probs") -> np.ndarray:
    """Validate a boundary map and return it as a C-contiguous ``(H, W)`` float32 array clipped to [0, 1].

    Accepts numpy arrays and torch tensors. Floats are probabilities (``+inf``/``-inf`` clipped; NaN is an error,
    since no label map computed from it would be meaningful). 8-bit and 16-bit maps, as the ``boundary`` command
    writes them, are read as probabilities (``/ 255``, ``/ 65535``); other integer dtypes are refused.
    """
    if hasattr(boundary_probs, "detach"):  # torch.Tensor
        boundary_probs = boundary_probs.detach().float().cpu().numpy()
    probs = np.asarray(boundary_probs)
    if probs.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {tuple(probs.shape)}")
    if probs.shape[0] == 0 or probs.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(probs.shape)})")
    if probs.dtype == bool or not (
        np.issubdtype(probs.dtype, np.floating) or np.issubdtype(probs.dtype, np.integer)
    ):
        raise TypeError(f"{name} must be a float array of probabilities, got dtype {probs.dtype}")
    if np.issubdtype(probs.dtype, np.integer):
        if probs.dtype not in (np.uint8, np.uint16):
            raise TypeError(
                f"{name}: integer maps must be 8-bit (0..255) or 16-bit (0..65535) probabilities, got {probs.dtype}; "
                "pass floats in [0, 1]"
            )
        return np.ascontiguousarray(probs, dtype=np.float32) / np.float32(np.iinfo(probs.dtype).max)
    probs = np.ascontiguousarray(probs, dtype=np.float32)
    low, high = float(probs.min()), float(probs.max())  # NaN propagates: no full-size mask needed
    if np.isnan(low) or np.isnan(high):
        raise ValueError(f"{name} contains {int(np.isnan(probs).sum())} NaN value(s); cannot segment it")
    return np.clip(probs, 0.0, 1.0) if low < 0.0 or high > 1.0 else probs


def _assign_nearest(seeds: np.ndarray) -> np.ndarray:
    """Give every unlabelled pixel (0) the label of the nearest seed pixel (Euclidean). ``(H, W)`` int32."""
    unlabelled = (seeds == 0).astype(np.uint8)  # (H, W) uint8, 1 where a label is needed
    # DIST_LABEL_PIXEL numbers the zero pixels of the source 1..N in raster order.
    _, nearest = cv2.distanceTransformWithLabels(unlabelled, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    seed_ids = seeds.ravel()[seeds.ravel() > 0]  # (N,) label of the k-th seed pixel in raster order
    return seed_ids[nearest.ravel() - 1].reshape(seeds.shape)


def _flood_numpy(
    labels: np.ndarray,
    quantised: np.ndarray,
    state: np.ndarray,
    todo: np.ndarray,
    starts: np.ndarray,
    width: int,
    levels: int,
) -> None:
    """The flooding loop of ``_assign_watershed`` in numpy, vectorised over each wave (the reference for the
    compiled ``_flood.flood``, which gives identical labels). Arguments as there; ``labels`` is filled in place."""
    offsets = np.array([-width, width, -1, 1], dtype=todo.dtype)
    owner = np.empty(labels.size, dtype=todo.dtype)  # scratch for de-duplicating waves
    never = np.iinfo(np.int64).max

    def lowest_labelled_neighbour(pixels: np.ndarray) -> np.ndarray:
        nbr = pixels[:, None] + offsets[None, :]  # (m, 4) the 4-neighbours
        nbr_label = labels[nbr]  # (m, 4)
        key = (quantised[nbr].astype(np.int64) << 32) | nbr_label  # quantised prob << 32 | label
        key[nbr_label == 0] = never
        return key.min(axis=1)  # (m,)

    for k in range(levels):
        cand = todo[starts[k] : starts[k + 1]]
        cand = cand[state[cand] != _DONE]
        if cand.size == 0:
            continue
        best = lowest_labelled_neighbour(cand)
        reached = best != never
        wave = cand[reached]
        labels[wave] = (best[reached] & 0xFFFFFFFF).astype(np.int32)
        state[wave] = _DONE
        while wave.size:
            nbr = (wave[:, None] + offsets[None, :]).ravel()  # (4w,)
            nbr = nbr[state[nbr] <= k]  # unlabelled, at this level or a lower one left behind
            if nbr.size == 0:
                break
            position = np.arange(nbr.size, dtype=todo.dtype)
            owner[nbr] = position
            nbr = nbr[owner[nbr] == position]  # each pixel once
            labels[nbr] = (lowest_labelled_neighbour(nbr) & 0xFFFFFFFF).astype(np.int32)
            state[nbr] = _DONE
            wave = nbr


def _assign_watershed(labels: np.ndarray, probs: np.ndarray, levels: int = 254) -> None:
    """Flood the boundary pixels from the seeds in order of increasing probability (watershed), in place.

    ``labels`` is the ``(H+2, W+2)`` int32 seed map of the ``(H, W)`` map ``probs`` (0 = unlabelled), framed
    by one unlabelled pixel so that neighbours need no bounds checks; the frame stays 0.
    Probabilities are quantised to ``levels`` flooding levels (``levels <= 254``). At level ``k``, the
    unlabelled pixels of that level touching a labelled pixel are labelled first; then the flood spreads
    in breadth-first waves from the pixels just labelled into unlabelled neighbours of level ``<= k``.
    Each pixel takes the label of its lowest labelled 4-neighbour (probabilities compared at 8 bits), all
    pixels of a wave from the labels before it. The total work is O(boundary pixels). The loop runs in the
    compiled ``_flood`` kernel when the package was built with it, else in numpy (``_flood_numpy``); both
    give the same labels.
    """
    width = probs.shape[1]
    padded_w = width + 2
    quantised = cv2.copyMakeBorder(  # (H+2, W+2) uint8 probs at 8 bits, no float temporary
        cv2.convertScaleAbs(probs, alpha=255.0), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0
    )
    if _flood is not None and labels.size < 2**31:
        _flood.flood(labels, quantised, levels)
        return
    index_dtype = np.int32 if labels.size < 2**31 - 1 else np.int64
    unlabelled = np.flatnonzero(labels[1:-1, 1:-1] == 0)  # (U,) boundary pixels, unpadded flat indices
    todo = (unlabelled + 2 * (unlabelled // width) + padded_w + 1).astype(index_dtype)  # padded indices
    todo_level = ((quantised.ravel()[todo].astype(np.uint16) * levels) >> 8).astype(np.uint8)  # (U,)
    state = np.full(labels.size, _DONE, dtype=np.uint8)  # (padded HW,) flooding level, or _DONE
    state[todo] = todo_level
    order = np.argsort(todo_level, kind="stable")  # uint8 keys: radix sort
    todo, todo_level = todo[order], todo_level[order]
    starts = np.searchsorted(todo_level, np.arange(levels + 1))  # (levels + 1,) where each level starts
    _flood_numpy(labels.ravel(), quantised.ravel(), state, todo, starts, padded_w, levels)


def epoc(
    boundary_probs,
    threshold: float = 0.1,
    *,
    max_tokens: int | None = None,
    min_area: int = 0,
    merge: MergeOrder = "weakest_boundary",
    assign: Assign = "watershed",
    seeds: Seeds = "threshold",
) -> np.ndarray:
    """Segment a boundary probability map into subobjects.

    Args:
        boundary_probs: ``(H, W)`` float array (numpy or torch) of boundary probabilities in [0, 1].
        threshold: pixels with probability ``<= threshold`` are interior; their 4-connected components
            are the seeds (default 0.1).
        max_tokens: at most this many regions; extra regions are merged across their weakest shared
            boundary (or smallest first with ``merge="smallest_region"``). Nothing is dropped.
        min_area: regions smaller than this many pixels are merged into a neighbour first.
        merge: ``"weakest_boundary"`` (default) or ``"smallest_region"``.
        assign: how boundary pixels get a region: ``"watershed"`` (flooding on the probabilities,
            default; regions stay 4-connected) or ``"nearest"`` (nearest seed in Euclidean distance, the
            original ``probs_to_masks`` behaviour; faster, but a region may come out in pieces).
        seeds: ``"threshold"`` (default, the paper's EPOC): the components of ``probs <= threshold``.
            ``"minima"``: also every pixel of the map (at 8 bits) that no 4-neighbour undercuts, grouped
            4-connected: every regional minimum, plus the inner part of plateaus that are not minima (e.g. a
            saturated ridge), i.e. a full watershed over-segmentation that ``max_tokens``
            then merges lowest contrast first (a border's mean probability minus the higher of the two
            regions' lowest probabilities, ``merge_regions(contrast=True)``), so the specks a sharp map leaves
            on its ridges merge before real regions do; uses the whole budget where threshold seeds give
            fewer regions, with no ``min_area`` needed.

    Cost: seeds and flooding O(HW); the budget merge O(HW + (E + Q) log(E + Q)) for the E adjacent region
    pairs and the Q edges it re-queues (``merge_regions``): on white noise, the worst case (one minimum per ~5
    pixels), ``seeds="minima"`` costs 3.5-4x ``seeds="threshold"`` from 256² to 1024²
    (``benchmarks/bench_epoc_merge.py``).

    Returns:
        ``(H, W)`` int32 label map, ids ``0..n-1``, label 0 the largest region, area-descending order
        (ties: the region whose seed comes first in raster order); every pixel is labelled.
    """
    probs = as_boundary_probs(boundary_probs)
    check_epoc_options(threshold, max_tokens, min_area, merge, assign, seeds)
    return _epoc(probs, threshold, max_tokens, min_area, merge, assign, seeds)


def epoc_with(boundary_probs, **options) -> np.ndarray:
    """``epoc(boundary_probs, **options)`` without checking the options again: the segmentation settings
    checked them when they were made (the path of ``segment_image``, the processor and the commands)."""
    return _epoc(as_boundary_probs(boundary_probs), **options)


def _epoc(
    probs: np.ndarray,
    threshold: float,
    max_tokens: int | None,
    min_area: int,
    merge: str,
    assign: str,
    seeds: str,
) -> np.ndarray:
    """EPOC on a checked ``(H, W)`` float32 map, with checked options."""
    interior = np.less_equal(probs, threshold).view(np.uint8)  # (H, W) uint8, 1 = interior
    if seeds == "minima":
        quantised = cv2.convertScaleAbs(probs, alpha=255.0)  # (H, W) uint8, the flooding's 8 bits
        interior |= (quantised <= cv2.erode(quantised, _CROSS)).view(np.uint8)  # no lower 4-neighbour
    all_interior = bool(interior.all())
    framed = assign == "watershed"  # flooding works in place on seeds framed by one unlabelled pixel
    if framed:
        interior = cv2.copyMakeBorder(interior, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)  # (H+2, W+2)
    num_seeds, labels = cv2.connectedComponents(interior, connectivity=4, ltype=cv2.CV_32S)  # 0 = boundary
    del interior
    if num_seeds <= 1:  # no interior pixel at all: the whole image is one region
        return np.zeros(probs.shape, dtype=np.int32)
    if not all_interior:  # some boundary pixels need a region
        if framed:
            _assign_watershed(labels, probs)
        else:
            labels = _assign_nearest(labels)
    if framed:
        labels = np.ascontiguousarray(labels[1:-1, 1:-1])  # (H, W) int32; frees the framed map
    if max_tokens is None and min_area <= 1:
        return relabel_by_area(labels)
    return _merge_regions(labels, probs, max_tokens, min_area, merge, contrast=seeds == "minima")


__all__ = ["ASSIGN_MODES", "SEED_MODES", "as_boundary_probs", "epoc", "epoc_with"]
