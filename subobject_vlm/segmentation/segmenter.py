"""``Segmenter``: the segmentation engine below the image processor (after segment-anything's predictor): the
boundary model runs once per image, its map is kept, and every later label map of that image costs EPOC only.

>>> segmenter = Segmenter(SegmentationSettings("default", max_tokens=64), label_size=(336, 336))
>>> label_maps = segmenter.label_maps([image_a, image_b])      # (336, 336) int32 each, cached
>>> probs = segmenter.boundary_maps([image_a])                 # (336, 336) float32 each, cached
>>> segmenter.with_settings(replace(segmenter.settings, max_tokens=16)).label_maps([image_a])  # EPOC only

Two caches, both shared by every ``with_settings`` variant and safe to share between threads: label maps by
image content and all settings, boundary maps by image content, boundary model, its ``output_options`` (the
options that decide its output: not the device or batch size) and label size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import cv2
import numpy as np

from ..caching import LRUCache, image_digest
from ..image_utils import to_rgb_uint8
from .api import load_boundary_model, load_tokenizer, segment_image
from .registry import LABEL_MAP
from .settings import SegmentationSettings, output_options


def pad_to_square(image: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(S, S, 3)``, ``S = max(H, W)``: the image centred on ``color`` (the odd pixel of
    padding goes right / below, as LLaVA-1.5's ``expand2square`` and transformers' ``pad_to_square``)."""
    height, width = image.shape[:2]
    if height == width:
        return image
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    padded = np.empty((side, side, 3), np.uint8)
    padded[:] = color
    padded[top : top + height, left : left + width] = image
    return padded


def check_label_maps(label_maps: list[Any], images: list[np.ndarray], tokenizer: str) -> None:
    """Raise ``ValueError`` naming the tokenizer unless it returned one integer ``(H, W)`` map per image."""
    if not isinstance(label_maps, (list, tuple)) or len(label_maps) != len(images):
        count = len(label_maps) if hasattr(label_maps, "__len__") else type(label_maps).__name__
        raise ValueError(f"tokenizer {tokenizer!r} returned {count} label maps for {len(images)} images")
    for i, (label_map, image) in enumerate(zip(label_maps, images)):
        shape = getattr(label_map, "shape", None)
        if shape != image.shape[:2] or not np.issubdtype(label_map.dtype, np.integer):
            raise ValueError(
                f"tokenizer {tokenizer!r} returned a label map of shape {shape} and dtype "
                f"{getattr(label_map, 'dtype', None)} for image {i} of size {image.shape[:2]}: it must be an "
                "integer (H, W) map"
            )


