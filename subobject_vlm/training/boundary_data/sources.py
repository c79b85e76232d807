"""Data sources as boundary items: BSDS500, an image folder with a label-map folder, a ``datasets.Dataset``.

An *item* is a pair of zero-argument loaders ``(load_image, load_label_maps)``: ``load_image() -> (H, W, 3)
uint8`` and ``load_label_maps() -> (K, H, W) int32`` (one label map per annotator)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...data.bsds import find_bsds_root
from ...image_utils import load_image, to_rgb_uint8
from .decoding import decode_mask, label_image_to_label_map, load_bsds_label_maps, load_label_map_file
from .targets import masks_to_label_map

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

BoundaryItem = tuple[Callable[[], np.ndarray], Callable[[], np.ndarray]]


def bsds_items(
    root: str | os.PathLike | None = None, split: str = "train", limit: int | None = None
) -> list[BoundaryItem]:
    """BSDS500 ``split`` as items (all annotators of each image; see ``combine_annotators``)."""
    root = find_bsds_root(root)
    gt_dir, image_dir = root / "groundTruth" / split, root / "images" / split
    mat_paths = sorted(gt_dir.glob("*.mat"))[:limit]
    if not mat_paths:
        raise FileNotFoundError(f"no BSDS ground truth in {gt_dir} (split {split!r})")
    items = []
    for mat_path in mat_paths:
        image_path = image_dir / f"{mat_path.stem}.jpg"
        if not image_path.exists():
            raise FileNotFoundError(f"{image_path} is missing for ground truth {mat_path}")
        items.append(
            (functools.partial(load_image, image_path), functools.partial(load_bsds_label_maps, mat_path))
        )
    return items


def folder_items(
    images: str | os.PathLike, labels: str | os.PathLike, limit: int | None = None
) -> list[BoundaryItem]:
    """An image folder and a folder of label-map PNGs (or ``.npy``), matched by file stem."""
    images, labels = Path(images), Path(labels)
    for folder in (images, labels):
        if not folder.is_dir():
            raise FileNotFoundError(f"data folder {folder} does not exist")
    label_paths = {p.stem: p for p in sorted(labels.iterdir()) if p.suffix.lower() in (".png", ".npy")}
    items = []
    for image_path in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        if image_path.stem in label_paths:
            items.append(
                (
                    functools.partial(load_image, image_path),
                    functools.partial(load_label_map_file, label_paths[image_path.stem]),
                )
            )
    if not items:
        raise FileNotFoundError(f"no image in {images} has a label map with the same stem in {labels}")
    return items[:limit]


def _hf_image(dataset, index: int, column: str) -> np.ndarray:
    return to_rgb_uint8(dataset[index][column], name=f"{column}[{index}]")


def _hf_label_map(dataset, index: int, column: str) -> np.ndarray:
    return label_image_to_label_map(dataset[index][column])[None]


def _hf_masks(dataset, index: int, image_column: str, column: str) -> np.ndarray:
    record = dataset[index]
    masks = [decode_mask(mask) for mask in record[column]]
    shape = to_rgb_uint8(record[image_column], name=image_column).shape[:2] if not masks else None
    return masks_to_label_map(masks, shape)[None]


def hf_items(
    dataset,
    image_column: str = "image",
    masks_column: str | None = None,
    label_map_column: str | None = None,
    limit: int | None = None,
) -> list[BoundaryItem]:
    """A ``datasets.Dataset`` as items: an image column plus either a label-map column (image or array) or a
    column holding a list of instance masks per row (binary images/arrays or COCO RLE dicts, SA-1B style)."""
    if (masks_column is None) == (label_map_column is None):
        raise ValueError("give exactly one of masks_column (a list of instance masks) or label_map_column")
    for column in (image_column, masks_column or label_map_column):
        if column not in dataset.column_names:
            raise ValueError(f"dataset has no column {column!r}; columns: {dataset.column_names}")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    items = []
    for index in range(count):
        target = (
            functools.partial(_hf_label_map, dataset, index, label_map_column)
            if label_map_column
            else functools.partial(_hf_masks, dataset, index, image_column, masks_column)
        )
        items.append((functools.partial(_hf_image, dataset, index, image_column), target))
    return items


__all__ = ["IMAGE_SUFFIXES", "BoundaryItem", "bsds_items", "folder_items", "hf_items"]
