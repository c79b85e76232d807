"""Label maps from files and records: label-map images (PNG, ``.npy``), BSDS ``.mat`` ground truth, COCO RLE
instance masks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ...data.bsds import read_bsds_annotations


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


def decode_mask(mask) -> np.ndarray:
    """An instance mask (COCO RLE dict, or a binary image/array) -> ``(H, W)`` bool."""
    if isinstance(mask, dict):
        return decode_rle(mask)
    array = np.asarray(mask)
    if array.ndim == 3:
        array = array[..., 0]
    return array > 0


__all__ = [
    "decode_mask",
    "decode_rle",
    "label_image_to_label_map",
    "load_bsds_label_maps",
    "load_label_map_file",
]
