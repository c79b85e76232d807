"""Label-map operations: area ordering, region adjacency, and budgeted region merging.

A segmentation is always a label map: an ``(H, W)`` integer array where every pixel carries the id of its
region. Everything here works on label maps with whole-image passes (``bincount``, ``ufunc.at``, gathers)
and never builds one dense mask per region.
"""

from __future__ import annotations

import heapq
import numbers
import struct
from typing import Literal

import numpy as np

from .options import MERGE_ORDERS, check_max_tokens

MergeOrder = Literal["weakest_boundary", "smallest_region"]


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_label_map(label_map) -> np.ndarray:
    """``label_map`` as an ``(H, W)`` integer (or bool) array; else ``ValueError`` / ``TypeError`` naming why."""
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise ValueError(f"label_map must be a 2-D (H, W) array, got shape {label_map.shape}")
    if not (np.issubdtype(label_map.dtype, np.integer) or label_map.dtype == bool):
        raise TypeError(f"label_map must hold integer labels, got dtype {label_map.dtype}")
    return label_map


def _as_probs_of(boundary_probs, label_map: np.ndarray) -> np.ndarray:
    """``boundary_probs`` as a numeric array of ``label_map``'s shape; ``ValueError`` naming both shapes."""
    probs = np.asarray(boundary_probs)
    if probs.shape != label_map.shape:
        raise ValueError(
            f"boundary_probs has shape {probs.shape} but label_map has shape {label_map.shape}: "
            "they must describe the same pixels"
        )
    if probs.dtype == bool or not (
        np.issubdtype(probs.dtype, np.floating) or np.issubdtype(probs.dtype, np.integer)
    ):
        raise TypeError(f"boundary_probs must be a float array of probabilities, got dtype {probs.dtype}")
    return probs


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
    label_map = _as_label_map(label_map)
    flat, m = _compact(label_map)
    return _apply_lut(_area_order_lut(_areas(flat, m)), flat).reshape(label_map.shape)


