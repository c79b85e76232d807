"""Mask-model tokenizers: SAM and SAM 2 (automatic mask generation), Mask2Former and OneFormer (panoptic segments),
each turned into label maps by ``masks.masks_to_label_map`` (overlaps, holes and the budget by its stated rules).

>>> tokenizer = create_sam_tokenizer("facebook/sam-vit-base", points_per_side=16, device="cuda")
>>> [label_map] = tokenizer.label_maps([image], max_tokens=64)   # (H, W) int32 at the image's size

Any checkpoint of the architecture loads, by local folder or hub id (``facebook/sam-vit-base``,
``facebook/sam2.1-hiera-tiny``, ``facebook/mask2former-swin-tiny-coco-panoptic``,
``shi-labs/oneformer_ade20k_swin_tiny``), from safetensors. The model runs where ``device`` says; the masks come
back to the CPU once per image, at the image's size (SAM: after non-maximum suppression, as run-length codes).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from ..devices import check_device, resolve_dtype, warn_slow_half_precision
from .checkpoints import resolve_checkpoint
from .masks import masks_to_label_map
from .options import check_max_tokens, check_tokenizer_options
from .predictor import pyramid_crop_boxes

Masks = tuple[np.ndarray, np.ndarray]  # (N, H, W) bool masks and their (N,) scores
_NOT_OPTIONS = ("self", "model", "processor", "checkpoint")  # constructor arguments that are not user options


def _check_model_type(folder: str, checkpoint: str, kind: str, model_types: tuple[str, ...]) -> dict:
    """The checkpoint's config, after checking that it is of one of ``model_types``."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{checkpoint!r}: cannot read {path.name} ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{checkpoint!r}: {path.name} holds a {type(config).__name__}, not a config object")
    found = config.get("model_type")
    if found not in model_types:
        raise ValueError(
            f"{checkpoint!r} is a {found!r} checkpoint; the {kind} tokenizer needs one of {list(model_types)}"
        )
    return config


def _check_number(kind: str, name: str, value, low: float, high: float | None = None, integer: bool = False):
    """``value`` if it is a number in ``[low, high]`` (an integer when ``integer``); else one clear line."""
    valid = isinstance(value, numbers.Real) and not isinstance(value, bool)
    valid = valid and (isinstance(value, numbers.Integral) or not integer)
    if not valid or value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(
            f"{kind} tokenizer: {name} must be {'an integer' if integer else 'a number'} {span}, got {value!r}"
        )
    return value


def _check_images(images) -> list[np.ndarray]:
    """``images`` as a list of ``(H, W, 3)`` uint8 arrays; else ``ValueError`` naming the first one at fault."""
    checked = []
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
            raise ValueError(
                f"images[{i}] must be an (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}"
            )
        checked.append(image)
    return checked


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' warnings for one load (SAM 2.1's hub configs say ``sam2_video``: loading their image
    model from them is what they are for, not a mismatch to report)."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


