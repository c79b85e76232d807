"""The boundary-training dataset: items -> normalised pixels and boundary targets, augmented reproducibly."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...segmentation.losses import IGNORE_INDEX
from ...segmentation.predictor import IMAGENET_MEAN, IMAGENET_STD
from .geometry import transform_sample
from .sources import BoundaryItem
from .targets import ANNOTATOR_MODES, combine_annotators


class BoundaryDataset(torch.utils.data.Dataset):
    """Items -> ``{"pixel_values": (3, C, C) float32 (normalised), "labels": (C, C) float32}``, ``C = crop_size``
    (default ``resolution``, the size the longer image side is scaled to).

    ``labels`` is the boundary target in [0, 1] with ``IGNORE_INDEX`` (-1) on padding. With ``augment=True``
    each index draws its own augmentation from ``numpy.random.default_rng([seed, index])``, so a run is
    reproducible whatever the number of workers or processes; ``repeats`` makes the dataset ``repeats`` times
    longer so that every pass over an image sees a different augmentation.
    """

    def __init__(
        self,
        items: Sequence[BoundaryItem],
        resolution: int = 512,
        *,
        thickness: int = 3,
        annotators: str = "union",
        augment: bool = False,
        scale_range: tuple[float, float] = (0.75, 1.5),
        hflip: bool = True,
        color_jitter: float = 0.3,
        seed: int = 0,
        repeats: int = 1,
        crop_size: int | None = None,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
    ):
        if not items:
            raise ValueError("BoundaryDataset needs at least one item")
        if resolution < 32:
            raise ValueError(f"resolution must be >= 32, got {resolution}")
        if annotators not in ANNOTATOR_MODES:
            raise ValueError(f"annotators must be one of {ANNOTATOR_MODES}, got {annotators!r}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        if crop_size is not None and crop_size < 32:
            raise ValueError(f"crop_size must be >= 32, got {crop_size}")
        self.items = list(items)
        self.resolution, self.thickness, self.annotators = int(resolution), int(thickness), annotators
        self.augment, self.scale_range = augment, tuple(scale_range)
        self.hflip, self.color_jitter = hflip, color_jitter
        self.seed, self.repeats, self.crop_size = seed, repeats, crop_size
        self.mean = np.asarray(image_mean, dtype=np.float32) * 255
        self.std = np.asarray(image_std, dtype=np.float32) * 255

    def __len__(self) -> int:
        return len(self.items) * self.repeats

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The transformed image ``(C, C, 3)`` uint8 and its target ``(C, C)`` float32 (-1 on padding)."""
        load_image_fn, load_labels_fn = self.items[index % len(self.items)]
        image, label_maps = load_image_fn(), load_labels_fn()
        rng = np.random.default_rng([self.seed, index]) if self.augment else None
        image, label_maps, valid = transform_sample(
            image,
            label_maps,
            self.resolution,
            rng,
            self.scale_range,
            self.hflip,
            self.color_jitter,
            self.crop_size,
        )
        target = combine_annotators(label_maps, self.thickness, self.annotators)
        target[~valid] = IGNORE_INDEX
        return image, target

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, target = self.sample(index)
        pixels = (image.astype(np.float32) - self.mean) / self.std  # (C, C, 3); padding is normalised to 0
        pixels[target == IGNORE_INDEX] = 0.0
        return {
            "pixel_values": torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))),
            "labels": torch.from_numpy(target),
        }


__all__ = ["BoundaryDataset"]
