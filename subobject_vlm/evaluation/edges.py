"""Edge-map post-processing of the BSDS protocol: non-maximum suppression and morphological thinning."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def non_maximum_suppression(
    boundary_probs: np.ndarray, radius: float = 1.0, margin: float = 1.01, smoothing: float = 2.0
) -> np.ndarray:
    """Thin a boundary map to its ridges, as edge detectors are evaluated (Structured Edges' ``edgesNms``).

    The orientation at each pixel is taken from the second derivatives of the map smoothed with a Gaussian of
    ``smoothing`` px; a pixel is zeroed when either neighbour ``radius`` px away across the edge (bilinear) is
    larger than ``margin`` times its value. ``boundary_probs``: ``(H, W)`` float -> ``(H, W)`` float32.
    """
    import cv2

    probs = np.ascontiguousarray(boundary_probs, dtype=np.float32)
    if probs.ndim != 2:
        raise ValueError(f"boundary_probs must be (H, W), got shape {probs.shape}")
    if min(probs.shape) < 2:
        return probs.copy()
    smoothed = cv2.GaussianBlur(probs, (0, 0), smoothing)
    grad_y, grad_x = np.gradient(smoothed)  # (H, W) each
    grad_xy, grad_xx = np.gradient(grad_x)
    grad_yy, _ = np.gradient(grad_y)
    sign = np.where(grad_xy > 0, -1.0, 1.0)  # edgesNms' sign(-Oxy), with 0 -> 1 so axis-aligned ridges work
    orientation = np.mod(np.arctan(grad_yy * sign / (grad_xx + 1e-5)), np.pi)  # (H, W) normal, radians
    height, width = probs.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    step_x, step_y = np.cos(orientation).astype(np.float32), np.sin(orientation).astype(np.float32)
    suppressed = probs.copy()
    for sign in (-1.0, 1.0):
        neighbour = cv2.remap(
            probs,
            cols + sign * radius * step_x,
            rows + sign * radius * step_y,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        suppressed[probs * margin < neighbour] = 0.0
    return suppressed


# --------------------------------------------------------------------------------------------- thinning


@lru_cache(maxsize=1)
def _thin_luts() -> tuple[np.ndarray, np.ndarray]:
    """Guo & Hall (1989) deletion tables for the two sub-iterations, indexed by the 8-neighbour code.

    Bit ``i`` of the code is the neighbour at ``E, NE, N, NW, W, SW, S, SE`` for ``i = 0..7``.
    """
    bits = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(bool)  # (256, 8)
    b = [bits[:, i] for i in range(8)] + [bits[:, 0]]  # b[8] wraps around to b[0]
    crossings = sum((~b[i] & (b[i + 1] | b[(i + 2) % 8])).astype(int) for i in (0, 2, 4, 6))
    n1 = sum((b[k] | b[k - 1]).astype(int) for k in (1, 3, 5, 7))
    n2 = sum((b[k] | b[k + 1]).astype(int) for k in (1, 3, 5, 7))
    g12 = (crossings == 1) & np.isin(np.minimum(n1, n2), (2, 3))
    g3 = ~((b[1] | b[2] | ~b[7]) & b[0])
    g3p = ~((b[5] | b[6] | ~b[3]) & b[4])
    return g12 & g3, g12 & g3p


def thin(bmap: np.ndarray) -> np.ndarray:
    """Morphological thinning to one-pixel lines, as MATLAB's ``bwmorph(bmap, 'thin', inf)``.

    Gives exactly ``skimage.morphology.thin(bmap)`` (Guo-Hall, two parallel sub-iterations until nothing
    changes), but only re-examines pixels next to a deletion, so a dense map costs O(foreground) work
    instead of O(H*W) per iteration (measured on a BSDS image: 2x faster at threshold 0.1, 17x at 0.01).

    Args:
        bmap: ``(H, W)`` array, nonzero = foreground.

    Returns:
        ``(H, W)`` bool.
    """
    bmap = np.asarray(bmap).astype(bool)
    if bmap.ndim != 2:
        raise ValueError(f"thin expects a 2-D map, got shape {bmap.shape}")
    height, width = bmap.shape
    padded = np.zeros((height + 2, width + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = bmap
    flat = padded.ravel()
    wp = width + 2
    neighbours = np.array([1, 1 - wp, -wp, -wp - 1, -1, wp - 1, wp, wp + 1], dtype=np.int64)
    weights = (1 << np.arange(8)).astype(np.int64)
    luts = _thin_luts()

    foreground = np.flatnonzero(flat)
    # only pixels with a background 4-neighbour can be deleted (the crossing number must be 1)
    border = foreground[(flat[foreground[:, None] + neighbours[[0, 2, 4, 6]]] == 0).any(axis=1)]
    owner = np.empty(flat.size, dtype=np.int64)
    deleted = [np.zeros(0, np.int64), np.zeros(0, np.int64)]  # deletions of the last two sub-iterations
    step = 0
    while True:
        if step < 2:
            candidates = (
                np.concatenate([border, (deleted[1][:, None] + neighbours).ravel()]) if step else border
            )
        else:
            candidates = (np.concatenate(deleted)[:, None] + neighbours).ravel()
            if candidates.size == 0:
                break
        candidates = candidates.ravel()
        candidates = candidates[flat[candidates] == 1]
        owner[candidates] = np.arange(candidates.size)  # one writer per pixel wins: unique pixels
        candidates = candidates[owner[candidates] == np.arange(candidates.size)]
        codes = flat[candidates[:, None] + neighbours].astype(np.int64) @ weights
        removed = candidates[luts[step % 2][codes]]
        flat[removed] = 0  # parallel: all decisions above were taken on the state before this line
        deleted = [deleted[1], removed]
        step += 1
        if step >= 2 and deleted[0].size == 0 and deleted[1].size == 0:
            break
    return padded[1:-1, 1:-1].astype(bool)


__all__ = ["non_maximum_suppression", "thin"]
