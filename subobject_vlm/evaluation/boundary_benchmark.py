"""The BSDS500 boundary benchmark on probability maps: thin, match pixels within a tolerance, ODS / OIS / AP.

The protocol is that of the official BSDS code (``evaluation_bdry_image`` / ``correspondPixels`` /
``collect_eval_bdry``): for every threshold ``t`` the map ``probs >= t`` is thinned to one-pixel lines
(``bwmorph(..., 'thin', inf)``), and its pixels are matched one-to-one to each annotator's boundary pixels
lying within ``max_dist * image diagonal`` (0.0075 -> 4.34 px on a 481x321 image). Per image and
threshold the benchmark accumulates

- ``cntR``: GT pixels matched, summed over annotators; ``sumR``: GT pixels, summed over annotators;
- ``cntP``: predicted pixels matched to at least one annotator; ``sumP``: predicted pixels,

and from those counts: ODS (best F at one dataset-wide threshold), OIS (best threshold per image) and AP
(area under the interpolated precision-recall curve), as ``collect_eval_bdry`` computes them.

The official matcher (CSA) solves a min-cost assignment with sparse random outlier edges, an approximation of
a maximum-cardinality matching. Here the matching is exact and fast: pixels are first matched greedily by
increasing distance (each distance offset is a translation, so one vectorised pass per offset), then
augmented to maximum cardinality with Hopcroft-Karp-style phases whose breadth-first layers are vectorised.
``matcher="csa"`` runs pyEdgeEval's port of the official code instead (optional dependency).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from .edges import thin
from .matching import (
    BSDS_MAX_DIST,
    Annotation,
    Matcher,
    _check_matcher,
    correspond_pixels,
    disk_offsets,
    match_radius,
)

COUNT_FIELDS = ("cntR", "sumR", "cntP", "sumP")


# --------------------------------------------------------------------------------------------- one image


def bsds_thresholds(thresholds: int | Sequence[float] = 99) -> np.ndarray:
    """``n`` -> ``linspace(1/(n+1), 1 - 1/(n+1), n)`` as in the BSDS code (99 -> 0.01..0.99); a sequence
    is used as given. Returns ``(T,)`` float64, ascending."""
    if isinstance(thresholds, (int, np.integer)):
        if thresholds < 1:
            raise ValueError(f"need at least one threshold, got {thresholds}")
        n = int(thresholds)
        return np.linspace(1.0 / (n + 1), 1.0 - 1.0 / (n + 1), n)
    values = np.asarray(thresholds, dtype=np.float64).ravel()
    if values.size == 0 or np.any(np.diff(values) <= 0):
        raise ValueError("thresholds must be a non-empty strictly increasing sequence")
    return values


def boundary_counts(
    pred: np.ndarray,
    gt_boundaries: Sequence[np.ndarray],
    max_dist: float = BSDS_MAX_DIST,
    matcher: Matcher = "exact",
    annotations: list[Annotation] | None = None,
    warm_start: bool = False,
) -> np.ndarray:
    """BSDS counts of one binary boundary map (already thinned) against several annotators.

    Returns:
        ``(4,)`` int64 ``[cntR, sumR, cntP, sumP]``: GT pixels matched / present (summed over annotators),
        predicted pixels matched to at least one annotator / present.
    """
    pred = np.asarray(pred).astype(bool)
    pred_pixels = np.flatnonzero(pred)
    matched_any = np.zeros(pred_pixels.size, dtype=bool)
    cnt_r = sum_r = 0
    if matcher == "csa":
        matched_map = np.zeros(pred.shape, dtype=bool)
        for gt in gt_boundaries:
            gt = np.asarray(gt).astype(bool)
            m_pred, m_gt = correspond_pixels(pred, gt, max_dist, matcher="csa")
            matched_map |= m_pred
            cnt_r += int(m_gt.sum())
            sum_r += int(gt.sum())
        return np.array([cnt_r, sum_r, int(matched_map.sum()), pred_pixels.size], dtype=np.int64)
    _check_matcher(matcher)
    if annotations is None:
        offsets = disk_offsets(match_radius(pred.shape, max_dist))
        annotations = [Annotation(np.asarray(gt).astype(bool), offsets) for gt in gt_boundaries]
    for annotation in annotations:
        matched = annotation.mates(pred_pixels, pred.shape[1], warm_start) >= 0
        matched_any |= matched
        cnt_r += int(matched.sum())
        sum_r += annotation.pixels.size
    return np.array([cnt_r, sum_r, int(matched_any.sum()), pred_pixels.size], dtype=np.int64)


def evaluate_boundary_image(
    probs: np.ndarray,
    gt_boundaries: Sequence[np.ndarray],
    thresholds: int | Sequence[float] = 99,
    max_dist: float = BSDS_MAX_DIST,
    apply_thinning: bool = True,
    matcher: Matcher = "exact",
) -> np.ndarray:
    """BSDS counts of one probability map at every threshold (``evaluation_bdry_image``).

    Args:
        probs: ``(H, W)`` float boundary probabilities in ``[0, 1]``.
        gt_boundaries: one ``(H, W)`` bool boundary map per annotator.
        thresholds: number of BSDS thresholds or an increasing sequence; pixels ``>= t`` are boundary.
        max_dist: matching tolerance as a fraction of the image diagonal.
        apply_thinning: thin each binary map first (BSDS does).
        matcher: ``"exact"`` or ``"csa"``.

    Returns:
        ``(T, 4)`` int64 counts ``[cntR, sumR, cntP, sumP]`` per threshold.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (H, W), got shape {probs.shape}")
    for gt in gt_boundaries:
        if np.shape(gt) != probs.shape:
            raise ValueError(f"ground-truth shape {np.shape(gt)} differs from probs shape {probs.shape}")
    thresholds = bsds_thresholds(thresholds)
    annotations = None
    if matcher != "csa":
        _check_matcher(matcher)
        offsets = disk_offsets(match_radius(probs.shape, max_dist))
        annotations = [Annotation(np.asarray(gt).astype(bool), offsets) for gt in gt_boundaries]
    counts = np.zeros((thresholds.size, 4), dtype=np.int64)
    previous_size = -1
    for i, t in enumerate(thresholds):
        bmap = probs >= t
        size = int(bmap.sum())
        if size == previous_size:  # nested sets of equal size are equal: same counts
            counts[i] = counts[i - 1]
            continue
        previous_size = size
        if apply_thinning:
            bmap = thin(bmap)
        counts[i] = boundary_counts(bmap, gt_boundaries, max_dist, matcher, annotations, warm_start=True)
    return counts


