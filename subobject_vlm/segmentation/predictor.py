"""BoundaryPredictor: runs any one-label boundary model (a DirectSAM SegFormer, whose one output channel predicts
class-agnostic boundary probabilities, or an EdgeNet) on images of any size.

Loads any ``SegformerForSemanticSegmentation`` checkpoint with ``num_labels=1`` (e.g. the public
``chendelong/DirectSAM-1800px-0424`` and ``chendelong/DirectSAM-b0-1024px-sa1b-2ep-1017``, or our embedded
default) by hub id or local path, from safetensors.

>>> model = BoundaryPredictor.from_pretrained("chendelong/DirectSAM-b0-1024px-sa1b-2ep-1017", resolution=1024)
>>> [boundary_probs] = model.predict([image])   # (H, W) float32 in [0, 1] at the image's own size
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError

from ..devices import check_device, resolve_dtype, warn_slow_half_precision
from .options import BOUNDARY_MODEL_OPTIONS, check_tokenizer_options

MAX_ASPECT = 2.0  # wider than this (either way), an image is scaled as its MAX_ASPECT:1 windows would be
MAX_AREA = 16  # ... within this many times the pixels of a resolution x resolution square
MAX_UPSCALE = 4  # a small image is enlarged at most this much (a 1x1 image is not run at full resolution)
MIN_SIDE = 32  # thinner inputs are padded to this (SegFormer's first attention reduces its 1/4 map 8 times)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pyramid_crop_boxes(width: int, height: int, layer: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """The ``(2**layer)**2`` overlapping crops ``(x0, y0, x1, y1)`` of one pyramid layer (as DirectSAM does)."""
    per_side = 2**layer

    def starts_and_length(length: int) -> tuple[list[int], int]:
        crop = min(length, math.ceil((overlap * (per_side - 1) + length) / per_side))
        step = max(crop - overlap, 1)
        return [min(step * i, max(length - crop, 0)) for i in range(per_side)], crop

    xs, crop_w = starts_and_length(width)
    ys, crop_h = starts_and_length(height)
    return [(x, y, x + crop_w, y + crop_h) for y in ys for x in xs]


def crop_edge_weights(box: tuple[int, int, int, int], width: int, height: int, padding: int) -> np.ndarray:
    """``(h, w)`` float32 weights of one crop's predictions: 0 in the outer ``padding // 3`` pixels of each
    side that lies inside the image, 0.5 in the next ``padding // 3``, 1 elsewhere (boundary zero-padding,
    arXiv:2308.13779). Crop sides on the image border keep weight 1."""
    x0, y0, x1, y1 = box
    zero, half = padding // 3, 2 * (padding // 3)

    def ramp(length: int, inner_start: bool, inner_end: bool) -> np.ndarray:
        distance = np.full(length, np.inf, dtype=np.float32)
        index = np.arange(length, dtype=np.float32)
        if inner_start:
            distance = np.minimum(distance, index)
        if inner_end:
            distance = np.minimum(distance, length - 1 - index)
        return np.where(distance < zero, 0.0, np.where(distance < half, 0.5, 1.0)).astype(np.float32)

    rows = ramp(y1 - y0, y0 > 0, y1 < height)  # (h,)
    cols = ramp(x1 - x0, x0 > 0, x1 < width)  # (w,)
    return rows[:, None] * cols[None, :]


class BoundaryPredictor:
    """Boundary model wrapping a ``SegformerForSemanticSegmentation`` with one label.

    Args:
        model: the SegFormer (any module whose ``forward(pixel_values=...)`` returns ``.logits`` ``(B, 1, h, w)``).
        resolution: input size. ``None`` runs at the image's own size; an int resizes to a square
            ``resolution x resolution`` (as upstream), or, with ``keep_aspect=True``, so that the longer
            side is ``resolution`` (aspect ratio kept, batches padded).
        keep_aspect: see ``resolution``.
        pyramid_layers: extra passes over ``(2**k)**2`` overlapping crops for ``k = 1..pyramid_layers``,
            averaged with the full-image pass (finer boundaries on large images).
        overlap: crop overlap in pixels; crop edges inside the image are down-weighted over this width.
        image_mean, image_std: normalisation (ImageNet by default, as SegFormer).
        batch_size: images per forward pass.
    """

    name = "directsam"

    def __init__(
        self,
        model: torch.nn.Module,
        resolution: int | None = 1024,
        *,
        keep_aspect: bool = False,
        pyramid_layers: int = 0,
        overlap: int = 90,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        batch_size: int = 4,
    ):
        if resolution is not None and int(resolution) < 32:
            raise ValueError(f"resolution must be >= 32 or None, got {resolution}")
        if pyramid_layers < 0:
            raise ValueError(f"pyramid_layers must be >= 0, got {pyramid_layers}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.resolution = None if resolution is None else int(resolution)
        self.keep_aspect = keep_aspect
        self.pyramid_layers = pyramid_layers
        self.overlap = overlap
        self.image_mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.image_std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        dtype: str | torch.dtype = "float32",
        device: str | torch.device = "cpu",
        resolution: int | None | str = "auto",
        **options,
    ) -> BoundaryPredictor:
        """Load a boundary checkpoint (hub id or local folder, safetensors weights): a one-label
        ``SegformerForSemanticSegmentation`` (DirectSAM) or any one-label model registered with
        ``AutoModelForSemanticSegmentation`` (e.g. our ``EdgeNetForBoundaryDetection``).

        ``resolution="auto"`` uses the model config's ``resolution`` (and ``keep_aspect``) if it has one, else
        the checkpoint's preprocessor size (``preprocessor_config.json``), else 1024.
        """
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        check_tokenizer_options(
            "a DirectSAM / EdgeNet boundary model", options, BOUNDARY_MODEL_OPTIONS + ("overlap",)
        )
        torch_dtype = resolve_dtype(dtype)
        device = check_device(device)  # before loading anything: 'cuda' without CUDA is one clear line
        warn_slow_half_precision(device, torch_dtype)
        try:
            model = AutoModelForSemanticSegmentation.from_pretrained(
                str(name_or_path), dtype=torch_dtype, use_safetensors=True
            )
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:
            raise ValueError(
                f"cannot load boundary model checkpoint {str(name_or_path)!r}: {error}"
            ) from None
        if model.config.num_labels != 1:
            raise ValueError(
                f"{name_or_path}: a boundary model checkpoint predicts one boundary channel (num_labels=1), "
                f"this one has num_labels={model.config.num_labels}"
            )
        mean, std, size = IMAGENET_MEAN, IMAGENET_STD, None
        try:
            processor = AutoImageProcessor.from_pretrained(str(name_or_path))
            mean, std = tuple(processor.image_mean), tuple(processor.image_std)
            size = dict(processor.size).get("height")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # no preprocessor_config.json: SegFormer defaults
        if resolution == "auto":
            resolution = getattr(model.config, "resolution", None) or size or 1024
            if hasattr(model.config, "keep_aspect"):
                options.setdefault("keep_aspect", model.config.keep_aspect)
        return cls(model.to(device), resolution, image_mean=mean, image_std=std, **options)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _input_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the model sees. Ordinary aspect ratios (up to 2:1): ``resolution`` square, or the longer
        side at ``resolution`` with ``keep_aspect``. Wider or taller images (panoramas, strips) keep their aspect
        and are scaled as their 2:1 windows would be, so they keep the detail of a normal photo instead of being
        squashed to a thin strip; at most ``MAX_AREA`` times the pixels of a ``resolution`` square. Small images
        are enlarged at most ``MAX_UPSCALE`` times (a 1x1 image costs nothing, not a full ``resolution`` pass).

        An input thinner than ``MIN_SIDE`` is padded to it, and the padding costs memory as image does (300-400
        bytes a pixel for the default model): a strip runs at the scale where its padded input holds at most the
        pixels of a ``resolution`` square or of the image itself, whichever is more. A 1 x 100000 strip runs as
        1 x 7200 (padded to 32 x 7200, +70 MB), not as 4 x 400000 padded to 32 x 400000 (+3.5 GB)."""
        if self.resolution is None:
            return height, width
        longer, shorter = max(height, width), min(height, width)
        if longer <= MAX_ASPECT * shorter:
            if not self.keep_aspect:
                side = min(self.resolution, MAX_UPSCALE * longer)
                return side, side
            scale = min(self.resolution / longer, MAX_UPSCALE)
        else:
            scale = self.resolution / (MAX_ASPECT * shorter)
            scale = min(scale, self.resolution * math.sqrt(MAX_AREA / (height * width)), MAX_UPSCALE)
        if shorter * scale < MIN_SIDE - 0.5:  # padded to MIN_SIDE: bound the padded area, not the image's
            budget = max(self.resolution**2, height * width)
            scale = min(scale, budget // MIN_SIDE / longer)
        return max(1, round(height * scale)), max(1, round(width * scale))

    @torch.inference_mode()
    def _forward(self, images: Sequence[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
        """One pass over images that all run at input ``size`` ``(h, w)``: list of ``(H, W, 3)`` uint8 -> list of
        ``(H, W)`` float32 probs. Resizing and normalising happen on the model's device (uint8 travels)."""
        h, w = size
        pad_h, pad_w = max(MIN_SIDE, h), max(MIN_SIDE, w)  # tiny or thin inputs padded for SegFormer
        batch = torch.zeros(len(images), 3, pad_h, pad_w, device=self.device)  # (B, 3, Hp, Wp) float32
        mean, std = self.image_mean.to(self.device), self.image_std.to(self.device)
        for i, image in enumerate(images):
            pixels = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)  # (H, W, 3) uint8
            pixels = pixels.permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H, W)
            if (h, w) != image.shape[:2]:
                pixels = F.interpolate(
                    pixels, size=(h, w), mode="bilinear", align_corners=False, antialias=True
                )
            batch[i, :, :h, :w] = ((pixels - mean) / std)[0]
        logits = self.model(pixel_values=batch.to(self.dtype)).logits.float()  # (B, 1, h', w')
        if logits.ndim != 4 or logits.shape[1] != 1:
            raise ValueError(
                f"boundary model must return logits of shape (B, 1, h, w), got {tuple(logits.shape)}"
            )
        if logits.shape[-2:] != (pad_h, pad_w):  # SegFormer: 1/4 of the input; EdgeNet: the input size
            logits = F.interpolate(logits, size=(pad_h, pad_w), mode="bilinear", align_corners=False)
        probs = []
        for i, image in enumerate(images):
            cropped = logits[i : i + 1, :, :h, :w]
            if (h, w) != image.shape[:2]:
                cropped = F.interpolate(cropped, size=image.shape[:2], mode="bilinear", align_corners=False)
            probs.append(torch.sigmoid(cropped)[0, 0].cpu().numpy())
        return probs

    def _batched_forward(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Images of the same input size share passes of up to ``batch_size``; none is padded to another's size,
        so an image's map does not depend on the other images of the call (batched == one by one)."""
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(self._input_size(*image.shape[:2]), []).append(i)
        probs: list[np.ndarray | None] = [None] * len(images)
        for size, indices in by_size.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                for i, image_probs in zip(chunk, self._forward([images[i] for i in chunk], size)):
                    probs[i] = image_probs
        return probs

    def _pyramid(self, image: np.ndarray, global_probs: np.ndarray) -> np.ndarray:
        """Average of the full-image map and one weighted mosaic of crops per pyramid layer."""
        height, width = image.shape[:2]
        layer_maps = [global_probs]
        for layer in range(1, self.pyramid_layers + 1):
            boxes = pyramid_crop_boxes(width, height, layer, self.overlap)
            crop_probs = self._batched_forward([image[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes])
            weighted = np.zeros((height, width), dtype=np.float32)  # (H, W) sum of weight * probs
            total = np.zeros((height, width), dtype=np.float32)  # (H, W) sum of weights
            for (x0, y0, x1, y1), probs in zip(boxes, crop_probs):
                weight = crop_edge_weights((x0, y0, x1, y1), width, height, self.overlap)
                weighted[y0:y1, x0:x1] += weight * probs
                total[y0:y1, x0:x1] += weight
            layer_maps.append(np.where(total > 0, weighted / np.maximum(total, 1e-6), global_probs))
        return np.mean(layer_maps, axis=0).astype(np.float32)

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """List of ``(H, W, 3)`` uint8 RGB images -> list of ``(H, W)`` float32 boundary probabilities."""
        global_probs = self._batched_forward(list(images))
        if self.pyramid_layers == 0:
            return global_probs
        return [self._pyramid(image, probs) for image, probs in zip(images, global_probs)]

    def __repr__(self) -> str:
        return (
            f"BoundaryPredictor(resolution={self.resolution}, keep_aspect={self.keep_aspect}, "
            f"pyramid_layers={self.pyramid_layers}, dtype={self.dtype}, device={self.device})"
        )


__all__ = ["BoundaryPredictor", "crop_edge_weights", "pyramid_crop_boxes"]
