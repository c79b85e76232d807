"""Metrics of a segmentation (a tokenizer's label map) against human annotations.

- Boundary recall / precision / F with the BSDS protocol for segmentations: the label map's boundaries are
  its label-change pixels (``seg2bdry(seg, 'imageSize')``), thinned, and matched one-to-one to each
  annotator's boundary pixels within ``0.0075 * diagonal`` (see ``boundary_benchmark``).
- The superpixel-literature variant with a fixed pixel tolerance (``tolerance=2``): a GT boundary pixel is
  recalled if a segmentation boundary pixel lies within that Euclidean distance (no one-to-one matching).
- Undersegmentation error, corrected form of Neubert & Protzel (2012):
  ``UE = 1/N * sum_G sum_{S : S cap G != 0} min(|S cap G|, |S - G|)``.
- Achievable segmentation accuracy: ``ASA = 1/N * sum_S max_G |S cap G|``.

Per-annotator scores (UE, ASA) are averaged over annotators; boundary counts are pooled over annotators
as BSDS does. Everything is computed from one contingency table per annotator (``bincount`` over
``(region, gt label)`` pairs), never one mask per region.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from .boundary_benchmark import boundary_counts, f_measure
from .edges import thin
from .matching import BSDS_MAX_DIST


def segmentation_boundaries(label_map: np.ndarray) -> np.ndarray:
    """Boundary pixels of a label map at image resolution, as BSDS ``seg2bdry(seg, 'imageSize')``.

    Pixel ``(i, j)`` is a boundary pixel when the 2x2 block ``(i..i+1, j..j+1)`` is not one label; the last
    row and column are never boundary pixels.

    Args:
        label_map: ``(H, W)`` integer label map.

    Returns:
        ``(H, W)`` bool.
    """
    seg = np.asarray(label_map)
    if seg.ndim != 2:
        raise ValueError(f"label_map must be (H, W), got shape {seg.shape}")
    out = np.zeros(seg.shape, dtype=bool)
    top, bottom = seg[:-1], seg[1:]
    out[:-1, :-1] = (
        (top[:, :-1] != top[:, 1:])
        | (bottom[:, :-1] != bottom[:, 1:])
        | (top[:, :-1] != bottom[:, :-1])
        | (top[:, 1:] != bottom[:, 1:])
    )
    return out


def _as_list(maps: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """One map or a list of maps (one per annotator) -> list of arrays."""
    if isinstance(maps, np.ndarray) and maps.ndim == 2:
        return [maps]
    return [np.asarray(m) for m in maps]


def _check_shapes(label_map: np.ndarray, maps: list[np.ndarray], what: str) -> None:
    if not maps:
        raise ValueError(f"need at least one {what} map")
    for m in maps:
        if m.shape != label_map.shape:
            raise ValueError(f"{what} shape {m.shape} differs from label map shape {label_map.shape}")


def segmentation_boundary_counts(
    label_map: np.ndarray, gt_boundaries: np.ndarray | Sequence[np.ndarray], max_dist: float = BSDS_MAX_DIST
) -> np.ndarray:
    """BSDS counts ``[cntR, sumR, cntP, sumP]`` (int64, ``(4,)``) of a label map's thinned boundaries."""
    label_map = np.asarray(label_map)
    gts = [g.astype(bool) for g in _as_list(gt_boundaries)]
    _check_shapes(label_map, gts, "ground-truth boundary")
    return boundary_counts(thin(segmentation_boundaries(label_map)), gts, max_dist)


