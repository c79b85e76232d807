"""The demo's work, as plain functions (no web framework): an uploaded file becomes a working image, the image
is tokenized by our boundary model and, at the same token count, by every registered label-map tokenizer
(patches, SLIC, Felzenszwalb, and any registered one) and the mask tokenizers asked for (``sam:CHECKPOINT``, ...:
at most our count), and the results become pictures, region facts and downloads.

>>> segmenter = demo_segmenter()
>>> image, original_shape, notes = prepare_image("photo.jpg")
>>> result = tokenize(image, SegmentationSettings("default", max_tokens=64), segmenter)
>>> result.tokens                            # {"ours": 54, "patch": 54, "slic": 54, "felzenszwalb": 54}
>>> tokenize(image, SegmentationSettings("default", max_tokens=32), segmenter)   # the boundary map is reused

Every label map comes from one ``Segmenter`` (a page keeps one; each new budget, threshold or seed mode is a
``with_settings`` variant sharing its caches), so the boundary model runs once per image, model and model
output options, and a new budget only reruns EPOC and the label-map tokenizers.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..atomic import save_image, save_npy, write_bytes
from ..caching import digest, image_digest
from ..image_utils import IMAGE_EXTENSIONS, ImageLoadError, encode_label_map, load_image
from ..segmentation.registry import (
    LABEL_MAP,
    family_names,
    registered_names,
    registry_entry,
    tokenizer_kind,
)
from ..segmentation.segmenter import Segmenter
from ..segmentation.settings import SegmentationSettings
from ..segmentation.visualize import colorize_probs, composite, mean_colour_image, region_overlay

MAX_SIDE = 1024  # larger images are tokenized (and shown) downscaled to this longer side
MIN_SIDE = 16  # a thinner image has no room for regions
MAX_ASPECT = 16  # longer side / shorter side
# label maps kept (ours and 3 comparisons: 12 budgets) and, apart, boundary maps: at most 384 MB at 1024x1024
CACHE_SIZE = 48
EXAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # scikit-image's photos, offline
WORK_DIR = Path(tempfile.gettempdir()) / "subobject_vlm_demo"
_MODEL_LOCK = threading.Lock()  # one boundary-model call at a time: the server's threads share the CPU


def prepare_image(
    path: str | Path, max_side: int = MAX_SIDE
) -> tuple[np.ndarray, tuple[int, int], list[str]]:
    """Read an uploaded file as the demo's working image.

    Returns:
        ``(H, W, 3)`` uint8 RGB, EXIF-rotated, its longer side at most ``max_side`` (area-averaged down); the
        file's own ``(height, width)``; notes for the user (what was changed).

    Raises:
        ValueError: not an image, corrupt, too large to decode, thinner than ``MIN_SIDE`` or more elongated
            than ``MAX_ASPECT`` — the message names the file by its own name, not a temporary path.
    """
    path = Path(path)
    try:
        image = load_image(path)
    except ImageLoadError as error:
        raise ValueError(str(error).replace(str(path), path.name)) from None
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ValueError(
            f"{path.name}: the image is {width}×{height} px; its shorter side must be at least {MIN_SIDE} px"
        )
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise ValueError(
            f"{path.name}: the image is {width}×{height} px, more elongated than {MAX_ASPECT}:1; "
            "crop it into ordinary photos (the segment command handles panoramas)"
        )
    notes = []
    scale = max_side / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        notes.append(f"{path.name} is {width}×{height} px: tokenized and shown at {size[0]}×{size[1]}")
    return image, (height, width), notes


def demo_segmenter(cache_size: int = CACHE_SIZE) -> Segmenter:
    """The segmenter a page keeps between events (``tokenize`` makes a variant of it for each event's
    settings, sharing its caches); ``model_runs`` counts the boundary model's calls."""
    return Segmenter(SegmentationSettings(), cache_size=cache_size)


def comparison_names(extra: Sequence[str] = ()) -> list[str]:
    """The tokenizers shown next to ours: every registered label-map tokenizer that needs no checkpoint
    (``patch``, ``slic``, ``felzenszwalb``, and any registered one), in registration order, then each of
    ``extra`` (e.g. ``sam:facebook/sam-vit-base``, checked by :func:`check_comparison_name`) not already there."""
    names = registered_names(LABEL_MAP, families=False)
    return list(dict.fromkeys([*names, *(check_comparison_name(name) for name in extra)]))