class MaskTokenizer:
    """A mask model and its processor behind the label-map interface: ``label_maps(images, max_tokens)``.

    Subclasses say which checkpoints they load (``kind``, ``model_types``, ``_load``) and how an image becomes
    masks with scores (``masks``); ``masks_to_label_map`` does the rest.
    """

    kind = ""
    model_types: tuple[str, ...] = ()

    def __init__(self, model, processor, *, checkpoint: str = "", min_hole_area: int | None = None) -> None:
        if min_hole_area is not None:
            _check_number(self.kind, "min_hole_area", min_hole_area, 0, integer=True)
        self.model = model.eval()
        self.processor = processor
        self.checkpoint = str(checkpoint)
        self.min_hole_area = min_hole_area

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.checkpoint}"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
        **options,
    ) -> MaskTokenizer:
        """Load the model and processor of ``checkpoint`` (local folder or hub id; safetensors only)."""
        cls._check_options(options)
        cls(torch.nn.Identity(), None, **options)  # the options' values checked before any weights load
        torch_dtype = resolve_dtype(dtype)
        device = check_device(device)  # before loading anything: one clear line
        warn_slow_half_precision(device, torch_dtype)
        folder = resolve_checkpoint(checkpoint, model_class=cls._model_class)
        config = _check_model_type(folder, str(checkpoint), cls.kind, cls.model_types)
        try:
            model, processor = cls._load(folder, config, torch_dtype)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as error:
            raise ValueError(f"cannot load {cls.kind} checkpoint {str(checkpoint)!r}: {error}") from None
        return cls(model.to(device), processor, checkpoint=str(checkpoint), **options)

    @classmethod
    def _check_options(cls, options: dict) -> None:
        """``ValueError`` naming the first option this tokenizer does not have, and the ones it has."""
        known = [name for name in inspect.signature(cls.__init__).parameters if name not in _NOT_OPTIONS]
        check_tokenizer_options(f"the {cls.kind} tokenizer", options, ["device", "dtype", *known])

    @classmethod
    def _load(cls, folder: str, config: dict, dtype: torch.dtype) -> tuple[Any, Any]:
        raise NotImplementedError

    def masks(self, images: list[np.ndarray]) -> list[Masks]:
        """Each image's ``(N, H, W)`` bool masks at its own size and their ``(N,)`` scores."""
        raise NotImplementedError

    def label_maps(self, images: list[np.ndarray], max_tokens: int | None = None) -> list[np.ndarray]:
        """``(H, W, 3)`` uint8 images -> ``(H, W)`` int32 label maps (ids area-descending, at most ``max_tokens``)."""
        check_max_tokens(max_tokens)
        images = _check_images(images)
        return [
            masks_to_label_map(masks, scores, max_tokens=max_tokens, min_hole_area=self.min_hole_area)
            for masks, scores in self.masks(images)
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.checkpoint!r}, device={str(self.device)!r})"


