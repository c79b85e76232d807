"""``SubobjectImageProcessor``: images -> backbone pixels + subobject label maps (one token per region).

>>> processor = SubobjectImageProcessor(boundary_model="default", max_tokens=256)
>>> batch = processor([image_a, image_b], return_tensors="pt")
>>> batch["pixel_values"].shape, batch["label_maps"].shape, batch["num_tokens"]
(torch.Size([2, 3, 336, 336]), torch.Size([2, 336, 336]), tensor([256, 187]))

Segmentation is preprocessing, done by a ``segmentation.Segmenter`` (``processor.segmenter()``): the boundary
model and EPOC run once per distinct image (cached by image content and segmentation settings), and neither the
engine nor its caches are stored in the processor's JSON. The processor keeps the transformers side: settings
as attributes, save / load, backbone pixels.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling, SizeDict
from transformers.processing_utils import ImagesKwargs, Unpack

from .embedding import region_boxes
from .image_utils import ImageLoadError, to_rgb_uint8
from .segmentation.registry import check_tokenizer_name
from .segmentation.segmenter import Segmenter, pad_to_square
from .segmentation.settings import DEFAULT_LABEL_SIZE, DEFAULT_MAX_TOKENS, DEFAULT_SEEDS, SegmentationSettings

SEGMENTATION_KEYS = (
    "boundary_model",
    "boundary_model_options",
    "threshold",
    "max_tokens",
    "min_area",
    "merge",
    "assign",
    "seeds",
    "label_size",
    "do_pad",
    "pad_color",
)


class SubobjectImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    boundary_model (`str`): `"default"` (embedded), `"gradient"`, a DirectSAM hub id or local path, or a
        baseline (`"patch"`, `"slic"`, `"felzenszwalb"`).
    boundary_model_options (`dict`): options for the boundary model (`resolution`, `keep_aspect`,
        `pyramid_layers`, `dtype`, `device`, `batch_size`).
    threshold (`float`): EPOC boundary threshold.
    max_tokens (`int`): at most this many tokens per image (regions merged, never dropped; default 128).
    min_area (`int`): regions smaller than this (pixels at label resolution) are merged first.
    merge (`str`): `"weakest_boundary"` or `"smallest_region"`.
    assign (`str`): `"watershed"` or `"nearest"`.
    seeds (`str`): `"minima"` (default: every regional minimum, so the budget is filled) or `"threshold"`
        (only the components under the threshold: the count adapts to the image).
    label_size (`dict`): `{"height", "width"}` of the returned label maps.
    do_segment (`bool`): segment the images (default); `False` returns `pixel_values` only.
    do_pad (`bool`): pad each image to a square (centred, LLaVA-1.5's `expand2square`) before it is resized and
        segmented, so pixels and label maps cover the same padded extent (default `False`: squashed).
    pad_color (`list[int]`): the padding colour, 0-255 RGB; default (with `do_pad`): the mean colour
        `int(255 * m)` per channel, as transformers' `LlavaImageProcessor(do_pad=True)`. Given, images are padded.
    """

    boundary_model: str
    boundary_model_options: dict
    threshold: float
    max_tokens: int
    min_area: int
    merge: str
    assign: str
    seeds: str
    label_size: dict
    do_segment: bool
    do_pad: bool
    pad_color: list


MIN_PIXEL_SIDE = 2  # of pixel_values, and why:
PIXEL_SIDE_REASON = " (the vision backbone's input: a 1-pixel side holds no patch; torch fails on 1x1)"


def _size_pair(size, key: str, minimum: int = 1, reason: str = "") -> tuple[int, int]:
    """``{"height": h, "width": w}`` (a dict or transformers' ``SizeDict``) -> ``(h, w)``, whole numbers
    ``>= minimum``; otherwise ``ValueError`` naming ``key``, the rule (and ``reason``) and the value, in one line."""
    values = dict(size) if isinstance(size, dict | SizeDict) else size  # a SizeDict lists its set keys
    if (
        not isinstance(values, dict)
        or set(values) != {"height", "width"}
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values.values())
        or min(values.values()) < minimum
    ):
        raise ValueError(
            f"{key} must be {{'height': h, 'width': w}} with whole numbers of pixels >= {minimum}{reason}, "
            f"got {values!r}"
        )
    return int(values["height"]), int(values["width"])


def _flatten_images(images) -> list:
    """Single image, batch array/tensor, or (nested) list -> flat list of single images."""
    if isinstance(images, (list, tuple)):
        flat = []
        for item in images:
            flat.extend(_flatten_images(item) if isinstance(item, (list, tuple)) else [item])
        return flat
    if (isinstance(images, np.ndarray) or isinstance(images, torch.Tensor)) and images.ndim == 4:
        return list(images)
    return [images]


