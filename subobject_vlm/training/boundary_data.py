"""Training data for boundary models: boundary targets, data sources, augmentation.

An *item* is a pair of zero-argument loaders ``(load_image, load_label_maps)``:
``load_image() -> (H, W, 3) uint8`` and ``load_label_maps() -> (K, H, W) int32`` (one label map per
annotator; ``K = 1`` for most datasets, several for BSDS). Geometry (scale, crop, flip) is applied to the image
and the label maps together; the boundary target is drawn afterwards, at the training resolution, so lines
keep their thickness whatever the scale. Pixels outside the image (crop padding) are ignored by the loss.

>>> items = bsds_items(split="train")
>>> dataset = BoundaryDataset(items, resolution=320, augment=True)
>>> sample = dataset[0]   # {"pixel_values": (3, 320, 320) float32, "labels": (320, 320) float32, -1 = ignore}
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ..data.bsds import find_bsds_root, read_bsds_annotations
from ..image_utils import load_image, to_rgb_uint8
from ..segmentation.losses import IGNORE_INDEX
from ..segmentation.predictor import IMAGENET_MEAN, IMAGENET_STD

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
ANNOTATOR_MODES = ("union", "soft")

BoundaryItem = tuple[Callable[[], np.ndarray], Callable[[], np.ndarray]]


# ----------------------------------------------------------------------------------------------- targets


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


# ---------------------------------------------------------------------------------------------- decoding


def label_image_to_label_map(label_image) -> np.ndarray:
    """A label-map image (PIL or array; greyscale/indexed, or RGB where each colour is one label) -> ``(H, W)`` int32."""
    array = np.asarray(label_image)
    if array.ndim == 3:
        array = array[..., :3].astype(np.int32)
        array = (array[..., 0] << 16) | (array[..., 1] << 8) | array[..., 2]
    if array.ndim != 2:
        raise ValueError(f"a label map must be (H, W) or (H, W, 3), got shape {array.shape}")
    return array.astype(np.int32)


def load_label_map_file(path: str | os.PathLike) -> np.ndarray:
    """A label-map PNG (or ``.npy``) -> ``(1, H, W)`` int32."""
    path = Path(path)
    if path.suffix == ".npy":
        return label_image_to_label_map(np.load(path))[None]
    with Image.open(path) as image:
        return label_image_to_label_map(image)[None]


def load_bsds_label_maps(mat_path: str | os.PathLike) -> np.ndarray:
    """A BSDS ground-truth ``.mat`` -> ``(K, H, W)`` int32, one label map per annotator."""
    segmentations, _ = read_bsds_annotations(mat_path)
    return np.stack(segmentations)


def _rle_string_to_counts(text: str) -> list[int]:
    """COCO compressed RLE string -> run lengths (the inverse of pycocotools' ``rleToString``)."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            char = ord(text[position]) - 48
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            position, shift = position + 1, shift + 5
            if not more and char & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def decode_rle(rle: dict) -> np.ndarray:
    """COCO RLE ``{"size": [H, W], "counts": str | list[int]}`` -> ``(H, W)`` bool mask (no pycocotools)."""
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = _rle_string_to_counts(counts)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != height * width:
        raise ValueError(f"RLE counts sum to {counts.sum()}, expected {height} * {width}")
    values = np.arange(len(counts)) % 2 == 1  # runs alternate 0, 1, 0, ... starting with zeros
    flat = np.repeat(values, counts)
    return flat.reshape(width, height).T  # column-major


def _decode_mask(mask) -> np.ndarray:
    if isinstance(mask, dict):
        return decode_rle(mask)
    array = np.asarray(mask)
    if array.ndim == 3:
        array = array[..., 0]
    return array > 0


# ----------------------------------------------------------------------------------------------- sources


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
    masks = [_decode_mask(mask) for mask in record[column]]
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


# ---------------------------------------------------------------------------------------------- geometry


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


# ----------------------------------------------------------------------------------------------- dataset


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


__all__ = [
    "IGNORE_INDEX",
    "BoundaryDataset",
    "BoundaryItem",
    "annotation_to_boundary",
    "bsds_items",
    "combine_annotators",
    "decode_rle",
    "folder_items",
    "hf_items",
    "label_image_to_label_map",
    "load_bsds_label_maps",
    "load_label_map_file",
    "masks_to_label_map",
    "transform_sample",
]
