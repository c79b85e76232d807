"""Label-map operations: area ordering, region adjacency, and budgeted region merging.

A segmentation is always a label map: an ``(H, W)`` integer array where every pixel carries the id of its
region. Everything here works on label maps with whole-image passes (``bincount``, ``ufunc.at``, gathers)
and never builds one dense mask per region.
"""

from __future__ import annotations

import heapq
from typing import Literal

import numpy as np

from .settings import MERGE_ORDERS

MergeOrder = Literal["weakest_boundary", "smallest_region"]


def _compact(label_map: np.ndarray) -> tuple[np.ndarray, int]:
    """Flat int32/int64 view of a label map with ids in ``0..m-1`` (some ids may be unused). Returns ``(flat, m)``."""
    flat = np.asarray(label_map).ravel()
    if flat.size == 0:
        return flat.astype(np.int64), 0
    lo, hi = int(flat.min()), int(flat.max())
    if lo >= 0 and hi < 4 * flat.size + 1024:
        if flat.dtype not in (np.int32, np.int64):
            flat = flat.astype(np.int32 if hi < 2**31 - 1 else np.int64)
        return flat, hi + 1
    uniques, inverse = np.unique(flat, return_inverse=True)
    return inverse.astype(np.int64).ravel(), len(uniques)


_CHUNK = 1 << 16  # pixels per pass of the whole-image count and gather below


def _areas(flat: np.ndarray, m: int) -> np.ndarray:
    """``np.bincount(flat, minlength=m)`` (``(m,)`` int64) in chunks: bincount turns int32 ids into an int64
    copy, 8 bytes per pixel, which chunks keep to a few hundred kB."""
    areas = np.zeros(m, dtype=np.int64)
    for start in range(0, flat.size, _CHUNK):  # a few dozen whole-array passes, not a loop over pixels
        areas += np.bincount(flat[start : start + _CHUNK], minlength=m)
    return areas