def _check_label_maps(label_maps, count: int, label_size: tuple[int, int]) -> list[np.ndarray]:
    """Precomputed label maps -> list of ``(h, w)`` int arrays, checked against the images and ``label_size``."""
    maps = [np.asarray(m.cpu() if isinstance(m, torch.Tensor) else m) for m in label_maps]
    if len(maps) != count:
        raise ValueError(f"got {len(maps)} label maps for {count} images")
    for i, label_map in enumerate(maps):
        if label_map.shape != label_size or not np.issubdtype(label_map.dtype, np.integer):
            raise ValueError(
                f"label_maps[{i}] must be an integer array of shape {label_size} (label_size), got "
                f"{label_map.dtype} {label_map.shape}"
            )
        if label_map.min() < 0:
            raise ValueError(f"label_maps[{i}] holds negative labels")
    return maps


class SubobjectImageProcessor(TorchvisionBackend):
    r"""Image processor for subobject tokens.

    Returns a `BatchFeature` with `pixel_values` `(B, 3, H, W)` float for the vision backbone (CLIP
    resize/normalisation by default), `label_maps` `(B, h, w)` int64 at `label_size` covering the same
    image extent (labels `0..num_tokens[i]-1`, area-descending, every pixel labelled), `num_tokens`
    `(B,)` int64 and `boxes` `(sum num_tokens, 4)` float32, each region's normalised (cx, cy, w, h), packed
    image after image.
    """

    valid_kwargs = SubobjectImageProcessorKwargs
    model_input_names = ["pixel_values", "label_maps", "num_tokens", "boxes"]

    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"height": 336, "width": 336}
    default_to_square = True
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    boundary_model = "default"
    boundary_model_options = None
    threshold = 0.1
    max_tokens = DEFAULT_MAX_TOKENS
    min_area = 0
    merge = "weakest_boundary"
    assign = "watershed"
    seeds = DEFAULT_SEEDS
    label_size = {"height": DEFAULT_LABEL_SIZE[0], "width": DEFAULT_LABEL_SIZE[1]}
    do_segment = True
    do_pad = False
    pad_color = None

    def __init__(self, cache_size: int = 1024, **kwargs: Unpack[SubobjectImageProcessorKwargs]):
        if isinstance(kwargs.get("size"), dict):  # before transformers reads it (an int N means N x N)
            _size_pair(kwargs["size"], "size", MIN_PIXEL_SIDE, PIXEL_SIDE_REASON)
        super().__init__(**kwargs)
        # the engine: one Segmenter per distinct settings and label size, all sharing the first one's caches
        self._segmenter = Segmenter(SegmentationSettings(), cache_size=cache_size)  # checks cache_size
        self._segmenters: dict[tuple[SegmentationSettings, tuple[int, int]], Segmenter] = {}
        # validate now: a bad setting fails here, not at the first image
        _size_pair(self.size, "size", MIN_PIXEL_SIDE, PIXEL_SIDE_REASON)
        self._settings({})

    def _settings(self, overrides: dict) -> tuple[SegmentationSettings, tuple[int, int]]:
        """The segmentation settings (attributes, then ``overrides``), validated: ``(settings, (h, w))``."""
        values = {key: overrides.get(key, getattr(self, key)) for key in SEGMENTATION_KEYS}
        if values.pop("do_pad") and values["pad_color"] is None:  # LLaVA-1.5 / transformers: the mean colour
            values["pad_color"] = [int(m * 255) for m in overrides.get("image_mean") or self.image_mean]
        label_size = _size_pair(values.pop("label_size"), "label_size")
        check_tokenizer_name(values["boundary_model"])  # a mistyped name fails here, listing the valid ones
        return SegmentationSettings(**values), label_size

    def segmentation_settings(self) -> tuple[SegmentationSettings, tuple[int, int]]:
        """How this processor makes label maps: ``(settings, (label_height, label_width))``."""
        return self._settings({})

    def to_dict(self) -> dict:
        output = super().to_dict()
        for key in [k for k in output if k.startswith("_")]:  # caches and loaded models stay out of the JSON
            output.pop(key)
        return output

    # --- segmentation -------------------------------------------------------------------------------
    def segment(self, images, **overrides) -> list[np.ndarray]:
        """Label maps for one or more images at ``label_size``: list of ``(h, w)`` int32 (cached)."""
        return self.segmenter(**overrides).label_maps(_flatten_images(images))

    def segmenter(self, **overrides) -> Segmenter:
        """The ``Segmenter`` that makes this processor's label maps (with ``overrides``, e.g. ``max_tokens``)."""
        return self._segmenter_for(*self._settings(overrides))

    def _segmenter_for(self, settings: SegmentationSettings, label_size: tuple[int, int]) -> Segmenter:
        """One ``Segmenter`` per distinct settings and label size, kept; all share one pair of caches, so other
        EPOC settings reuse the boundary maps."""
        key = (settings, label_size)
        if key not in self._segmenters:
            self._segmenters[key] = self._segmenter.with_settings(settings, label_size)
        return self._segmenters[key]

    def clear_cache(self) -> None:
        """Forget cached segmentations and boundary maps."""
        self._segmenter.clear_cache()

    def pixel_values(self, images, return_tensors: str | None = "pt"):
        """Backbone pixels only, without segmenting: ``(B, 3, H, W)`` float (e.g. when label maps were
        precomputed with ``datasets.map``)."""
        return self(images, do_segment=False, return_tensors=return_tensors)["pixel_values"]

    # --- transformers entry point -------------------------------------------------------------------
    def preprocess(self, images, *args, label_maps=None, **kwargs) -> BatchFeature:
        """``label_maps``: precomputed label maps for the images (e.g. from ``subobject-vlm precompute``), one
        ``(h, w)`` int array at ``label_size`` each (or a ``(B, h, w)`` array); they are used as given and
        nothing is segmented."""
        image_like_kwargs = {} if label_maps is None else {"label_maps": label_maps}
        return super().preprocess(images, *args, image_like_kwargs=image_like_kwargs, **kwargs)

    def _preprocess_image_like_inputs(self, images, *args, label_maps=None, **kwargs) -> BatchFeature:
        flat = _flatten_images(images)
        if not flat:
            raise ValueError("no images given")
        rgb_images = []
        for i, image in enumerate(flat):
            try:
                rgb_images.append(to_rgb_uint8(image, name=f"images[{i}]"))
            except ImageLoadError:
                raise
            except Exception as error:  # unexpected input types: name the offending position
                raise ImageLoadError(f"images[{i}]: {error}") from None
        if kwargs.get("size") is not None:  # a size given to this call
            _size_pair(kwargs["size"], "size", MIN_PIXEL_SIDE, PIXEL_SIDE_REASON)
        do_segment = kwargs.pop("do_segment", True)
        settings = {key: kwargs.pop(key, getattr(self, key)) for key in SEGMENTATION_KEYS}
        settings, label_size = self._settings({**settings, "image_mean": kwargs.get("image_mean")})
        if settings.pad_color is not None:  # pixels and label maps both cover the padded square
            rgb_images = [pad_to_square(image, settings.pad_color) for image in rgb_images]
        return_tensors = kwargs.pop("return_tensors", None)
        tensors = [
            torch.from_numpy(image).permute(2, 0, 1).contiguous() for image in rgb_images
        ]  # (3, H, W) uint8
        pixel_values = self._preprocess(
            tensors, *args, do_pad=False, return_tensors=return_tensors, **kwargs
        )["pixel_values"]  # padded above (the backend's do_pad pads a batch to its largest image)
        if not do_segment:
            return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)

        if label_maps is None:
            label_maps = self._segmenter_for(settings, label_size).label_maps(rgb_images)
        else:
            label_maps = _check_label_maps(label_maps, len(rgb_images), label_size)
        label_maps_tensor = torch.stack(
            [torch.from_numpy(m.astype(np.int64)) for m in label_maps]
        )  # (B, h, w)
        num_tokens = torch.tensor([int(m.max()) + 1 for m in label_maps], dtype=torch.int64)  # (B,)
        boxes = region_boxes(label_maps_tensor, num_tokens)  # (sum n_i, 4) normalised (cx, cy, w, h)
        data = {
            "pixel_values": pixel_values,
            "label_maps": label_maps_tensor,
            "num_tokens": num_tokens,
            "boxes": boxes,
        }
        if return_tensors is None:  # one kind of container throughout: a list with one entry per image
            data = {
                "pixel_values": [np.asarray(v) for v in pixel_values],  # (3, H, W) float32 each
                "label_maps": [m.numpy() for m in label_maps_tensor],  # (h, w) int64 each
                "num_tokens": num_tokens.tolist(),  # int each
                "boxes": [b.numpy() for b in torch.split(boxes, num_tokens.tolist())],  # (n_i, 4) each
            }
        return BatchFeature(data=data, tensor_type=return_tensors)


__all__ = ["SubobjectImageProcessor"]
