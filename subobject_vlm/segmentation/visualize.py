"""Pictures of a segmentation: boundary probabilities, binarized boundaries, mean-colour reconstruction,
region overlay, and a composite PNG with all four (no plotting library needed)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from ..atomic import save_image

# A white -> blue-green ramp (like matplotlib's PuBuGn), 5 anchors.
_RAMP = np.array(
    [[255, 247, 251], [208, 209, 230], [103, 169, 207], [2, 129, 138], [1, 70, 54]], dtype=np.float32
)


def colorize_probs(boundary_probs: np.ndarray) -> np.ndarray:
    """``(H, W)`` float in [0, 1] -> ``(H, W, 3)`` uint8 colour image."""
    position = np.clip(boundary_probs, 0, 1) * (len(_RAMP) - 1)
    low = np.floor(position).astype(np.int64).clip(0, len(_RAMP) - 2)
    frac = (position - low)[..., None]
    return np.round(_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).astype(np.uint8)


def label_boundaries(label_map: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels whose right or lower neighbour has another label."""
    edges = np.zeros(label_map.shape, dtype=bool)
    edges[:, :-1] |= label_map[:, :-1] != label_map[:, 1:]
    edges[:-1, :] |= label_map[:-1, :] != label_map[1:, :]
    return edges


def mean_colour_image(image: np.ndarray, label_map: np.ndarray) -> np.ndarray:
    """Every region painted with its mean colour: ``(H, W, 3)`` uint8 (vectorised with bincount)."""
    flat = label_map.ravel()
    n = int(flat.max()) + 1
    area = np.maximum(np.bincount(flat, minlength=n), 1)  # (n,)
    means = np.stack(
        [np.bincount(flat, weights=image[..., c].ravel(), minlength=n) / area for c in range(3)], 1
    )
    return np.round(means).astype(np.uint8)[label_map]


def region_overlay(
    image: np.ndarray, label_map: np.ndarray, alpha: float = 0.45, seed: int = 0
) -> np.ndarray:
    """Image blended with one random colour per region, region borders in white: ``(H, W, 3)`` uint8."""
    n = int(label_map.max()) + 1
    palette = np.random.default_rng(seed).integers(0, 256, size=(n, 3)).astype(np.float32)
    blended = image.astype(np.float32) * (1 - alpha) + palette[label_map] * alpha
    blended[label_boundaries(label_map)] = 255
    return np.round(blended).astype(np.uint8)


def composite(
    image: np.ndarray, label_map: np.ndarray, boundary_probs: np.ndarray | None = None, threshold: float = 0.1
) -> np.ndarray:
    """The four panels side by side with titles: ``(H', W', 3)`` uint8.

    Panels: boundary probabilities (or the input image when there are none), boundaries binarized at
    ``threshold`` (or the region borders), mean-colour reconstruction, region overlay.
    """
    n = int(label_map.max()) + 1
    if boundary_probs is not None:
        first, first_title = colorize_probs(boundary_probs), "boundary probabilities"
        binary = boundary_probs > threshold
        second_title = f"binarized (t={threshold:g})"
    else:
        first, first_title = image, "input"
        binary = label_boundaries(label_map)
        second_title = "region borders"
    second = np.where(binary[..., None], 0, 255).astype(np.uint8).repeat(3, axis=2)
    panels = [
        (first, first_title),
        (second, second_title),
        (mean_colour_image(image, label_map), f"{n} subobjects (mean colour)"),
        (region_overlay(image, label_map), "overlay"),
    ]
    height, width = image.shape[:2]
    title_h, gap = 18, 4
    canvas = Image.new("RGB", (4 * width + 3 * gap, height + title_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (panel, title) in enumerate(panels):
        x = i * (width + gap)
        canvas.paste(Image.fromarray(panel), (x, title_h))
        draw.text((x + 2, 3), title, fill=(0, 0, 0))
    return np.asarray(canvas)


def save_composite(
    path: str | os.PathLike,
    image: np.ndarray,
    label_map: np.ndarray,
    boundary_probs: np.ndarray | None = None,
    threshold: float = 0.1,
    max_side: int = 768,
) -> None:
    """Write the composite PNG (atomically); large images are shown downscaled so the file stays small."""
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        label_map = np.asarray(Image.fromarray(label_map.astype(np.int32)).resize(size, Image.NEAREST))
        if boundary_probs is not None:
            boundary_probs = np.asarray(
                Image.fromarray(boundary_probs.astype(np.float32)).resize(size, Image.BILINEAR)
            )
    save_image(path, Image.fromarray(composite(image, label_map, boundary_probs, threshold)))


__all__ = [
    "colorize_probs",
    "composite",
    "label_boundaries",
    "mean_colour_image",
    "region_overlay",
    "save_composite",
]