def region_adjacency(
    label_map: np.ndarray, boundary_probs: np.ndarray, num_labels: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Region adjacency graph of a label map, weighted by the boundary probabilities along each border.

    Every pair of 4-neighbouring pixels with different labels is one border element, weighted by the
    mean of the two pixels' boundary probabilities.

    Args:
        label_map: ``(H, W)`` integer label map with ids in ``0..num_labels-1`` (checked).
        boundary_probs: ``(H, W)`` float array, the shape of ``label_map`` (checked).
        num_labels: number of ids (default ``label_map.max() + 1``).

    Returns:
        ``edges`` ``(E, 2)`` int64 with ``edges[:, 0] < edges[:, 1]``, ``weight_sum`` ``(E,)`` float64 (sum
        of border-element weights) and ``border_length`` ``(E,)`` int64 (number of border elements).
        The mean boundary strength of an edge is ``weight_sum / border_length``.
    """
    label_map = _as_label_map(label_map)
    probs = _as_probs_of(boundary_probs, label_map)
    low, high = (int(label_map.min()), int(label_map.max())) if label_map.size else (0, -1)
    if low < 0 or (num_labels is not None and high >= num_labels):
        bound = "" if num_labels is None else f" (num_labels={num_labels})"
        raise ValueError(f"label_map ids must be in 0..num_labels-1{bound}, got {low}..{high}")
    return _region_adjacency(label_map, probs, high + 1 if num_labels is None else num_labels)


def _region_adjacency(
    label_map: np.ndarray, boundary_probs: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``region_adjacency`` of a checked ``(H, W)`` label map with ids in ``0..n-1``."""
    probs = np.asarray(boundary_probs, dtype=np.float32)
    height, width = label_map.shape
    flat_labels, flat_probs = label_map.ravel(), probs.ravel()
    keys, weights = [], []
    for cut, step in (
        (label_map[:, :-1] != label_map[:, 1:], 1),  # (H, W-1) bool: horizontal pairs that differ
        (label_map[:-1, :] != label_map[1:, :], width),  # (H-1, W) bool: vertical pairs that differ
    ):
        first = np.flatnonzero(cut)  # (E,) indices into the cut map
        if cut.shape[1] != width and first.size:  # horizontal pairs (not ``step == 1``: W may be 1)
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
    """Mutable region adjacency graph for greedy merging (a graph of regions, never of pixels).

    ``adj[r]`` maps each neighbour of region ``r`` to the id of their shared edge; ``weight_sum[e]`` and
    ``border_length[e]`` are that edge's statistics (Python lists: scalar access in the merge loops is several
    times faster on lists than on numpy arrays). Merging two regions sums the statistics of the edges both had
    to a common neighbour, so an edge's mean boundary strength is always that of the whole pooled border.
    ``floor[r]``, when given, is the lowest boundary probability inside region ``r`` (a merge keeps the lower).
    """

    def __init__(
        self,
        areas: np.ndarray,
        edges: np.ndarray,
        weight_sum: np.ndarray,
        border_length: np.ndarray,
        floor: np.ndarray | None = None,
    ):
        self.area = areas.tolist()
        self.floor = None if floor is None else floor.astype(np.float64).tolist()
        self.alive = [a > 0 for a in self.area]
        self.num_alive = sum(self.alive)
        self.parent = list(range(len(self.area)))
        self.weight_sum = weight_sum.astype(np.float64).tolist()
        self.border_length = border_length.astype(np.int64).tolist()
        # Both directions of every edge, grouped by source region (a stable radix-like argsort):
        # one dict per region built from slices, not one insertion per edge in Python.
        num_edges = len(edges)
        source = np.concatenate([edges[:, 0], edges[:, 1]])  # (2E,)
        target = np.concatenate([edges[:, 1], edges[:, 0]]).tolist()  # (2E,)
        edge_id = np.concatenate([np.arange(num_edges), np.arange(num_edges)]).tolist()  # (2E,)
        order = np.argsort(source, kind="stable")
        source = source[order]
        target = [target[i] for i in order.tolist()]
        edge_id = [edge_id[i] for i in order.tolist()]
        bounds = np.searchsorted(source, np.arange(len(self.area) + 1)).tolist()  # (m + 1,)
        self.adj: list[dict[int, int]] = [
            dict(zip(target[lo:hi], edge_id[lo:hi])) for lo, hi in zip(bounds[:-1], bounds[1:])
        ]

    def strength(self, a: int, b: int) -> float:
        e = self.adj[a][b]
        return self.weight_sum[e] / self.border_length[e]

    def weakest_neighbour(self, r: int) -> int | None:
        nbrs = self.adj[r]
        if not nbrs:
            return None
        weight_sum, border_length = self.weight_sum, self.border_length
        return min(nbrs, key=lambda s: (weight_sum[nbrs[s]] / border_length[nbrs[s]], s))

    def merge(self, a: int, b: int) -> tuple[int, list[int]]:
        """Merge ``a`` and ``b``; returns the survivor (the one with more neighbours; ``a`` on a tie) and the
        neighbours whose edge to it changed (statistics or ids)."""
        adj = self.adj
        if len(adj[a]) < len(adj[b]):
            a, b = b, a
        adj_a, adj_b = adj[a], adj[b]
        del adj_a[b]
        del adj_b[a]
        weight_sum, border_length = self.weight_sum, self.border_length
        for c, eb in adj_b.items():
            adj_c = adj[c]
            del adj_c[b]
            ea = adj_a.get(c)
            if ea is None:  # a new neighbour of the survivor: the edge keeps its statistics
                adj_a[c] = adj_c[a] = eb
            else:  # a common neighbour: pool the two borders
                weight_sum[ea] += weight_sum[eb]
                border_length[ea] += border_length[eb]
        changed = list(adj_b)
        adj[b] = {}
        self.parent[b] = a
        self.alive[b] = False
        self.area[a] += self.area[b]
        self.area[b] = 0
        if self.floor is not None:
            self.floor[a] = min(self.floor[a], self.floor[b])
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


_FLOAT_BITS = struct.Struct("<d")


def _merge_weakest_first(graph: _RegionGraph, target: int) -> None:
    """Merge across the weakest shared boundary (mean probability along it) until ``target`` regions remain;
    merged borders are pooled, as when an ultrametric contour map is built.

    With ``graph.floor`` the cost of a border is its contrast instead: its mean probability minus the higher
    of the two regions' floors (the depth of the shallower region below the border, as watershed dynamics
    rank minima). A speck whose inside is as high as its border has ~zero contrast and merges first.

    One priority queue of edges with lazy deletion: an entry is one Python int ordering like the tuple
    ``(strength, lo, hi)`` (the strength's IEEE bits, non-negative floats sort as their bits, then the two
    region ids), so ties are broken by the ids. A merge re-queues only the edges of the region with fewer
    neighbours, and a popped entry whose edge is gone or whose strength or ids changed is skipped. A contrast
    can also rise without a re-queue (the survivor's floor drops), so a popped contrast entry is recomputed
    and pushed back when it rose: costs only rise, so the first up-to-date entry popped is the minimum. Cost:
    O((E + Q) log(E + Q)) for E initial edges and Q re-queued edges, the sum over merges of the smaller
    region's degree (1.2 E measured on white noise); memory O(V + E + Q).
    """
    adj, weight_sum, border_length = graph.adj, graph.weight_sum, graph.border_length
    shift = max(1, len(adj) - 1).bit_length()  # bits of a region id
    id_mask = (1 << shift) - 1
    float_bits = _FLOAT_BITS.pack
    from_bytes = int.from_bytes

    floor = graph.floor

    def key(e: int, lo: int, hi: int) -> int:
        cost = weight_sum[e] / border_length[e]
        if floor is not None:  # contrast in [-1, 1], shifted to [0, 2] so that it sorts as its bits
            cost += 1.0 - max(floor[lo], floor[hi])
        bits = from_bytes(float_bits(cost + 0.0), "little")  # + 0.0: no -0.0
        return (((bits << shift) | lo) << shift) | hi

    current = [0] * len(weight_sum)  # edge id -> its latest key: an entry is live only while it is that key
    for lo, nbrs in enumerate(adj):
        for hi, e in nbrs.items():
            if lo < hi:
                current[e] = key(e, lo, hi)
    heap = [entry for entry in current if entry]  # edges pooled away by an earlier min_area pass stay 0
    heapq.heapify(heap)
    pop, push, merge = heapq.heappop, heapq.heappush, graph.merge
    while heap and graph.num_alive > target:
        entry = pop(heap)
        lo, hi = (entry >> shift) & id_mask, entry & id_mask
        e = adj[lo].get(hi)
        if e is None or current[e] != entry:
            continue  # stale entry: the edge was merged away or its strength or ids changed
        if floor is not None:
            latest = key(e, lo, hi)
            if latest != entry:  # its contrast rose since it was queued (a floor dropped): queue it again
                current[e] = latest
                push(heap, latest)
                continue
        survivor, changed = merge(lo, hi)
        adj_survivor = adj[survivor]
        for c in changed:
            e = adj_survivor[c]
            current[e] = key(e, survivor, c) if survivor < c else key(e, c, survivor)
            push(heap, current[e])


def merge_regions(
    label_map: np.ndarray,
    boundary_probs: np.ndarray,
    *,
    max_tokens: int | None = None,
    min_area: int = 0,
    order: MergeOrder = "weakest_boundary",
    contrast: bool = False,
) -> np.ndarray:
    """Merge adjacent regions until every region has ``min_area`` pixels and at most ``max_tokens`` remain.

    No pixel is ever dropped: regions are only unioned with a neighbour. Regions smaller than ``min_area``
    are merged first, smallest first, into the neighbour across their weakest border. Then, while more
    than ``max_tokens`` remain, ``order="weakest_boundary"`` merges the pair of regions whose shared
    border has the lowest mean boundary probability (recomputed as borders merge, like an ultrametric
    contour map), so the strongest boundaries survive; ``order="smallest_region"`` merges the smallest
    region into its weakest-bordered neighbour instead (a baseline).

    Cost: O(HW) to build the region adjacency graph (V regions, E adjacent pairs), then one priority queue
    with lazy deletion: O((E + Q) log(E + Q)) where Q, the edges re-queued by merges, is the sum over merges
    of the smaller region's degree (1.2 E measured on white noise); memory O(V + E + Q), never per pixel. On
    white noise at 1024² merged to 256 regions, EPOC's ``seeds="minima"`` (~210k regions) costs 2-3x
    ``seeds="threshold"`` (~85k): ``benchmarks/bench_epoc_merge.py``.

    Args:
        label_map: ``(H, W)`` integer label map (any ids).
        boundary_probs: ``(H, W)`` float boundary probabilities in ``[0, 1]``.
        max_tokens: the token budget, at most this many regions (``None``: no budget).
        min_area: smallest region area in pixels kept as its own region.
        order: ``"weakest_boundary"`` or ``"smallest_region"``.
        contrast: ``order="weakest_boundary"`` ranks borders by their contrast, the mean probability along the
            border minus the higher of the two regions' lowest probabilities, instead of the mean alone: a
            region whose inside is as high as its border (a speck on a boundary ridge, as the regional minima
            of a sharp map give) merges first, and regions that reach ~0 inside merge as before.

    Returns:
        ``(H, W)`` int32 label map with ids ``0..n-1`` in area-descending order.

    Raises:
        ValueError: ``boundary_probs`` is not the shape of ``label_map``, or an option is out of range.
        TypeError: the labels are not integers, or the probabilities not numbers.
    """
    label_map = _as_label_map(label_map)
    boundary_probs = _as_probs_of(boundary_probs, label_map)
    if order not in MERGE_ORDERS:
        raise ValueError(f"order must be one of {MERGE_ORDERS}, got {order!r}")
    check_max_tokens(max_tokens)
    if not _is_integer(min_area) or min_area < 0:
        raise ValueError(f"min_area must be a non-negative integer, got {min_area!r}")
    return _merge_regions(label_map, boundary_probs, max_tokens, min_area, order, contrast)


def _merge_regions(
    label_map: np.ndarray,
    boundary_probs: np.ndarray,
    max_tokens: int | None,
    min_area: int,
    order: MergeOrder,
    contrast: bool,
) -> np.ndarray:
    """``merge_regions`` on inputs it has checked, or EPOC and the baselines made (their options checked once,
    by ``SegmentationSettings`` or at their own public door)."""
    flat, m = _compact(label_map)
    areas = _areas(flat, m)
    num_regions = int((areas > 0).sum())
    target = num_regions if max_tokens is None else max_tokens
    needs_merge = num_regions > target or (min_area > 1 and areas[areas > 0].min() < min_area)
    if needs_merge:
        floor = None
        if contrast and order == "weakest_boundary":
            floor = np.ones(m, dtype=np.float32)  # (m,) lowest probability inside each region
            probs_flat = np.asarray(boundary_probs, dtype=np.float32).ravel()
            for start in range(0, flat.size, _CHUNK):  # chunked like _areas
                np.minimum.at(floor, flat[start : start + _CHUNK], probs_flat[start : start + _CHUNK])
        graph = _RegionGraph(
            areas, *_region_adjacency(flat.reshape(label_map.shape), boundary_probs, m), floor=floor
        )
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