class SamTokenizer(MaskTokenizer):
    """SAM's automatic mask generation: a grid of point prompts per crop, three masks per point, kept when their
    predicted IoU and stability pass the thresholds, then non-maximum suppression over boxes (transformers'
    ``SamImageProcessor.post_process_masks`` / ``filter_masks`` / ``post_process_for_mask_generation``).

    Args:
        points_per_side: the point grid of the whole image is ``points_per_side`` squared.
        points_per_batch: point prompts per mask-decoder call (memory: 3 masks per point at the crop's size).
        pred_iou_thresh, stability_score_thresh: masks scoring at most these are dropped by the model's own filter
            (before tokenization: what SAM does not keep are holes, and holes become regions).
        stability_score_offset, mask_threshold: SAM's binarisation of the mask logits.
        box_nms_thresh: box IoU above which the lower-scored of two masks is suppressed.
        crops_n_layers: extra layers of ``(2**k)**2`` overlapping crops (``k = 1..crops_n_layers``), each run
            with ``points_per_side / crop_n_points_downscale_factor**k`` points a side.
        crop_overlap_ratio: overlap of the first crop layer, as a fraction of the shorter side.
        min_hole_area: see ``masks.masks_to_label_map``.
    """

    kind = "sam"
    model_types = ("sam",)
    _model_class = "SamModel"

    def __init__(
        self,
        model,
        processor,
        *,
        checkpoint: str = "",
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crops_n_layers: int = 0,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        min_hole_area: int | None = None,
    ) -> None:
        super().__init__(model, processor, checkpoint=checkpoint, min_hole_area=min_hole_area)
        kind = self.kind
        self.points_per_side = _check_number(kind, "points_per_side", points_per_side, 1, integer=True)
        self.points_per_batch = _check_number(kind, "points_per_batch", points_per_batch, 1, integer=True)
        self.pred_iou_thresh = _check_number(kind, "pred_iou_thresh", pred_iou_thresh, 0.0, 1.0)
        self.stability_score_thresh = _check_number(
            kind, "stability_score_thresh", stability_score_thresh, 0.0, 1.0
        )
        self.stability_score_offset = _check_number(
            kind, "stability_score_offset", stability_score_offset, 0.0
        )
        self.mask_threshold = _check_number(kind, "mask_threshold", mask_threshold, -1e9)
        self.box_nms_thresh = _check_number(kind, "box_nms_thresh", box_nms_thresh, 0.0, 1.0)
        self.crops_n_layers = _check_number(kind, "crops_n_layers", crops_n_layers, 0, 4, integer=True)
        self.crop_overlap_ratio = _check_number(kind, "crop_overlap_ratio", crop_overlap_ratio, 0.0, 1.0)
        self.crop_n_points_downscale_factor = _check_number(
            kind, "crop_n_points_downscale_factor", crop_n_points_downscale_factor, 1, integer=True
        )

    @classmethod
    def _load(cls, folder: str, config: dict, dtype: torch.dtype):
        import transformers

        with _quiet_transformers():
            model = getattr(transformers, cls._model_class).from_pretrained(
                folder, dtype=dtype, use_safetensors=True
            )
        return model, transformers.AutoImageProcessor.from_pretrained(folder)

    def _crop_boxes(self, height: int, width: int) -> list[tuple[int, int, int, int, int]]:
        """``(x0, y0, x1, y1, layer)`` of the whole image and of each crop layer (``predictor.pyramid_crop_boxes``:
        crops stay inside the image and keep their size, so a one-pixel-high image has no empty crop)."""
        boxes = {(0, 0, width, height): 0}
        for layer in range(1, self.crops_n_layers + 1):
            overlap = int(self.crop_overlap_ratio * min(height, width) * 2 / 2**layer)
            for box in pyramid_crop_boxes(width, height, layer, overlap):
                boxes.setdefault(box, layer)  # a box repeated (tiny images) runs once
        return [(*box, layer) for box, layer in boxes.items()]

    @staticmethod
    def _crop_embeddings(embeddings, c: int) -> dict[str, Any]:
        """The mask decoder's image inputs for crop ``c`` of ``get_image_embeddings``' output: SAM's
        ``(C, D, s, s)`` tensor, or SAM 2's list of levels, each sliced to crop ``c``."""
        if isinstance(embeddings, list):
            return {"image_embeddings": [level[c : c + 1] for level in embeddings]}
        return {"image_embeddings": embeddings[c : c + 1]}

    def _points(self, layer: int, model_height: int, model_width: int) -> torch.Tensor:
        """``(P, 2)`` point prompts ``(x, y)`` of a crop layer, in the model input's pixels: a grid of cell
        centres over the crop as the model sees it (SAM resizes the longer side, SAM 2 both sides)."""
        per_side = max(1, self.points_per_side // self.crop_n_points_downscale_factor**layer)
        centres = (torch.arange(per_side, dtype=torch.float32) + 0.5) / per_side  # (n,)
        ys, xs = torch.meshgrid(centres, centres, indexing="ij")  # (n, n) each
        return torch.stack([xs.ravel() * model_width, ys.ravel() * model_height], dim=1)  # (n * n, 2)

    @torch.inference_mode()
    def _image_masks(self, image: np.ndarray) -> Masks:
        """Automatic mask generation on one ``(H, W, 3)`` uint8 image."""
        processor, model = self.processor, self.model
        height, width = image.shape[:2]
        boxes = self._crop_boxes(height, width)
        crops = [image[y0:y1, x0:x1] for x0, y0, x1, y1, _ in boxes]
        inputs = processor(images=crops, return_tensors="pt", input_data_format="channels_last")
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)  # (C, 3, S, S)
        embeddings = model.get_image_embeddings(pixel_values)  # (C, D, s, s); SAM 2: levels; SAM-HQ: + layers
        resized = inputs.get("reshaped_input_sizes")  # SAM: each crop's size before padding; SAM 2: none
        codes, scores, mask_boxes = [], [], []
        for c, (x0, y0, x1, y1, layer) in enumerate(boxes):
            crop_embeddings = self._crop_embeddings(embeddings, c)
            model_h, model_w = (int(v) for v in (pixel_values.shape[-2:] if resized is None else resized[c]))
            points = self._points(layer, model_h, model_w).to(self.device, self.dtype)  # (P, 2)
            crop_box = torch.tensor([x0, y0, x1, y1], dtype=torch.float32, device=self.device)
            for start in range(0, len(points), self.points_per_batch):  # batched point prompts
                batch = points[start : start + self.points_per_batch]  # (B, 2)
                outputs = model(
                    **crop_embeddings,
                    input_points=batch[None, :, None, :],  # (1, B, 1, 2)
                    input_labels=torch.ones((1, len(batch), 1), dtype=torch.long, device=self.device),
                    multimask_output=True,
                )
                # The predicted-IoU filter first, on the low-resolution masks: it reads the scores only, so
                # the masks it drops are never upsampled (SAM's own order upsamples all 3 B first: 3-5x slower).
                iou = outputs.iou_scores[0].float().flatten()  # (3B,)
                low_res = outputs.pred_masks[0].float().flatten(0, 1)  # (3B, h', w')
                if self.pred_iou_thresh > 0.0:
                    keep = iou > self.pred_iou_thresh
                    iou, low_res = iou[keep], low_res[keep]
                if not len(iou):
                    continue
                [logits] = processor.post_process_masks(  # (K, 1, h, w) mask logits at the crop's size
                    [low_res[:, None]],
                    inputs["original_sizes"][c : c + 1],
                    reshaped_input_sizes=None if resized is None else resized[c : c + 1],
                    binarize=False,
                )
                batch_codes, batch_scores, batch_boxes = processor.filter_masks(
                    logits,
                    iou[:, None],
                    (height, width),
                    crop_box,
                    0.0,  # the IoU filter: done above
                    self.stability_score_thresh,
                    self.mask_threshold,
                    self.stability_score_offset,
                )
                codes.extend(batch_codes)
                scores.append(batch_scores)
                mask_boxes.append(batch_boxes)
        if not codes:
            return np.zeros((0, height, width), dtype=bool), np.zeros(0)
        masks, kept_scores, _, _ = processor.post_process_for_mask_generation(
            codes, torch.cat(scores), torch.cat(mask_boxes), self.box_nms_thresh
        )
        masks = torch.stack([mask.cpu() for mask in masks]).numpy()  # (N, H, W) bool
        return masks, kept_scores.float().cpu().numpy()

    def masks(self, images: list[np.ndarray]) -> list[Masks]:
        return [self._image_masks(image) for image in _check_images(images)]


