"""Matching predicted boundary pixels to annotated ones within a tolerance: exact maximum-cardinality matching
(greedy by distance, then augmenting phases, all vectorised), or pyEdgeEval's CSA, the official algorithm."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import numpy as np

Matcher = Literal["exact", "csa"]
MATCHERS = ("exact", "csa")
BSDS_MAX_DIST = 0.0075  # matching tolerance as a fraction of the image diagonal (BSDS default)


def disk_offsets(radius: float) -> np.ndarray:
    """Integer offsets ``(dy, dx)`` with ``dy**2 + dx**2 <= radius**2``, nearest first: ``(K, 2)`` int64."""
    r = int(math.floor(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    dy, dx = dy.ravel(), dx.ravel()
    d2 = dy * dy + dx * dx
    keep = d2 <= radius * radius
    order = np.lexsort((dx[keep], dy[keep], d2[keep]))
    return np.stack([dy[keep][order], dx[keep][order]], axis=1).astype(np.int64)


def maximum_matching(
    neighbours: np.ndarray, num_right: int, initial: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact maximum-cardinality bipartite matching on a bounded-degree graph.

    Greedy first: column ``k`` of ``neighbours`` is tried for every free left vertex before column ``k+1``
    (put nearer candidates in earlier columns, so that near pairs are preferred, as by the official
    min-cost matcher). Then augmenting paths, found by a vectorised breadth-first search from all free left
    vertices at once; one path per search tree is augmented (paths of different trees are disjoint).
    Stops when a search reaches no free right vertex: the matching is then maximum (Berge).

    Args:
        neighbours: ``(L, K)`` integer right-vertex ids of each left vertex (distinct within a row),
            ``-1`` for none.
        num_right: number of right vertices.
        initial: optional ``(L,)`` starting matching (right id per left vertex or -1; must be one-to-one
            and use edges of the graph), e.g. the matching of a similar graph; only grown from there.

    Returns:
        ``mate_left`` ``(L,)`` and ``mate_right`` ``(num_right,)`` int64, the partner's id or ``-1``.
    """
    neighbours = np.asarray(neighbours)
    num_left = neighbours.shape[0]
    mate_left = np.full(num_left, -1, dtype=np.int64)
    mate_right = np.full(num_right, -1, dtype=np.int64)
    if initial is not None:
        mate_left[:] = initial
        matched = np.flatnonzero(mate_left >= 0)
        mate_right[mate_left[matched]] = matched
    valid = neighbours >= 0
    rows, cols = np.nonzero(valid)  # all edges, grouped by row, in column order
    right = neighbours[valid].astype(np.int64)
    # greedy, nearest pairs first: column by column over the edges whose ends are both free
    # (if two left vertices claim one right vertex in a column, one wins; never when columns are translations)
    free_edge = np.flatnonzero((mate_left[rows] < 0) & (mate_right[right] < 0))
    small = np.uint8 if neighbours.shape[1] <= 256 else np.uint16
    by_column = free_edge[np.argsort(cols[free_edge].astype(small), kind="stable")]  # radix sort
    g_cols, g_rows, g_right = cols[by_column], rows[by_column], right[by_column]
    owner = np.full(num_right, -1, dtype=np.int64)
    starts = np.searchsorted(g_cols, np.arange(neighbours.shape[1] + 1))
    for k in np.flatnonzero(np.diff(starts)):
        left, cand = g_rows[starts[k] : starts[k + 1]], g_right[starts[k] : starts[k + 1]]
        ok = (mate_left[left] < 0) & (mate_right[cand] < 0)
        left, cand = left[ok], cand[ok]
        owner[cand] = left
        won = owner[cand] == left
        mate_left[left[won]] = cand[won]
        mate_right[cand[won]] = left[won]
    # an augmenting path needs a free left and a free right vertex, each with some edge
    degree = np.bincount(rows, minlength=num_left)
    free = np.flatnonzero((mate_left < 0) & (degree > 0))
    right_degree = np.bincount(right, minlength=num_right)
    if free.size == 0 or not ((mate_right < 0) & (right_degree > 0)).any():
        return mate_left, mate_right
    # augmenting phases only need each row's candidates: pack them to the front
    column = np.arange(rows.size) - (np.cumsum(degree) - degree)[rows]
    width = int(degree.max())
    packed = np.full((num_left, width), -1, dtype=np.int64)
    packed.ravel()[rows * width + column] = right
    while free.size and _augment(packed, mate_left, mate_right, free):
        free = free[mate_left[free] < 0]
    return mate_left, mate_right