def _tolerance_hits(
    label_map: np.ndarray,
    gt_boundaries: np.ndarray | Sequence[np.ndarray],
    tolerance: float,
    seg: np.ndarray | None = None,
) -> tuple[int, int, int, int]:
    """``(GT pixels within tolerance, GT pixels, seg pixels within tolerance of any GT, seg pixels)``;
    ``seg``: the label map's thinned boundaries if already computed."""
    label_map = np.asarray(label_map)
    gts = [g.astype(bool) for g in _as_list(gt_boundaries)]
    _check_shapes(label_map, gts, "ground-truth boundary")
    seg = thin(segmentation_boundaries(label_map)) if seg is None else seg
    to_seg = ndi.distance_transform_edt(~seg) if seg.any() else np.full(seg.shape, np.inf)
    hits = sum(int((to_seg[g] <= tolerance).sum()) for g in gts)
    total = sum(int(g.sum()) for g in gts)
    union = np.logical_or.reduce(gts)
    to_gt = ndi.distance_transform_edt(~union) if union.any() else np.full(seg.shape, np.inf)
    return hits, total, int((to_gt[seg] <= tolerance).sum()), int(seg.sum())


def boundary_recall(
    label_map: np.ndarray,
    gt_boundaries: np.ndarray | Sequence[np.ndarray],
    tolerance: float | None = 2,
    max_dist: float = BSDS_MAX_DIST,
) -> float:
    """Fraction of ground-truth boundary pixels found by the segmentation's boundaries.

    Args:
        label_map: ``(H, W)`` integer label map.
        gt_boundaries: ``(H, W)`` bool map, or one per annotator (counts pooled over annotators).
        tolerance: pixels (Euclidean, inclusive); a GT pixel counts when any boundary pixel is that close.
            ``None``: the BSDS protocol instead (one-to-one matching within ``max_dist * diagonal``).
        max_dist: BSDS tolerance as a fraction of the diagonal (only with ``tolerance=None``).

    Returns:
        Recall in ``[0, 1]`` (0 when there is no GT boundary pixel).
    """
    if tolerance is None:
        cnt_r, sum_r, _, _ = segmentation_boundary_counts(label_map, gt_boundaries, max_dist)
    else:
        cnt_r, sum_r, _, _ = _tolerance_hits(label_map, gt_boundaries, tolerance)
    return float(cnt_r / sum_r) if sum_r else 0.0


def boundary_precision(
    label_map: np.ndarray,
    gt_boundaries: np.ndarray | Sequence[np.ndarray],
    tolerance: float | None = 2,
    max_dist: float = BSDS_MAX_DIST,
) -> float:
    """Fraction of the segmentation's boundary pixels near (or, BSDS, matched to) some annotator's boundary.

    Arguments as ``boundary_recall``. Returns 0 when the segmentation has no boundary pixel.
    """
    if tolerance is None:
        _, _, cnt_p, sum_p = segmentation_boundary_counts(label_map, gt_boundaries, max_dist)
    else:
        _, _, cnt_p, sum_p = _tolerance_hits(label_map, gt_boundaries, tolerance)
    return float(cnt_p / sum_p) if sum_p else 0.0


def contingency(label_map: np.ndarray, gt_segmentation: np.ndarray) -> np.ndarray:
    """Overlap table ``(num_regions, num_gt_labels)`` int64: pixels of region ``s`` with GT label ``g``.

    Non-negative ids are used as they are (unused ids give empty rows / columns, which no metric here
    counts); other ids are compacted first.
    """
    seg, n_seg = _ids(label_map)
    gt, n_gt = _ids(gt_segmentation)
    return np.bincount(seg * n_gt + gt, minlength=n_seg * n_gt).reshape(n_seg, n_gt).astype(np.int64)


def _ids(label_map: np.ndarray) -> tuple[np.ndarray, int]:
    """Flat int64 ids in ``0..n-1`` and ``n``."""
    flat = np.asarray(label_map).ravel()
    if flat.size and flat.min() >= 0 and flat.max() < 4 * flat.size:
        return flat.astype(np.int64), int(flat.max()) + 1
    _, inverse = np.unique(flat, return_inverse=True)
    return inverse.astype(np.int64), int(inverse.max(initial=-1)) + 1


def _per_annotator(label_map: np.ndarray, gt_segmentations, score) -> float:
    label_map = np.asarray(label_map)
    gts = _as_list(gt_segmentations)
    _check_shapes(label_map, gts, "ground-truth segmentation")
    return float(np.mean([score(contingency(label_map, gt)) for gt in gts]))


