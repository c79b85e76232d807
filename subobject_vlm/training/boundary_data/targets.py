"""Boundary targets: a label map (or several annotators' maps, or instance masks) -> the lines a boundary
model learns to draw."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np

ANNOTATOR_MODES = ("union", "soft")


@functools.lru_cache(maxsize=16)
def _line_kernel(thickness: int) -> np.ndarray:
    if thickness <= 3:
        return np.ones((thickness, thickness), np.uint8)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (thickness, thickness))


def annotation_to_boundary(label_map: np.ndarray, thickness: int = 3) -> np.ndarray:
    """Boundary target of one label map: ``(H, W)`` int -> ``(H, W)`` uint8 in {0, 1}.

    Every border between two different labels becomes a line ``thickness`` pixels wide, straddling the
    border (``thickness=1``: the pixel on the top/left side of it). The image border is not a boundary.
    """
    if thickness < 1:
        raise ValueError(f"thickness must be >= 1, got {thickness}")
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise ValueError(f"label_map must be (H, W), got shape {label_map.shape}")
    edges = np.zeros(label_map.shape, dtype=np.uint8)
    edges[:, :-1] |= label_map[:, 1:] != label_map[:, :-1]
    edges[:-1, :] |= label_map[1:, :] != label_map[:-1, :]
    if thickness > 1:
        edges = cv2.dilate(edges, _line_kernel(thickness))
    return edges


def combine_annotators(label_maps: np.ndarray, thickness: int = 3, mode: str = "union") -> np.ndarray:
    """Boundary target from several annotators: ``(K, H, W)`` int -> ``(H, W)`` float32 in [0, 1].

    ``union``: 1 where any annotator draws a boundary; ``soft``: the fraction of annotators that do.
    """
    if mode not in ANNOTATOR_MODES:
        raise ValueError(f"annotators mode must be one of {ANNOTATOR_MODES}, got {mode!r}")
    label_maps = np.asarray(label_maps)
    if label_maps.ndim == 2:
        label_maps = label_maps[None]
    boundaries = np.stack([annotation_to_boundary(lm, thickness) for lm in label_maps])  # (K, H, W) uint8
    if mode == "union":
        return boundaries.max(axis=0).astype(np.float32)
    return boundaries.mean(axis=0, dtype=np.float32)


def masks_to_label_map(
    masks: Sequence[np.ndarray] | np.ndarray, shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Instance masks (SA-1B style, may overlap) -> ``(H, W)`` int32 label map.

    Masks are painted largest first, so smaller masks stay on top; label ``i + 1`` is the ``i``-th largest
    mask, ``0`` marks pixels no mask covers. ``shape`` is required when ``masks`` is empty.
    """
    masks = [np.asarray(mask, dtype=bool) for mask in masks]
    if not masks:
        if shape is None:
            raise ValueError("masks_to_label_map: no masks and no shape given")
        return np.zeros(shape, dtype=np.int32)
    if len({mask.shape for mask in masks}) != 1 or masks[0].ndim != 2:
        raise ValueError(f"masks must all be (H, W) of one size, got {sorted({m.shape for m in masks})}")
    areas = np.array([mask.sum() for mask in masks])
    label_map = np.zeros(masks[0].shape, dtype=np.int32)
    for rank, index in enumerate(np.argsort(-areas, kind="stable")):
        label_map[masks[index]] = rank + 1
    return label_map


__all__ = ["ANNOTATOR_MODES", "annotation_to_boundary", "combine_annotators", "masks_to_label_map"]