def check_comparison_name(name: str) -> str:
    """A tokenizer to add to the comparison row, stripped and checked: a label-map tokenizer (a mask family's
    ``sam:CHECKPOINT``, ``mask2former:CHECKPOINT``, ...); a boundary model or an unknown name is refused."""
    name = str(name or "").strip()
    if tokenizer_kind(name) != LABEL_MAP:
        raise ValueError(
            f"--compare {name!r} is a boundary model, not a label-map tokenizer; compare with "
            f"{', '.join(family_names(LABEL_MAP))}"
        )
    return name


@dataclass
class Tokenization:
    """One image tokenized by ours and, once ``add_baselines`` ran, by each comparison at our count.

    Attributes:
        image: ``(H, W, 3)`` uint8, the working image.
        boundary_probs: ``(H, W)`` float32, our boundary map.
        label_maps: ``(H, W)`` int32 label map per tokenizer (``ours`` first, then ``comparison_names()``).
        settings: ours.
        model_seconds: the boundary model's time, ``None`` when its map came from the cache.
        gt_boundaries: ``(H, W)`` bool ground-truth boundaries, one per annotator, or ``None``.
        recall: boundary recall (2 px) per tokenizer against the ground truth, or ``None`` without one.
    """

    image: np.ndarray
    boundary_probs: np.ndarray
    label_maps: dict[str, np.ndarray]
    settings: SegmentationSettings
    model_seconds: float | None
    gt_boundaries: list[np.ndarray] | None = None
    recall: dict[str, float] | None = None

    @property
    def tokens(self) -> dict[str, int]:
        return {name: int(label_map.max()) + 1 for name, label_map in self.label_maps.items()}


def check_boundary_model_name(name: str) -> str:
    """The boundary model box's value, stripped and checked; a label-map tokenizer is refused (it has no
    boundary map; the comparison row shows those)."""
    name = str(name or "").strip()
    if not name:
        raise ValueError("choose a boundary model (default, gradient) or enter a local checkpoint folder")
    if tokenizer_kind(name) == LABEL_MAP:
        raise ValueError(
            f"{name!r} is a label-map tokenizer (no boundary map), shown next to ours at the same token "
            "count; choose a boundary model"
        )
    return name


def tokenize(
    image: np.ndarray,
    settings: SegmentationSettings,
    segmenter: Segmenter,
    gt_boundaries: list[np.ndarray] | None = None,
    baselines: bool = True,
) -> Tokenization:
    """Tokenize ``image`` with ``settings`` (a boundary model and EPOC's options) and, with ``baselines``,
    with each comparison at the same token count (else call ``add_baselines`` later: the page shows ours
    first); with ``gt_boundaries`` (``(H, W)`` bool, one per annotator) also boundary recall. ``segmenter``
    (the page's: ``demo_segmenter``) keeps the boundary maps and label maps between calls."""
    ours = segmenter.with_settings(settings)
    with _MODEL_LOCK:
        runs, start = ours.model_runs, time.perf_counter()
        [probs] = ours.boundary_maps([image])
        seconds = time.perf_counter() - start if ours.model_runs > runs else None
    [label_map] = ours.label_maps([image])  # EPOC on the map just kept
    result = Tokenization(image, probs, {"ours": label_map}, settings, seconds, gt_boundaries)
    _score(result)
    return add_baselines(result, segmenter) if baselines else result