class Segmenter:
    """Images -> boundary maps and label maps for one ``SegmentationSettings`` and label size, cached.

    Args:
        settings: the tokenizer and its options (with ``pad_color``, images are padded to a square first).
        label_size: ``(height, width)`` of the maps returned (EPOC runs there, on the area-averaged boundary
            map; a label-map tokenizer segments the area-averaged image); ``None``: each image's own size.
        cache_size: label maps (and, separately, boundary maps) kept; 0 keeps none.
    """

    def __init__(
        self,
        settings: SegmentationSettings,
        label_size: tuple[int, int] | None = None,
        cache_size: int = 1024,
    ) -> None:
        if not isinstance(settings, SegmentationSettings):
            raise TypeError(f"settings must be a SegmentationSettings, got {type(settings).__name__}")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(
                f"cache_size must be a non-negative integer (0 disables the cache), got {cache_size!r}"
            )
        self.settings = settings
        self.label_size = None if label_size is None else (int(label_size[0]), int(label_size[1]))
        self._label_cache = LRUCache(cache_size)  # label maps, by image and all settings
        self._boundary_cache = LRUCache(cache_size)  # boundary maps, by image, model output and label size
        self._model_runs = [0]  # boundary-model calls, shared like the caches

    def with_settings(
        self, settings: SegmentationSettings, label_size: tuple[int, int] | None = None
    ) -> Segmenter:
        """A segmenter for ``settings`` (and ``label_size``) sharing this one's caches (their keys name every
        setting): a new budget or EPOC option reuses the boundary maps already computed."""
        other = Segmenter(settings, label_size, cache_size=0)
        other._label_cache, other._boundary_cache = self._label_cache, self._boundary_cache
        other._model_runs = self._model_runs
        return other

    @property
    def model_runs(self) -> int:
        """How often the boundary model ran (one batched call each) for this segmenter and those sharing its
        caches: a boundary map served from the cache costs none."""
        return self._model_runs[0]

    def clear_cache(self) -> None:
        """Forget cached label maps and boundary maps (of every segmenter sharing them)."""
        self._label_cache.clear()
        self._boundary_cache.clear()

    def boundary_maps(self, images: list[Any]) -> list[np.ndarray]:
        """Boundary probabilities of ``images`` (anything ``to_rgb_uint8`` reads): ``(h, w)`` float32 each, at
        ``label_size`` (area-averaged) or the image's size; the boundary model runs once, batched, on the images
        not cached. A label-map tokenizer has none: ``ValueError``."""
        if self.settings.kind == LABEL_MAP:
            raise ValueError(
                f"{self.settings.boundary_model!r} is a label-map tokenizer: it makes label maps directly, "
                "it has no boundary map"
            )
        rgb_images = self._prepare(images)
        digests = [image_digest(image) for image in rgb_images]
        return [probs.copy() for probs in self._boundary_maps(rgb_images, digests, range(len(rgb_images)))]

    def label_maps(self, images: list[Any]) -> list[np.ndarray]:
        """Label maps of ``images`` (anything ``to_rgb_uint8`` reads): ``(h, w)`` int32 each, ids ``0..n-1``
        in area-descending order, at ``label_size`` or the image's size; computed once per image and settings."""
        rgb_images = self._prepare(images)
        digests = [image_digest(image) for image in rgb_images]
        keys = [f"{digest}:{self.settings!r}:{self.label_size}" for digest in digests]
        # hits first; results stay here too, since a small cache may evict them before we return
        computed: dict[str, np.ndarray] = {}
        for key in keys:
            hit = self._label_cache.get(key)
            if hit is not None:
                computed[key] = hit
        missing = list(_first_indices(enumerate(keys), computed.__contains__).values())
        if missing and self.settings.kind == LABEL_MAP:  # one batched call of the tokenizer
            tokenizer = load_tokenizer(self.settings.boundary_model, **self.settings.model_options)
            batch = [self._at_label_size(rgb_images[i]) for i in missing]
            label_maps = tokenizer.label_maps(batch, self.settings.max_tokens)
            check_label_maps(label_maps, batch, self.settings.boundary_model)
            for i, label_map in zip(missing, label_maps):
                computed[keys[i]] = label_map.astype(np.int32, copy=False)
                self._label_cache.put(keys[i], computed[keys[i]])
        elif missing:
            boundary_maps = self._boundary_maps(rgb_images, digests, missing)
            for i, probs in zip(missing, boundary_maps):
                computed[keys[i]] = segment_image(None, self.settings, boundary_probs=probs)
                self._label_cache.put(keys[i], computed[keys[i]])
        return [computed[key].copy() for key in keys]  # callers never share the cached arrays

    def _prepare(self, images: list[Any]) -> list[np.ndarray]:
        """``(H, W, 3)`` uint8 RGB arrays, padded to a square with ``pad_color`` before anything reads them
        (digests key the padded image)."""
        rgb_images = [to_rgb_uint8(image, name=f"images[{i}]") for i, image in enumerate(images)]
        if self.settings.pad_color is not None:
            rgb_images = [pad_to_square(image, self.settings.pad_color) for image in rgb_images]
        return rgb_images

    def _at_label_size(self, image: np.ndarray) -> np.ndarray:
        """``image`` (an RGB image or a boundary map) area-averaged to ``label_size`` (itself without one)."""
        if self.label_size is None:
            return image
        label_h, label_w = self.label_size
        return cv2.resize(image, (label_w, label_h), interpolation=cv2.INTER_AREA)

    def _boundary_maps(self, rgb_images: list[np.ndarray], digests: list[str], indices) -> list[np.ndarray]:
        """The (cached) boundary maps of ``rgb_images[i]`` for ``i`` in ``indices``; one batched model call for
        those not cached. The arrays are the cache's own: callers copy before handing them out."""
        settings = self.settings
        model_key = repr(
            (
                settings.boundary_model,
                tuple(sorted(output_options(settings.model_options).items())),
                self.label_size,
            )
        )
        keys = {i: f"{digests[i]}:{model_key}" for i in indices}
        maps = {key: self._boundary_cache.get(key) for key in keys.values()}  # an image given twice: one key
        to_predict = _first_indices(keys.items(), lambda key: maps[key] is not None)
        if to_predict:  # one batched call of the boundary model
            model = load_boundary_model(settings.boundary_model, **settings.model_options)
            self._model_runs[0] += 1
            for key, probs in zip(to_predict, model.predict([rgb_images[i] for i in to_predict.values()])):
                # EPOC at label resolution: area-averaged probabilities keep thin boundaries as weaker lines.
                maps[key] = self._at_label_size(probs)
                self._boundary_cache.put(key, maps[key])
        return [maps[keys[i]] for i in indices]


def _first_indices(indexed_keys: Iterable[tuple[int, str]], done: Callable[[str], bool]) -> dict[str, int]:
    """Key -> the first index given with it, in the order given, for the keys not ``done``: an image given
    twice in one call is computed once."""
    first: dict[str, int] = {}
    for i, key in indexed_keys:
        if not done(key):
            first.setdefault(key, i)
    return first


__all__ = ["Segmenter", "check_label_maps", "pad_to_square"]