def _apply_lut(lut: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """``lut[flat]`` as a new int32 array, in chunks for the same reason as ``_areas`` (and a little faster)."""
    out = np.empty(flat.size, dtype=np.int32)
    for start in range(0, flat.size, _CHUNK):
        np.take(lut, flat[start : start + _CHUNK], out=out[start : start + _CHUNK])
    return out


def _area_order_lut(areas: np.ndarray, tie_key: np.ndarray | None = None) -> np.ndarray:
    """Lookup table old id -> new id: area descending, ties by ``tie_key`` (default: the old id); unused -> -1."""
    present = np.flatnonzero(areas > 0)
    keys = present if tie_key is None else tie_key[present]
    order = present[np.lexsort((keys, -areas[present]))]
    lut = np.full(len(areas), -1, dtype=np.int32)
    lut[order] = np.arange(len(order), dtype=np.int32)
    return lut


def relabel_by_area(label_map: np.ndarray) -> np.ndarray:
    """Relabel a segmentation to contiguous ids ``0..n-1`` in area-descending order.

    Args:
        label_map: ``(H, W)`` integer array; any ids, not necessarily contiguous.

    Returns:
        ``(H, W)`` int32 label map. Label 0 is the largest region; equal areas keep the order of their
        input ids (for EPOC: the order in which their seeds first appear in raster order), so the result
        is deterministic.
    """
    label_map = np.asarray(label_map)
    flat, m = _compact(label_map)
    return _apply_lut(_area_order_lut(_areas(flat, m)), flat).reshape(label_map.shape)


def region_adjacency(
    label_map: np.ndarray, boundary_probs: np.ndarray, num_labels: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Region adjacency graph of a label map, weighted by the boundary probabilities along each border.

    Every pair of 4-neighbouring pixels with different labels is one border element, weighted by the
    mean of the two pixels' boundary probabilities.

    Args:
        label_map: ``(H, W)`` integer label map with ids in ``0..num_labels-1``.
        boundary_probs: ``(H, W)`` float array.
        num_labels: number of ids (default ``label_map.max() + 1``).

    Returns:
        ``edges`` ``(E, 2)`` int64 with ``edges[:, 0] < edges[:, 1]``, ``weight_sum`` ``(E,)`` float64 (sum
        of border-element weights) and ``border_length`` ``(E,)`` int64 (number of border elements).
        The mean boundary strength of an edge is ``weight_sum / border_length``.
    """
    label_map = np.asarray(label_map)
    probs = np.asarray(boundary_probs, dtype=np.float32)
    height, width = label_map.shape
    n = int(label_map.max()) + 1 if num_labels is None else num_labels
    flat_labels, flat_probs = label_map.ravel(), probs.ravel()
    keys, weights = [], []
    for cut, step in (
        (label_map[:, :-1] != label_map[:, 1:], 1),  # (H, W-1) bool: horizontal pairs that differ
        (label_map[:-1, :] != label_map[1:, :], width),  # (H-1, W) bool: vertical pairs that differ
    ):
        first = np.flatnonzero(cut)  # (E,) indices into the cut map
        if step == 1:
            first = first + first // (width - 1)  # -> flat image index of the left pixel
        la, lb = flat_labels[first].astype(np.int64), flat_labels[first + step].astype(np.int64)
        keys.append(np.minimum(la, lb) * n + np.maximum(la, lb))
        weights.append((flat_probs[first] + flat_probs[first + step]) * 0.5)
    key = np.concatenate(keys)
    weight = np.concatenate(weights).astype(np.float64)
    if key.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty.reshape(0, 2), np.zeros(0), empty
    unique_keys, inverse = np.unique(key, return_inverse=True)
    weight_sum = np.bincount(inverse, weights=weight, minlength=len(unique_keys))
    border_length = np.bincount(inverse, minlength=len(unique_keys)).astype(np.int64)
    edges = np.stack([unique_keys // n, unique_keys % n], axis=1)
    return edges, weight_sum, border_length


class _RegionGraph:
    """Mutable region adjacency graph for greedy merging (a graph of regions, never of pixels)."""

    def __init__(
        self, areas: np.ndarray, edges: np.ndarray, weight_sum: np.ndarray, border_length: np.ndarray
    ):
        self.area = areas.tolist()
        self.alive = [a > 0 for a in self.area]
        self.num_alive = sum(self.alive)
        self.parent = list(range(len(self.area)))
        self.adj: list[dict[int, list[float]]] = [{} for _ in self.area]
        for (a, b), s, c in zip(edges.tolist(), weight_sum.tolist(), border_length.tolist()):
            self.adj[a][b] = self.adj[b][a] = [s, c]

    def strength(self, a: int, b: int) -> float:
        s, c = self.adj[a][b]
        return s / c

    def weakest_neighbour(self, r: int) -> int | None:
        nbrs = self.adj[r]
        if not nbrs:
            return None
        return min(nbrs, key=lambda s: (nbrs[s][0] / nbrs[s][1], s))

    def merge(self, a: int, b: int) -> tuple[int, list[int]]:
        """Merge ``a`` and ``b``; returns the survivor and the neighbours whose edge to it changed."""
        if len(self.adj[a]) < len(self.adj[b]):
            a, b = b, a
        adj_a, adj_b = self.adj[a], self.adj[b]
        del adj_a[b]
        del adj_b[a]
        changed = []
        for c, (s, n) in adj_b.items():
            del self.adj[c][b]
            if c in adj_a:
                edge = adj_a[c]
                edge[0] += s
                edge[1] += n
            else:
                edge = [s, n]
                adj_a[c] = edge
            self.adj[c][a] = edge
            changed.append(c)
        self.adj[b] = {}
        self.parent[b] = a
        self.alive[b] = False
        self.area[a] += self.area[b]
        self.area[b] = 0
        self.num_alive -= 1
        return a, changed

    def lookup_table(self) -> np.ndarray:
        """Old id -> id of the surviving region it was merged into."""
        parent = np.asarray(self.parent, dtype=np.int64)
        while True:  # pointer jumping: O(log depth) vectorised passes
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand


def _merge_smallest_first(graph: _RegionGraph, target: int, min_area: int) -> None:
    """Merge the smallest region into its weakest-bordered neighbour while it is below ``min_area`` or
    more than ``target`` regions remain."""
    heap = [(area, r) for r, area in enumerate(graph.area) if graph.alive[r]]
    heapq.heapify(heap)
    while heap:
        area, r = heapq.heappop(heap)
        if not graph.alive[r] or graph.area[r] != area:
            continue
        if graph.num_alive <= target and area >= min_area:
            break
        other = graph.weakest_neighbour(r)
        if other is None:
            continue
        survivor, _ = graph.merge(r, other)
        heapq.heappush(heap, (graph.area[survivor], survivor))


def _merge_weakest_first(graph: _RegionGraph, target: int) -> None:
    """Merge across the weakest shared boundary (mean probability along it) until ``target`` regions remain;
    merged borders are pooled, as when an ultrametric contour map is built."""
    heap = []
    for a, nbrs in enumerate(graph.adj):
        for b, (s, c) in nbrs.items():
            if a < b:
                heap.append((s / c, a, b))
    heapq.heapify(heap)
    while heap and graph.num_alive > target:
        strength, a, b = heapq.heappop(heap)
        if (
            not (graph.alive[a] and graph.alive[b])
            or b not in graph.adj[a]
            or graph.strength(a, b) != strength
        ):
            continue  # stale entry: the edge was merged away or its strength changed
        survivor, changed = graph.merge(a, b)
        for c in changed:
            lo, hi = min(survivor, c), max(survivor, c)
            heapq.heappush(heap, (graph.strength(lo, hi), lo, hi))


def merge_regions(
    label_map: np.ndarray,
    boundary_probs: np.ndarray,
    *,
    max_regions: int | None = None,
    min_area: int = 0,
    order: MergeOrder = "weakest_boundary",
) -> np.ndarray:
    """Merge adjacent regions until every region has ``min_area`` pixels and at most ``max_regions`` remain.

    No pixel is ever dropped: regions are only unioned with a neighbour. Regions smaller than ``min_area``
    are merged first, smallest first, into the neighbour across their weakest border. Then, while more
    than ``max_regions`` remain, ``order="weakest_boundary"`` merges the pair of regions whose shared
    border has the lowest mean boundary probability (recomputed as borders merge, like an ultrametric
    contour map), so the strongest boundaries survive; ``order="smallest_region"`` merges the smallest
    region into its weakest-bordered neighbour instead (a baseline).

    Args:
        label_map: ``(H, W)`` integer label map (any ids).
        boundary_probs: ``(H, W)`` float boundary probabilities in ``[0, 1]``.
        max_regions: region budget (``None``: no budget).
        min_area: smallest region area in pixels kept as its own region.
        order: ``"weakest_boundary"`` or ``"smallest_region"``.

    Returns:
        ``(H, W)`` int32 label map with ids ``0..n-1`` in area-descending order.
    """
    if order not in MERGE_ORDERS:
        raise ValueError(f"order must be one of {MERGE_ORDERS}, got {order!r}")
    if max_regions is not None and max_regions < 1:
        raise ValueError(f"max_regions must be >= 1, got {max_regions}")
    label_map = np.asarray(label_map)
    flat, m = _compact(label_map)
    areas = _areas(flat, m)
    num_regions = int((areas > 0).sum())
    target = num_regions if max_regions is None else max_regions
    needs_merge = num_regions > target or (min_area > 1 and areas[areas > 0].min() < min_area)
    if needs_merge:
        graph = _RegionGraph(areas, *region_adjacency(flat.reshape(label_map.shape), boundary_probs, m))
        if min_area > 1 or order == "smallest_region":
            _merge_smallest_first(graph, target if order == "smallest_region" else graph.num_alive, min_area)
        if order == "weakest_boundary":
            _merge_weakest_first(graph, target)
        root = graph.lookup_table()  # (m,) old id -> id of the region it was merged into
        merged_areas = np.bincount(root, weights=areas, minlength=m)  # (m,) nonzero for survivors only
        first_member = np.full(m, m, dtype=np.int64)  # (m,) smallest old id in each merged group
        np.minimum.at(first_member, root, np.arange(m))
        lut = _area_order_lut(merged_areas, first_member)[root]  # (m,) old id -> final id
    else:
        lut = _area_order_lut(areas)
    return _apply_lut(lut, flat).reshape(label_map.shape)


__all__ = [
    "MERGE_ORDERS",
    "merge_regions",
    "region_adjacency",
    "relabel_by_area",
]
