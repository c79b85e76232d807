"""Collation: a batch of tokenized samples -> padded text tensors and the packed image tensors of the model."""

from __future__ import annotations

import numpy as np
import torch

from ...data.llava import load_rgb
from ...image_utils import decode_label_map
from .tokens import IGNORE_INDEX


class SubobjectCollator:
    """Pads text and packs the images of a batch for ``SubobjectLlavaForConditionalGeneration``.

    Each feature holds ``input_ids``/``labels`` (lists), ``image`` (path, PIL or ``None``), ``label_map_png``
    (16-bit PNG bytes, as the label-map store holds them) or ``label_maps`` ((h, w) array), and ``num_tokens``.
    Returns ``input_ids``/``attention_mask``/``labels`` (B, L) (right padding; labels -100 on padding) and, if
    any sample has an image, ``pixel_values`` (N, 3, H, W) float32, ``label_maps`` (N, h, w) int64 and
    ``num_tokens`` (N,) int64 for those N images in batch order.
    """

    def __init__(self, image_processor, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.image_processor = image_processor
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = len(features)
        input_ids = torch.full((batch, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        for i, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[i, :n] = torch.as_tensor(feature["input_ids"])
            labels[i, :n] = torch.as_tensor(feature["labels"])
            attention_mask[i, :n] = 1
        out = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        with_image = [f for f in features if f.get("image") is not None]
        if with_image:
            images = [load_rgb(f["image"], "batch image") for f in with_image]
            label_maps = [  # precomputed: the processor segments nothing
                decode_label_map(f["label_map_png"]) if "label_map_png" in f else np.asarray(f["label_maps"])
                for f in with_image
            ]
            inputs = self.image_processor(images, label_maps=label_maps, return_tensors="pt")
            for name in ("pixel_values", "label_maps", "num_tokens"):
                out[name] = inputs[name]
        return out


__all__ = ["SubobjectCollator"]