class SamHqTokenizer(SamTokenizer):
    """SAM-HQ's automatic mask generation: SAM's (same options and defaults) with ``SamHQModel``, whose mask decoder
    also reads the image encoder's early layers (``intermediate_embeddings``) for finer mask edges."""

    kind = "sam_hq"
    model_types = ("sam_hq",)
    _model_class = "SamHQModel"

    @staticmethod
    def _crop_embeddings(embeddings, c: int) -> dict[str, Any]:
        image_embeddings, layers = embeddings  # (C, D, s, s) and the encoder's early layers, each (C, ...)
        return {
            "image_embeddings": image_embeddings[c : c + 1],
            "intermediate_embeddings": [layer[c : c + 1] for layer in layers],
        }


class Sam2Tokenizer(SamTokenizer):
    """SAM 2's automatic mask generation: as ``SamTokenizer`` (same options and defaults), with ``Sam2Model``;
    SAM 2.1 hub checkpoints (``model_type: sam2_video``) load their image model."""

    kind = "sam2"
    model_types = ("sam2", "sam2_video")
    _model_class = "Sam2Model"


class EdgeTamTokenizer(Sam2Tokenizer):
    """EdgeTAM's automatic mask generation: SAM 2's (same options and defaults) with ``EdgeTamModel``, SAM 2's
    on-device variant (a RepViT image encoder instead of Hiera; the same prompt encoder and mask decoder)."""

    kind = "edgetam"
    model_types = ("edgetam", "edgetam_video")
    _model_class = "EdgeTamModel"