def comparison_options(
    name: str, device: str | None = None, options: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The options comparison ``name`` runs with: its own (``options[name]``), on ``device`` when it is a
    checkpoint's model (a mask family's ``sam:CHECKPOINT``, ...; the baselines run on the CPU)."""
    given = dict((options or {}).get(name, {}))
    entry = registry_entry(name)
    if entry is not None and entry.family and device is not None:
        given = {"device": device, **given}
    return given


def add_baselines(
    result: Tokenization,
    segmenter: Segmenter,
    names: list[str] | None = None,
    device: str | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Tokenization:
    """Add each comparison's label map (``names``, default ``comparison_names()``) at our token count, and its
    recall, to ``result``; returns it. A mask tokenizer (``sam:CHECKPOINT``, ...) runs on ``device`` (default:
    its own) with its ``options`` (by name: ``{"sam:CKPT": {"points_per_side": 16}}``, see
    :func:`comparison_options`), one model call at a time, and gives at most our count (its masks merge, never
    split)."""
    count = result.tokens["ours"]
    for name in comparison_names() if names is None else names:
        settings = SegmentationSettings(name, comparison_options(name, device, options), max_tokens=count)
        entry = registry_entry(name)
        one_at_a_time = _MODEL_LOCK if entry is not None and entry.family else contextlib.nullcontext()
        with one_at_a_time:
            [result.label_maps[name]] = segmenter.with_settings(settings).label_maps([result.image])
    _score(result)
    return result


def _score(result: Tokenization) -> None:
    """Boundary recall (2 px) of every label map that has none yet, where there is a ground truth."""
    if result.gt_boundaries is None:
        return
    from ..evaluation.region_metrics import boundary_recall

    result.recall = result.recall or {}
    for name, label_map in result.label_maps.items():
        if name not in result.recall:
            result.recall[name] = boundary_recall(label_map, result.gt_boundaries, tolerance=2)


def read_ground_truth(
    path: str | Path, original_shape: tuple[int, int], shape: tuple[int, int]
) -> list[np.ndarray]:
    """Ground-truth boundaries from a label map file (``.npy``, or an image: 8/16-bit ids or one colour per
    segment) or a BSDS ``.mat`` (every annotator).

    Args:
        original_shape: ``(H, W)`` of the uploaded image; the ground truth must have it.
        shape: ``(H, W)`` of the working image; the ground truth is resized to it (nearest) if it differs.

    Returns:
        ``(H, W)`` bool boundary maps at ``shape``, one per annotator.
    """
    from ..data.bsds import read_bsds_annotations
    from ..evaluation.region_metrics import segmentation_boundaries

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mat":
        try:
            segmentations, _ = read_bsds_annotations(path)
        except Exception as error:  # noqa: BLE001 - scipy's MatReadError and kin: one line naming the file
            raise ValueError(f"{path.name}: not a readable BSDS .mat file ({error})") from None
    elif suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path.name}: not a readable .npy label map ({error})") from None
        if array.ndim != 2 or not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
            raise ValueError(
                f"{path.name}: a label map is an (H, W) integer array, got {array.dtype} {array.shape}"
            )
        segmentations = [array]
    elif suffix in IMAGE_EXTENSIONS:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as picture:
                array = np.asarray(
                    picture.convert("RGB") if picture.mode in ("RGB", "RGBA", "P") else picture
                )
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise ValueError(f"{path.name}: not a readable label map image ({error})") from None
        if array.ndim == 3:  # one colour per segment -> ids
            _, ids = np.unique(array.reshape(-1, array.shape[-1]), axis=0, return_inverse=True)
            array = ids.reshape(array.shape[:2])
        segmentations = [array]
    else:
        raise ValueError(f"{path.name}: ground truth must be a label map (.png, .npy) or a BSDS .mat file")
    gt_shape = segmentations[0].shape
    if gt_shape != tuple(original_shape):
        raise ValueError(
            f"{path.name}: the ground truth is {gt_shape[1]}×{gt_shape[0]} px, the image "
            f"{original_shape[1]}×{original_shape[0]} px"
        )
    height, width = shape
    boundaries = []
    for segmentation in segmentations:
        segmentation = np.asarray(segmentation).astype(np.int32)
        if segmentation.shape != (height, width):
            segmentation = cv2.resize(segmentation, (width, height), interpolation=cv2.INTER_NEAREST)
        boundaries.append(segmentation_boundaries(segmentation))
    return boundaries


def highlight_region(picture: np.ndarray, label_map: np.ndarray, index: int) -> np.ndarray:
    """A copy of ``picture`` (``(H, W, 3)`` uint8) with region ``index`` of ``label_map`` outlined in yellow and
    the rest dimmed."""
    inside = (label_map == index).astype(np.uint8)  # (H, W) 0/1
    width = max(2, round(max(label_map.shape) / 256))  # an outline that stays visible when shown small
    eroded = cv2.erode(inside, np.ones((3, 3), np.uint8), iterations=width).astype(bool)
    inside = inside.astype(bool)
    marked = np.where(inside[..., None], picture, picture // 3 + 40).astype(np.uint8)
    marked[inside & ~eroded] = (255, 210, 0)
    return marked


def pictures(result: Tokenization, view: str = "overlay") -> dict[str, np.ndarray]:
    """``(H, W, 3)`` uint8 pictures: ``boundary_map``, ``overlay`` and ``mean_colour`` of ours, and one per
    comparison in ``result`` drawn as ``view`` (``"overlay"`` or ``"mean colour"``)."""
    if view not in ("overlay", "mean colour"):
        raise ValueError(f"view must be 'overlay' or 'mean colour', got {view!r}")
    draw = region_overlay if view == "overlay" else mean_colour_image
    ours = result.label_maps["ours"]
    shown = {
        "boundary_map": colorize_probs(result.boundary_probs),
        "overlay": region_overlay(result.image, ours),
        "mean_colour": mean_colour_image(result.image, ours),
    }
    shown.update(
        {
            name: draw(result.image, label_map)
            for name, label_map in result.label_maps.items()
            if name != "ours"
        }
    )
    return shown


def region_at(label_map: np.ndarray, x: int, y: int) -> dict:
    """The token under pixel ``(x, y)``: its ``index``, ``area`` (pixels), ``area_fraction`` and ``box``
    ``(x0, y0, x1, y1)`` (inclusive)."""
    height, width = label_map.shape
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"pixel ({x}, {y}) is outside the {width}×{height} image")
    index = int(label_map[y, x])
    inside = label_map == index  # (H, W) bool: one region, O(H*W)
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    area = int(inside.sum())
    return {
        "index": index,
        "area": area,
        "area_fraction": area / label_map.size,
        "box": (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])),
    }


def write_downloads(result: Tokenization, stem: str, folder: str | Path | None = None) -> list[Path]:
    """Write our label map (16-bit PNG and int32 ``.npy``) and the composite PNG (``visualize.composite``:
    boundary map, binarized, mean colour, overlay), atomically, into a folder per image and settings.

    Returns:
        The three paths: ``<stem>_labels.png``, ``<stem>_labels.npy``, ``<stem>_subobjects.png``.
    """
    from PIL import Image

    label_map = result.label_maps["ours"]
    if folder is None:
        folder = WORK_DIR / "downloads" / digest([image_digest(result.image), repr(result.settings)])
        _remove_old_downloads(WORK_DIR / "downloads")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:80] or "image"
    paths = [folder / f"{stem}_labels.png", folder / f"{stem}_labels.npy", folder / f"{stem}_subobjects.png"]
    write_bytes(paths[0], encode_label_map(label_map))
    save_npy(paths[1], label_map.astype(np.int32))
    picture = composite(result.image, label_map, result.boundary_probs, result.settings.threshold)
    save_image(paths[2], Image.fromarray(picture))
    return paths


def _remove_old_downloads(root: Path, max_age_s: float = 3600.0) -> None:
    """Forget download folders older than ``max_age_s`` (a long-running server must not fill the disk)."""
    if not root.is_dir():
        return
    now = time.time()
    for folder in root.iterdir():
        try:
            if folder.is_dir() and now - folder.stat().st_mtime > max_age_s:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def example_photos(folder: str | Path | None = None) -> list[Path]:
    """scikit-image's photos (``EXAMPLE_PHOTOS``, shipped with it: no download) written once as JPEG files."""
    from PIL import Image
    from skimage import data

    folder = Path(folder) if folder is not None else WORK_DIR / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in EXAMPLE_PHOTOS:
        path = folder / f"{name}.jpg"
        if not path.is_file():
            save_image(path, Image.fromarray(getattr(data, name)()), format="JPEG")
        paths.append(path)
    return paths


__all__ = [
    "CACHE_SIZE",
    "EXAMPLE_PHOTOS",
    "MAX_ASPECT",
    "MAX_SIDE",
    "MIN_SIDE",
    "Tokenization",
    "add_baselines",
    "check_boundary_model_name",
    "check_comparison_name",
    "comparison_names",
    "comparison_options",
    "demo_segmenter",
    "example_photos",
    "image_digest",
    "highlight_region",
    "pictures",
    "prepare_image",
    "read_ground_truth",
    "region_at",
    "tokenize",
    "write_downloads",
]
