"""Named boundary models and the one-call ``segment`` function.

A model name is ``"default"`` (the model embedded in the package: a learned EdgeNet, see
``weights/default/README.md``), ``"gradient"`` (classical colour gradients), a hub id or local path of a
DirectSAM (or EdgeNet) checkpoint, or a baseline (``patch``, ``slic``,
``felzenszwalb``), which produces label maps directly.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Protocol

import numpy as np

from .baselines import run_baseline
from .epoc import epoc_with
from .registry import DEFAULT_WEIGHTS_DIR, check_tokenizer_name, create_boundary_model, has_embedded_weights
from .settings import BASELINES, DEFAULT_MAX_TOKENS, DEFAULT_SEEDS, SegmentationSettings


class BoundaryModel(Protocol):
    """Anything that maps RGB images to boundary probability maps of the same size."""

    name: str

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """List of ``(H, W, 3)`` uint8 -> list of ``(H, W)`` float32 in [0, 1]."""
        ...


_CACHE: dict[tuple, BoundaryModel] = {}
_CACHE_LOCK = threading.Lock()


def load_boundary_model(name: str | os.PathLike = "default", **options) -> BoundaryModel:
    """Load (once, then cached) a boundary model by name: see ``registry`` for the names.

    Args:
        name: a registered name (``"default"``, ``"gradient"``), a local checkpoint folder, or a hub id.
        **options: passed to ``BoundaryPredictor.from_pretrained`` (``resolution``, ``keep_aspect``,
            ``pyramid_layers``, ``dtype``, ``device``, ``batch_size``) or to ``GradientBoundaryModel``.
    """
    name = check_tokenizer_name(name)
    key = (name, tuple(sorted((k, str(v)) for k, v in options.items())))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = create_boundary_model(name, **options)
        return _CACHE[key]


def segment_image(
    image: np.ndarray | None,
    settings: SegmentationSettings,
    *,
    boundary_probs: np.ndarray | None = None,
) -> np.ndarray:
    """The one path from an image to a label map, used by the processor, the CLI, ``eval-bsds`` and ``segment``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB; may be ``None`` when ``boundary_probs`` is given.
        settings: the tokenizer and its options.
        boundary_probs: ``(H, W)`` float boundary map already computed for this image (the boundary model is then
            not run again); ignored by baselines.

    Returns:
        ``(H, W)`` int32 label map, ids ``0..n-1`` in area-descending order.
    """
    if settings.is_baseline:
        if image is None:
            raise ValueError(f"the baseline {settings.boundary_model!r} segments the image: pass image")
        return run_baseline(settings.boundary_model, image, settings.max_tokens)
    if boundary_probs is None:
        if image is None:
            raise ValueError("pass an image or its boundary_probs")
        [boundary_probs] = load_boundary_model(settings.boundary_model, **settings.model_options).predict(
            [image]
        )
    return epoc_with(boundary_probs, settings)  # the options were checked once, by the settings


def segment(
    image: np.ndarray,
    model: str | BoundaryModel = "default",
    *,
    threshold: float = 0.1,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    min_area: int = 0,
    merge: str = "weakest_boundary",
    assign: str = "watershed",
    seeds: str = DEFAULT_SEEDS,
    num_tokens: int | None = None,
    **model_options,
) -> np.ndarray:
    """Segment one image into subobjects (a convenience over :func:`segment_image`).

    Args:
        image: ``(H, W, 3)`` uint8 RGB (use ``image_utils.to_rgb_uint8`` for other inputs).
        model: a boundary model or its name (see ``load_boundary_model``), or a baseline name.
        threshold, max_tokens, min_area, merge, assign, seeds: EPOC options (see ``epoc``); the defaults are
            ``SegmentationSettings``'. A baseline makes exactly ``max_tokens`` regions.
        num_tokens: the old name of ``max_tokens`` for a baseline (deprecated; a boundary model refuses it).

    Returns:
        ``(H, W)`` int32 label map, ids ``0..n-1`` in area-descending order.
    """
    if num_tokens is not None:
        if not (isinstance(model, str) and model in BASELINES):
            raise ValueError("num_tokens (the old name of max_tokens) is only for baselines; use max_tokens")
        warnings.warn(
            "segment(num_tokens=...) is deprecated: use max_tokens", DeprecationWarning, stacklevel=2
        )
        max_tokens = num_tokens
    epoc_options = {
        "threshold": threshold,
        "max_tokens": max_tokens,
        "min_area": min_area,
        "merge": merge,
        "assign": assign,
        "seeds": seeds,
    }
    if isinstance(model, (str, os.PathLike)):
        return segment_image(image, SegmentationSettings(str(model), model_options, **epoc_options))
    settings = SegmentationSettings(getattr(model, "name", "custom"), **epoc_options)
    [probs] = model.predict([image])  # a boundary model object
    return segment_image(image, settings, boundary_probs=probs)


__all__ = [
    "BoundaryModel",
    "DEFAULT_WEIGHTS_DIR",
    "has_embedded_weights",
    "load_boundary_model",
    "segment",
    "segment_image",
]