class PanopticTokenizer(MaskTokenizer):
    """A universal-segmentation model's panoptic segments as masks (its image processor's
    ``post_process_panoptic_segmentation``); pixels it leaves unlabelled are holes (regions of their own).

    Args:
        score_threshold: segments whose class score is at most this are dropped by the model's filter (their
            pixels become holes); transformers' ``threshold``, renamed here, where ``threshold`` is EPOC's.
        mask_threshold: binarisation of each query's mask probabilities.
        overlap_mask_area_threshold: a segment whose visible area is at most this fraction of its mask is
            dropped (its pixels become holes).
        batch_size: images of the same size per forward pass.
        min_hole_area: see ``masks.masks_to_label_map``.

    No class is fused: every instance of a "stuff" class stays its own segment (more, finer tokens).
    """

    _model_class = ""

    def __init__(
        self,
        model,
        processor,
        *,
        checkpoint: str = "",
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float = 0.8,
        batch_size: int = 4,
        min_hole_area: int | None = None,
    ) -> None:
        super().__init__(model, processor, checkpoint=checkpoint, min_hole_area=min_hole_area)
        kind = self.kind
        self.score_threshold = _check_number(kind, "score_threshold", score_threshold, 0.0, 1.0)
        self.mask_threshold = _check_number(kind, "mask_threshold", mask_threshold, 0.0, 1.0)
        self.overlap_mask_area_threshold = _check_number(
            kind, "overlap_mask_area_threshold", overlap_mask_area_threshold, 0.0, 1.0
        )
        self.batch_size = _check_number(kind, "batch_size", batch_size, 1, integer=True)

    @classmethod
    def _load(cls, folder: str, config: dict, dtype: torch.dtype):
        import transformers

        model = getattr(transformers, cls._model_class).from_pretrained(
            folder, dtype=dtype, use_safetensors=True
        )
        return model, transformers.AutoImageProcessor.from_pretrained(folder)

    def _inputs(self, images: list[np.ndarray]):
        return self.processor(images=images, return_tensors="pt", input_data_format="channels_last")

    @torch.inference_mode()
    def _batch_masks(self, images: list[np.ndarray]) -> list[Masks]:
        """Panoptic segments of images that all have the same size (one padded batch, no padding ambiguity)."""
        inputs = self._inputs(images).to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        outputs = self.model(**inputs)
        outputs.class_queries_logits = outputs.class_queries_logits.float()
        outputs.masks_queries_logits = outputs.masks_queries_logits.float()
        height, width = images[0].shape[:2]
        results = self.processor.post_process_panoptic_segmentation(
            outputs,
            threshold=self.score_threshold,
            mask_threshold=self.mask_threshold,
            overlap_mask_area_threshold=self.overlap_mask_area_threshold,
            label_ids_to_fuse=set(),
            target_sizes=[(height, width)] * len(images),
        )
        masks = []
        for result in results:
            segmentation = result["segmentation"].cpu().numpy()  # (H, W) segment ids; 0 or -1: unlabelled
            ids = np.array([info["id"] for info in result["segments_info"]], dtype=np.int64)  # (N,)
            scores = np.array([info["score"] for info in result["segments_info"]], dtype=np.float64)  # (N,)
            masks.append((segmentation[None] == ids[:, None, None], scores))  # (N, H, W): disjoint
        return masks

    def masks(self, images: list[np.ndarray]) -> list[Masks]:
        images = _check_images(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.shape[:2], []).append(i)
        results: dict[int, Masks] = {}
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                results.update(zip(batch, self._batch_masks([images[i] for i in batch])))
        return [results[i] for i in range(len(images))]