def _augment(neighbours: np.ndarray, mate_left: np.ndarray, mate_right: np.ndarray, free: np.ndarray) -> bool:
    """One phase: grow an alternating breadth-first forest from all free left vertices (each right vertex
    joins the first tree that reaches it), then augment one path per tree that reached a free right vertex.
    Paths in different trees are vertex-disjoint. Returns False when no tree reached a free right vertex."""
    num_right, width = mate_right.size, neighbours.shape[1]
    visited = np.zeros(num_right + 1, dtype=bool)
    visited[num_right] = True  # sentinel: the id -1 reads visited[-1], so missing candidates are skipped
    parent = np.empty(num_right, dtype=np.int64)  # right vertex -> left vertex that reached it
    frontier = free
    ends = []
    while frontier.size:
        cand = neighbours[frontier].ravel()
        new = ~visited[cand]
        right = cand[new]
        if right.size == 0:
            break
        src = np.repeat(frontier, width)[new]
        parent[right] = src  # with repeats, one writer wins ...
        right = right[parent[right] == src]  # ... and is kept: unique newly reached right vertices
        visited[right] = True
        mates = mate_right[right]
        free_right = mates < 0
        ends.append(right[free_right])
        frontier = mates[~free_right]
    ends = np.concatenate(ends) if ends else np.zeros(0, np.int64)
    if ends.size == 0:
        return False
    # walk every end back to its root; chains differ in length, finished ones drop out
    steps = []  # (path ids, left vertices, right vertices): each left is re-matched to the right beside it
    root = np.empty(ends.size, dtype=np.int64)
    ids, right = np.arange(ends.size), ends
    while ids.size:
        left = parent[right]
        steps.append((ids, left, right))
        up = mate_left[left]
        done = up < 0
        root[ids[done]] = left[done]
        ids, right = ids[~done], up[~done]
    path_of_root = np.empty(mate_left.size, dtype=np.int64)
    path_of_root[root] = np.arange(ends.size)  # one writer per root wins: one path per tree
    keep = path_of_root[root] == np.arange(ends.size)
    for ids, left, right in steps:
        sel = keep[ids]
        mate_left[left[sel]] = right[sel]
        mate_right[right[sel]] = left[sel]
    return True