# --------------------------------------------------------------------------------------------- summaries


def precision_recall_f(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(..., 4)`` counts -> recall, precision, F (BSDS conventions: 0/0 -> 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    cnt_r, sum_r, cnt_p, sum_p = np.moveaxis(counts, -1, 0)
    recall = cnt_r / (sum_r + (sum_r == 0))
    precision = cnt_p / (sum_p + (sum_p == 0))
    return recall, precision, f_measure(precision, recall)


def f_measure(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """Harmonic mean, 0 where both are 0."""
    precision, recall = np.asarray(precision, dtype=np.float64), np.asarray(recall, dtype=np.float64)
    total = precision + recall
    return 2.0 * precision * recall / (total + (total == 0))


def interpolated_best_f(
    thresholds: np.ndarray, recall: np.ndarray, precision: np.ndarray
) -> tuple[float, float, float, float]:
    """BSDS ``maxF``: best F on the curve linearly interpolated between consecutive thresholds (100 steps,
    MATLAB's ``linspace(0, 1)``); the first strict maximum wins.

    Returns ``(threshold, recall, precision, f)``.
    """
    thresholds, recall, precision = (np.asarray(a, dtype=np.float64) for a in (thresholds, recall, precision))
    if thresholds.size == 1:
        return (
            float(thresholds[0]),
            float(recall[0]),
            float(precision[0]),
            float(f_measure(precision, recall)[0]),
        )
    d = np.linspace(0.0, 1.0, 100)[None, :]
    t = thresholds[1:, None] * d + thresholds[:-1, None] * (1 - d)
    r = recall[1:, None] * d + recall[:-1, None] * (1 - d)
    p = precision[1:, None] * d + precision[:-1, None] * (1 - d)
    f = f_measure(p, r)
    best = np.unravel_index(np.argmax(f), f.shape)  # first maximum, as the BSDS loop keeps it
    if f[best] <= f_measure(precision[:1], recall[:1])[0]:
        return (
            float(thresholds[0]),
            float(recall[0]),
            float(precision[0]),
            float(f_measure(precision, recall)[0]),
        )
    return float(t[best]), float(r[best]), float(p[best]), float(f[best])


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """BSDS ``Area_PR``: precision interpolated (linearly, over unique recalls) at recall 0:0.01:1, summed
    times 0.01; recalls outside the curve's range count as precision 0."""
    recall, precision = np.asarray(recall, dtype=np.float64), np.asarray(precision, dtype=np.float64)
    # MATLAB's unique (as of BSDS500) keeps the last occurrence of each value
    unique_r, last = np.unique(recall[::-1], return_index=True)
    unique_p = precision[::-1][last]
    if unique_r.size < 2:
        return 0.0
    grid = np.linspace(0.0, 1.0, 101)
    return float(np.interp(grid, unique_r, unique_p, left=0.0, right=0.0).sum() * 0.01)


def recall_at_precision(recall: np.ndarray, precision: np.ndarray, level: float = 0.5) -> float:
    """R50-style score: the highest recall on the threshold-interpolated PR curve with precision >= level."""
    recall, precision = np.asarray(recall, dtype=np.float64), np.asarray(precision, dtype=np.float64)
    d = np.linspace(0.0, 1.0, 100)[None, :]
    if recall.size > 1:
        r = (recall[1:, None] * d + recall[:-1, None] * (1 - d)).ravel()
        p = (precision[1:, None] * d + precision[:-1, None] * (1 - d)).ravel()
    else:
        r, p = recall, precision
    ok = p >= level
    return float(r[ok].max()) if ok.any() else 0.0


def summarize_boundary_counts(
    counts: np.ndarray, thresholds: int | Sequence[float] = 99, names: Sequence[str] | None = None
) -> dict:
    """Dataset scores from per-image counts (``collect_eval_bdry``).

    Args:
        counts: ``(N, T, 4)`` per-image, per-threshold ``[cntR, sumR, cntP, sumP]``.
        thresholds: the ``T`` thresholds (or their number).
        names: optional image names for the per-image table.

    Returns:
        JSON-ready dict: ``ODS`` and ``OIS`` (``f, precision, recall`` and ODS ``threshold``), ``AP``, ``R50``,
        the dataset ``curve`` (``thresholds, recall, precision, f``) and ``per_image`` best scores.
    """
    counts = np.asarray(counts, dtype=np.int64)
    thresholds = bsds_thresholds(thresholds)
    if counts.ndim != 3 or counts.shape[1:] != (thresholds.size, 4):
        raise ValueError(f"counts must be (N, {thresholds.size}, 4), got {counts.shape}")
    total = counts.sum(axis=0)
    recall, precision, f = precision_recall_f(total)
    ods_t, ods_r, ods_p, ods_f = interpolated_best_f(thresholds, recall, precision)
    # OIS: per image, the counts at its best threshold (the last one among ties, as BSDS's ff(end))
    _, _, f_img = precision_recall_f(counts)
    best = f_img.shape[1] - 1 - np.argmax(f_img[:, ::-1], axis=1)
    best_counts = counts[np.arange(counts.shape[0]), best]
    ois_r, ois_p, ois_f = precision_recall_f(best_counts.sum(axis=0))
    per_image = []
    for i in range(counts.shape[0]):
        r_i, p_i, _ = precision_recall_f(counts[i])
        t_i, br, bp, bf = interpolated_best_f(thresholds, r_i, p_i)
        per_image.append(
            {
                "name": names[i] if names is not None else str(i),
                "threshold": t_i,
                "recall": br,
                "precision": bp,
                "f": bf,
            }
        )
    return {
        "ODS": {"f": ods_f, "precision": ods_p, "recall": ods_r, "threshold": ods_t},
        "OIS": {"f": float(ois_f), "precision": float(ois_p), "recall": float(ois_r)},
        "AP": average_precision(recall, precision),
        "R50": recall_at_precision(recall, precision, 0.5),
        "num_images": int(counts.shape[0]),
        "curve": {
            "thresholds": thresholds.tolist(),
            "recall": recall.tolist(),
            "precision": precision.tolist(),
            "f": f.tolist(),
        },
        "per_image": per_image,
    }


# --------------------------------------------------------------------------------------------- dataset


def _evaluate_task(task: tuple) -> np.ndarray:
    probs, gts, thresholds, max_dist, apply_thinning, matcher = task
    return evaluate_boundary_image(probs, gts, thresholds, max_dist, apply_thinning, matcher)


def default_workers() -> int:
    """Worker processes to use: the CPUs this process may run on, at most 2 here (shared machine)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(2, available))


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes started with ``spawn`` (safe next to torch / OpenMP threads)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def benchmark_boundaries(
    probs: Iterable[np.ndarray],
    gt_boundaries: Iterable[Sequence[np.ndarray]],
    thresholds: int | Sequence[float] = 99,
    max_dist: float = BSDS_MAX_DIST,
    apply_thinning: bool = True,
    matcher: Matcher = "exact",
    workers: int | None = None,
    names: Sequence[str] | None = None,
    progress: bool = True,
) -> dict:
    """BSDS boundary benchmark over a dataset: per-image counts in a process pool, then ODS / OIS / AP.

    Args:
        probs: one ``(H, W)`` float map in ``[0, 1]`` per image (any iterable, consumed lazily).
        gt_boundaries: per image, the annotators' ``(H, W)`` bool boundary maps.
        thresholds, max_dist, apply_thinning, matcher: see ``evaluate_boundary_image``.
        workers: processes (default ``default_workers()``; 0 or 1 runs in this process).
        names: image names for the per-image table.
        progress: show a tqdm bar on stderr.

    Returns:
        ``summarize_boundary_counts`` dict, plus ``counts`` ``(N, T, 4)`` as nested lists.
    """
    from tqdm.auto import tqdm

    thresholds = bsds_thresholds(thresholds)
    workers = default_workers() if workers is None else workers
    tasks = ((p, g, thresholds, max_dist, apply_thinning, matcher) for p, g in zip(probs, gt_boundaries))
    total = len(names) if names is not None else None
    bar = tqdm(total=total, desc="boundary benchmark", unit="img", disable=not progress)
    results = []
    if workers <= 1:
        for task in tasks:
            results.append(_evaluate_task(task))
            bar.update()
    else:
        with process_pool(workers) as pool:
            for counts in pool.map(_evaluate_task, tasks):
                results.append(counts)
                bar.update()
    bar.close()
    counts = np.stack(results) if results else np.zeros((0, thresholds.size, 4), dtype=np.int64)
    summary = summarize_boundary_counts(counts, thresholds, names)
    summary["counts"] = counts.tolist()
    return summary


__all__ = [
    "COUNT_FIELDS",
    "average_precision",
    "benchmark_boundaries",
    "boundary_counts",
    "bsds_thresholds",
    "default_workers",
    "evaluate_boundary_image",
    "f_measure",
    "interpolated_best_f",
    "precision_recall_f",
    "process_pool",
    "recall_at_precision",
    "summarize_boundary_counts",
]