class Mask2FormerTokenizer(PanopticTokenizer):
    """Mask2Former's panoptic segments (``Mask2FormerForUniversalSegmentation``)."""

    kind = "mask2former"
    model_types = ("mask2former",)
    _model_class = "Mask2FormerForUniversalSegmentation"


class OneFormerTokenizer(PanopticTokenizer):
    """OneFormer's panoptic segments (``OneFormerForUniversalSegmentation``, task "panoptic"). The task text is
    tokenized by the checkpoint's own tokenizer; the image processor's class metadata (a file the hub
    checkpoints fetch from another repository) is not loaded: inference does not read it."""

    kind = "oneformer"
    model_types = ("oneformer",)
    _model_class = "OneFormerForUniversalSegmentation"

    @classmethod
    def _load(cls, folder: str, config: dict, dtype: torch.dtype):
        from transformers import (
            AutoTokenizer,
            OneFormerForUniversalSegmentation,
            OneFormerImageProcessor,
            OneFormerProcessor,
        )

        model = OneFormerForUniversalSegmentation.from_pretrained(folder, dtype=dtype, use_safetensors=True)
        processor = OneFormerProcessor(
            image_processor=OneFormerImageProcessor.from_pretrained(folder, class_info_file=None),
            tokenizer=AutoTokenizer.from_pretrained(folder),
            max_seq_length=model.config.text_encoder_context_length,
            task_seq_length=model.config.task_seq_len,
        )
        return model, processor

    def _inputs(self, images: list[np.ndarray]):
        return self.processor(
            images=images,
            task_inputs=["panoptic"] * len(images),
            return_tensors="pt",
            input_data_format="channels_last",
        )


def create_sam_tokenizer(checkpoint: str, **options) -> SamTokenizer:
    """The ``sam`` tokenizer family: any ``SamModel`` checkpoint (e.g. ``facebook/sam-vit-base``)."""
    return SamTokenizer.from_pretrained(checkpoint, **options)


def create_sam_hq_tokenizer(checkpoint: str, **options) -> SamHqTokenizer:
    """The ``sam_hq`` tokenizer family: any ``SamHQModel`` checkpoint (e.g. ``syscv-community/sam-hq-vit-base``)."""
    return SamHqTokenizer.from_pretrained(checkpoint, **options)


def create_sam2_tokenizer(checkpoint: str, **options) -> Sam2Tokenizer:
    """The ``sam2`` tokenizer family: any ``Sam2Model`` checkpoint (e.g. ``facebook/sam2.1-hiera-tiny``)."""
    return Sam2Tokenizer.from_pretrained(checkpoint, **options)


def create_edgetam_tokenizer(checkpoint: str, **options) -> EdgeTamTokenizer:
    """The ``edgetam`` tokenizer family: any ``EdgeTamModel`` checkpoint (e.g. ``yonigozlan/EdgeTAM-hf``)."""
    return EdgeTamTokenizer.from_pretrained(checkpoint, **options)


def create_mask2former_tokenizer(checkpoint: str, **options) -> Mask2FormerTokenizer:
    """The ``mask2former`` tokenizer family (e.g. ``facebook/mask2former-swin-tiny-coco-panoptic``)."""
    return Mask2FormerTokenizer.from_pretrained(checkpoint, **options)


def create_oneformer_tokenizer(checkpoint: str, **options) -> OneFormerTokenizer:
    """The ``oneformer`` tokenizer family (e.g. ``shi-labs/oneformer_ade20k_swin_tiny``)."""
    return OneFormerTokenizer.from_pretrained(checkpoint, **options)


__all__ = [
    "EdgeTamTokenizer",
    "Mask2FormerTokenizer",
    "MaskTokenizer",
    "OneFormerTokenizer",
    "PanopticTokenizer",
    "Sam2Tokenizer",
    "SamHqTokenizer",
    "SamTokenizer",
    "create_edgetam_tokenizer",
    "create_mask2former_tokenizer",
    "create_oneformer_tokenizer",
    "create_sam2_tokenizer",
    "create_sam_hq_tokenizer",
    "create_sam_tokenizer",
]
