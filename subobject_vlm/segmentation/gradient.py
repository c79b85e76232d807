"""A classical boundary map: multi-scale colour gradients in CIELAB (no learned weights).

Used as the offline fallback boundary model, and as the boundary signal when baselines (SLIC,
Felzenszwalb) are merged to an exact token count.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def gradient_boundary_probs(
    image: np.ndarray, sigmas: Sequence[float] = (1.0, 2.0, 4.0), max_side: int = 512
) -> np.ndarray:
    """Boundary probabilities from multi-scale CIELAB gradient magnitudes.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        sigmas: Gaussian smoothing scales (pixels at the working resolution).
        max_side: the image is downscaled so its longer side is at most this before filtering.

    Returns:
        ``(H, W)`` float32 in [0, 1]: the gradient divided by its per-image 99th percentile, clipped.
    """
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    work = image
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        work = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(work, cv2.COLOR_RGB2LAB).astype(np.float32)  # (h, w, 3)
    magnitude = np.zeros(lab.shape[:2], dtype=np.float32)  # (h, w)
    for sigma in sigmas:
        blurred = cv2.GaussianBlur(lab, (0, 0), sigma)
        gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3)
        magnitude += np.sqrt((gx * gx + gy * gy).sum(axis=2)) * sigma  # scale-normalised
    magnitude /= len(sigmas)
    reference = float(np.percentile(magnitude, 99)) if magnitude.size > 1 else 0.0
    if reference <= 1e-6:
        probs = np.zeros_like(magnitude)
    else:
        probs = np.clip(magnitude / reference, 0.0, 1.0)
    if probs.shape != (height, width):
        probs = cv2.resize(probs, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(probs, 0.0, 1.0).astype(np.float32)


class GradientBoundaryModel:
    """The classical boundary model behind the ``BoundaryModel`` interface (``predict(images)``)."""

    name = "gradient"

    def __init__(self, sigmas: Sequence[float] = (1.0, 2.0, 4.0), max_side: int = 512):
        self.sigmas = tuple(sigmas)
        self.max_side = max_side

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``images``: list of ``(H, W, 3)`` uint8 -> list of ``(H, W)`` float32 boundary probabilities."""
        return [gradient_boundary_probs(image, self.sigmas, self.max_side) for image in images]

    def __repr__(self) -> str:
        return f"GradientBoundaryModel(sigmas={self.sigmas}, max_side={self.max_side})"


__all__ = ["GradientBoundaryModel", "gradient_boundary_probs"]
