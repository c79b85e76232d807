"""Loading tokenizers by name, the one path from an image to a label map, and the one-call ``segment``.

A name is ``"default"`` (the model embedded in the package: a learned EdgeNet, see
``weights/default/README.md``), ``"gradient"`` (classical colour gradients), a hub id or local path of a
DirectSAM (or EdgeNet) checkpoint, or a label-map tokenizer (``patch``, ``slic``, ``felzenszwalb``, ...):
see ``registry``.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Protocol

import numpy as np

from .epoc import epoc_with
from .registry import (
    DEFAULT_WEIGHTS_DIR,
    LABEL_MAP,
    check_tokenizer_name,
    create_tokenizer,
    has_embedded_weights,
    registry_entry,
    require_boundary_model,
    tokenizer_kind,
)
from .settings import DEFAULT_MAX_TOKENS, DEFAULT_SEEDS, SegmentationSettings


class BoundaryModel(Protocol):
    """Anything that maps RGB images to boundary probability maps of the same size."""

    name: str

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """List of ``(H, W, 3)`` uint8 -> list of ``(H, W)`` float32 in [0, 1]."""
        ...


class LabelMapTokenizer(Protocol):
    """Anything that maps RGB images to label maps directly (no boundary map, no EPOC)."""

    name: str

    def label_maps(self, images: list[np.ndarray], max_tokens: int | None) -> list[np.ndarray]:
        """List of ``(H, W, 3)`` uint8 -> list of ``(H, W)`` int32, ids ``0..n-1`` in area-descending order,
        ``n <= max_tokens`` (``None``: the tokenizer's own count)."""
        ...


_CACHE: dict[tuple, BoundaryModel | LabelMapTokenizer] = {}
_CACHE_LOCK = threading.Lock()


def load_tokenizer(name: str | os.PathLike = "default", **options) -> BoundaryModel | LabelMapTokenizer:
    """Load (once, then cached) tokenizer ``name``: a ``BoundaryModel`` or a ``LabelMapTokenizer``, as the
    registry's ``tokenizer_kind(name)`` says; see ``registry`` for the names.

    Args:
        name: a registered name (``"default"``, ``"gradient"``, ``"slic"``, ...), ``family:checkpoint``, a
            local checkpoint folder, or a hub id.
        **options: passed to the tokenizer's factory: ``BoundaryPredictor.from_pretrained`` (``resolution``,
            ``keep_aspect``, ``pyramid_layers``, ``dtype``, ``device``, ``batch_size``), ``GradientBoundaryModel``
            and so on.
    """
    name = check_tokenizer_name(name)
    entry = registry_entry(name)  # a name registered again gets its new tokenizer
    key = (name, entry, tuple(sorted((k, str(v)) for k, v in options.items())))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = create_tokenizer(name, **options)
        return _CACHE[key]


def load_boundary_model(name: str | os.PathLike = "default", **options) -> BoundaryModel:
    """Load (once, then cached) boundary model ``name`` (see ``load_tokenizer``); a label-map tokenizer has no
    boundary map: ``ValueError``."""
    return load_tokenizer(require_boundary_model(name), **options)


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
            not run again); ignored by label-map tokenizers.

    Returns:
        ``(H, W)`` int32 label map, ids ``0..n-1`` in area-descending order.
    """
    if settings.kind == LABEL_MAP:
        if image is None:
            raise ValueError(
                f"the label-map tokenizer {settings.boundary_model!r} segments the image: pass image"
            )
        tokenizer = load_tokenizer(settings.boundary_model, **settings.model_options)
        return tokenizer.label_maps([image], settings.max_tokens)[0]
    if boundary_probs is None:
        if image is None:
            raise ValueError("pass an image or its boundary_probs")
        [boundary_probs] = load_boundary_model(settings.boundary_model, **settings.model_options).predict(
            [image]
        )
    return epoc_with(boundary_probs, **settings.epoc_options)  # checked once, by the settings


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
        model: a boundary model or a tokenizer's name (see ``load_tokenizer``).
        threshold, max_tokens, min_area, merge, assign, seeds: EPOC options (see ``epoc``); the defaults are
            ``SegmentationSettings``'. A label-map tokenizer reads ``max_tokens`` only (the baselines make
            exactly ``max_tokens`` regions).
        num_tokens: the old name of ``max_tokens`` for a baseline (deprecated; a boundary model refuses it).

    Returns:
        ``(H, W)`` int32 label map, ids ``0..n-1`` in area-descending order.
    """
    if num_tokens is not None:
        if not (isinstance(model, (str, os.PathLike)) and tokenizer_kind(model) == LABEL_MAP):
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
    "LabelMapTokenizer",
    "has_embedded_weights",
    "load_boundary_model",
    "load_tokenizer",
    "segment",
    "segment_image",
]