class Annotation:
    """One annotator's boundary pixels, indexed for repeated matching against many predictions."""

    def __init__(self, gt: np.ndarray, offsets: np.ndarray):
        import cv2

        height, width = gt.shape
        self.pad = int(np.abs(offsets).max(initial=0))
        self.width_padded = width + 2 * self.pad
        self.pixels = np.flatnonzero(gt)
        index = np.full((height + 2 * self.pad, self.width_padded), -1, dtype=np.int32)
        ys, xs = np.divmod(self.pixels, width)
        index[ys + self.pad, xs + self.pad] = np.arange(self.pixels.size, dtype=np.int32)
        self.index = index.ravel()
        self.flat_offsets = (offsets[:, 0] * self.width_padded + offsets[:, 1]).astype(np.int32)
        kernel = np.zeros((2 * self.pad + 1, 2 * self.pad + 1), dtype=np.uint8)
        kernel[offsets[:, 0] + self.pad, offsets[:, 1] + self.pad] = 1
        self.reach = cv2.dilate(gt.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        self.reach = self.reach.ravel().astype(bool)  # pixels within the tolerance of some GT pixel
        self.previous: np.ndarray | None = None  # GT partner per pixel in the last warm-started call
        self.previous_pixels = np.zeros(0, dtype=np.int64)

    def mates(self, pred_pixels: np.ndarray, width: int, warm_start: bool = False) -> np.ndarray:
        """Flat ids of predicted pixels in an image ``width`` wide -> ``(P,)`` int64 GT partner index or -1.

        ``warm_start``: start from the pairs of the previous call whose predicted pixel is still present
        (a nearby threshold gives a similar map); the result is still a maximum matching.
        """
        mate = np.full(pred_pixels.size, -1, dtype=np.int64)
        near = np.flatnonzero(self.reach[pred_pixels]) if self.pixels.size else np.zeros(0, np.int64)
        if near.size:
            ys, xs = np.divmod(pred_pixels[near], width)
            base = ((ys + self.pad) * self.width_padded + xs + self.pad).astype(np.int32)
            initial = self.previous[pred_pixels[near]] if warm_start and self.previous is not None else None
            mate[near], _ = maximum_matching(
                self.index[base[:, None] + self.flat_offsets], self.pixels.size, initial
            )
        if warm_start:
            if self.previous is None:
                self.previous = np.full(self.reach.size, -1, dtype=np.int64)
            self.previous[self.previous_pixels] = -1
            self.previous_pixels = pred_pixels[mate >= 0]
            self.previous[self.previous_pixels] = mate[mate >= 0]
        return mate


def match_radius(shape: tuple[int, int], max_dist: float = BSDS_MAX_DIST) -> float:
    """Matching radius in pixels: ``max_dist`` times the image diagonal (BSDS ``correspondPixels``)."""
    return max_dist * math.hypot(shape[0], shape[1])


def correspond_pixels(
    pred: np.ndarray, gt: np.ndarray, max_dist: float = BSDS_MAX_DIST, matcher: Matcher = "exact"
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of two boundary maps within ``max_dist * diagonal`` pixels (inclusive).

    Args:
        pred, gt: ``(H, W)`` boundary maps (nonzero = boundary pixel), used as given (no thinning).
        max_dist: tolerance as a fraction of the image diagonal.
        matcher: ``"exact"`` (maximum-cardinality matching) or ``"csa"`` (pyEdgeEval's official CSA code).

    Returns:
        ``(pred_matched, gt_matched)``: ``(H, W)`` bool maps of the pixels that found a partner.
    """
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"pred and gt must be 2-D maps of one shape, got {pred.shape} and {gt.shape}")
    if matcher == "csa":
        match1, match2, _, _ = _csa()(pred, gt, max_dist=max_dist)
        return match1 > 0, match2 > 0
    _check_matcher(matcher)
    annotation = Annotation(gt, disk_offsets(match_radius(pred.shape, max_dist)))
    pred_pixels = np.flatnonzero(pred)
    mate = annotation.mates(pred_pixels, pred.shape[1])
    pred_matched = np.zeros(pred.size, dtype=bool)
    pred_matched[pred_pixels[mate >= 0]] = True
    gt_matched = np.zeros(gt.size, dtype=bool)
    gt_matched[annotation.pixels[mate[mate >= 0]]] = True
    return pred_matched.reshape(pred.shape), gt_matched.reshape(gt.shape)


@lru_cache(maxsize=1)
def _csa() -> Callable:
    try:
        from pyEdgeEval._lib import correspond_pixels as csa_correspond_pixels
    except ImportError as error:
        raise ImportError(
            "matcher='csa' needs pyEdgeEval (the official BSDS CSA matcher): pip install pyedgeeval"
        ) from error
    return csa_correspond_pixels


def _check_matcher(matcher: str) -> None:
    if matcher not in MATCHERS:
        raise ValueError(f"matcher must be one of {MATCHERS}, got {matcher!r}")


__all__ = [
    "Annotation",
    "BSDS_MAX_DIST",
    "MATCHERS",
    "correspond_pixels",
    "disk_offsets",
    "match_radius",
    "maximum_matching",
]