def _ue(table: np.ndarray) -> float:
    sizes = table.sum(axis=1, keepdims=True)
    return float(np.minimum(table, sizes - table)[table > 0].sum() / table.sum())


def _asa(table: np.ndarray) -> float:
    return float(table.max(axis=1).sum() / table.sum())


def undersegmentation_error(
    label_map: np.ndarray, gt_segmentations: np.ndarray | Sequence[np.ndarray]
) -> float:
    """Corrected undersegmentation error (Neubert & Protzel 2012), averaged over annotators.

    For every GT segment ``G`` and region ``S`` overlapping it, the smaller of the part of ``S`` inside ``G``
    and the part outside counts as leakage; the sum is divided by the number of pixels. 0 is perfect.

    Args:
        label_map: ``(H, W)`` integer label map.
        gt_segmentations: ``(H, W)`` integer GT label map, or one per annotator.
    """
    return _per_annotator(label_map, gt_segmentations, _ue)


def achievable_segmentation_accuracy(
    label_map: np.ndarray, gt_segmentations: np.ndarray | Sequence[np.ndarray]
) -> float:
    """ASA: the pixel accuracy of labelling each region with its best-overlapping GT segment, averaged over
    annotators. 1 is perfect; a one-region map scores the largest GT segment's area fraction."""
    return _per_annotator(label_map, gt_segmentations, _asa)


def num_tokens(label_map: np.ndarray) -> int:
    """Number of distinct labels (tokens) in a label map."""
    return int(np.unique(np.asarray(label_map)).size)


TOKEN_METRICS = (
    "tokens",
    "boundary_recall",
    "boundary_precision",
    "boundary_f",
    "boundary_recall_2px",
    "boundary_precision_2px",
    "undersegmentation_error",
    "achievable_segmentation_accuracy",
)


def segmentation_metrics(
    label_map: np.ndarray,
    gt_segmentations: Sequence[np.ndarray],
    gt_boundaries: Sequence[np.ndarray],
    tolerance: float = 2,
    max_dist: float = BSDS_MAX_DIST,
) -> dict:
    """All token metrics of one label map against one image's annotators.

    Returns:
        dict with the ``TOKEN_METRICS`` keys (floats; ``tokens`` an int; the pixel-tolerance keys are named
        after ``tolerance``, ``..._2px`` by default) plus ``counts``, the BSDS
        ``[cntR, sumR, cntP, sumP]`` list for pooling over a dataset.
    """
    label_map = np.asarray(label_map)
    gts = [g.astype(bool) for g in _as_list(gt_boundaries)]
    _check_shapes(label_map, gts, "ground-truth boundary")
    seg = thin(segmentation_boundaries(label_map))
    cnt_r, sum_r, cnt_p, sum_p = (int(c) for c in boundary_counts(seg, gts, max_dist))
    recall = cnt_r / sum_r if sum_r else 0.0
    precision = cnt_p / sum_p if sum_p else 0.0
    hits, total, near, size = _tolerance_hits(label_map, gts, tolerance, seg)
    gts = _as_list(gt_segmentations)
    _check_shapes(label_map, gts, "ground-truth segmentation")
    tables = [contingency(label_map, gt) for gt in gts]
    return {
        "tokens": num_tokens(label_map),
        "boundary_recall": recall,
        "boundary_precision": precision,
        "boundary_f": float(f_measure(precision, recall)),
        f"boundary_recall_{tolerance:g}px": hits / total if total else 0.0,
        f"boundary_precision_{tolerance:g}px": near / size if size else 0.0,
        "undersegmentation_error": float(np.mean([_ue(t) for t in tables])),
        "achievable_segmentation_accuracy": float(np.mean([_asa(t) for t in tables])),
        "counts": [cnt_r, sum_r, cnt_p, sum_p],
    }


__all__ = [
    "TOKEN_METRICS",
    "achievable_segmentation_accuracy",
    "boundary_precision",
    "boundary_recall",
    "contingency",
    "num_tokens",
    "segmentation_boundaries",
    "segmentation_boundary_counts",
    "segmentation_metrics",
    "undersegmentation_error",
]
