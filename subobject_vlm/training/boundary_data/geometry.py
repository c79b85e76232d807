"""Geometry and colour augmentation of one sample: scale, crop/pad, flip and jitter an image and its label
maps together (the boundary target is drawn afterwards, at the training resolution)."""

from __future__ import annotations

import cv2
import numpy as np


def _nearest_indices(source: int, scaled: int) -> np.ndarray:
    """Source index of each pixel of a ``source -> scaled`` resize (pixel-centre convention, as cv2)."""
    return np.minimum(((np.arange(scaled) + 0.5) * source / scaled).astype(np.int64), source - 1)


def _place(scaled: int, resolution: int, rng: np.random.Generator | None) -> tuple[int, int]:
    """(source offset, destination offset) along one axis: random crop if too long, random pad if too short."""
    slack = abs(scaled - resolution)
    offset = int(rng.integers(0, slack + 1)) if rng is not None else 0
    return (offset, 0) if scaled >= resolution else (0, offset)


def transform_sample(
    image: np.ndarray,
    label_maps: np.ndarray,
    resolution: int,
    rng: np.random.Generator | None = None,
    scale_range: tuple[float, float] = (0.75, 1.5),
    hflip: bool = True,
    color_jitter: float = 0.0,
    crop_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale, crop/pad to ``crop_size`` x ``crop_size`` (default ``resolution``), flip and colour-jitter one sample.

    ``image``: ``(H, W, 3)`` uint8; ``label_maps``: ``(K, H, W)`` int. Scale 1 fits the longer side to
    ``resolution`` (what inference with ``keep_aspect`` sees). With ``rng=None`` the transform is deterministic:
    scale 1, top-left placement, no flip, no jitter (validation). Returns the image ``(C, C, 3)`` uint8
    (padding is black), label maps ``(K, C, C)`` int32 (padding repeats the nearest edge label, so the pad
    border draws no boundary) and ``valid`` ``(C, C)`` bool (False on padding).
    """
    height, width = image.shape[:2]
    crop = resolution if crop_size is None else int(crop_size)
    if label_maps.shape[-2:] != (height, width):
        raise ValueError(f"image is {height}x{width} but its label maps are {label_maps.shape[-2:]}")
    scale = resolution / max(height, width)
    if rng is not None:
        scale *= float(rng.uniform(*scale_range))
    scaled_h, scaled_w = max(1, round(height * scale)), max(1, round(width * scale))
    (src_y, dst_y), (src_x, dst_x) = _place(scaled_h, crop, rng), _place(scaled_w, crop, rng)
    flip = rng is not None and hflip and bool(rng.random() < 0.5)

    # image: resize (area when shrinking), then paste the crop into a black canvas
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (scaled_w, scaled_h), interpolation=interpolation)
    h, w = min(scaled_h - src_y, crop - dst_y), min(scaled_w - src_x, crop - dst_x)
    canvas = np.zeros((crop, crop, 3), dtype=np.uint8)
    canvas[dst_y : dst_y + h, dst_x : dst_x + w] = resized[src_y : src_y + h, src_x : src_x + w]
    valid = np.zeros((crop, crop), dtype=bool)
    valid[dst_y : dst_y + h, dst_x : dst_x + w] = True

    # label maps: nearest neighbour through index maps, edge-replicated into the padding
    rows = _nearest_indices(height, scaled_h)[np.clip(np.arange(crop) - dst_y + src_y, 0, scaled_h - 1)]
    cols = _nearest_indices(width, scaled_w)[np.clip(np.arange(crop) - dst_x + src_x, 0, scaled_w - 1)]
    labels = np.asarray(label_maps, dtype=np.int32)[:, rows[:, None], cols[None, :]]  # (K, C, C)

    if flip:
        canvas, labels, valid = canvas[:, ::-1], labels[:, :, ::-1], valid[:, ::-1]
    if rng is not None and color_jitter > 0:
        canvas = _jitter_colours(canvas, color_jitter, rng)
    return np.ascontiguousarray(canvas), np.ascontiguousarray(labels), np.ascontiguousarray(valid)


def _jitter_colours(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation factors in ``[1 - strength, 1 + strength]``; uint8 in/out."""
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, size=3)
    pixels = image.astype(np.float32) * brightness
    grey = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (R, R)
    pixels = (pixels - grey.mean()) * contrast + grey.mean()
    grey = (pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    pixels = (pixels - grey) * saturation + grey
    return np.clip(pixels, 0, 255).astype(np.uint8)


__all__ = ["transform_sample"]
