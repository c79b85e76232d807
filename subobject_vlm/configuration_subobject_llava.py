"""Configuration of SubobjectLlava: a LLaVA-style VLM whose image tokens are subobject regions."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

FEATURE_FNS = ("hidden_states", "last_hidden_state", "qwen2_vl")
"""The feature readers a config may name (``feature_fn``); the modeling module holds one function each."""

NUM_IMAGE_BOUNDARY_TOKENS = 2
"""Learned start-of-image and end-of-image vectors placed around every image's region tokens."""


def num_image_placeholders(num_tokens: int | torch.Tensor) -> int | torch.Tensor:
    """Number of ``<image>`` placeholder tokens the processor must insert for an image with ``num_tokens`` regions.

    The model fills placeholder 0 with a learned start-of-image vector, placeholders ``1..n`` with the region
    tokens and placeholder ``n+1`` with a learned end-of-image vector, so this is ``num_tokens + 2``.
    Works on ints and on (B,) integer tensors.
    """
    return num_tokens + NUM_IMAGE_BOUNDARY_TOKENS


@strict
class SubobjectLlavaConfig(PreTrainedConfig):
    r"""
    Configuration of [`SubobjectLlavaForConditionalGeneration`]: a vision backbone, a [`MaskPooledEmbedding`]
    (one token per region of a label map) and a causal language model.

    Args:
        vision_config: HF vision backbone config (CLIP, SigLIP, ... vision model). Default: a CLIP ViT-L/14-336
            vision config, unless `timm_model_name` is set (then it must stay `None`).
        text_config: language model config (default: Llama).
        timm_model_name: use a timm backbone instead of an HF vision model, e.g. `"resnet50"` or
            `"vit_small_patch16_224"` (built with `features_only=True`).
        timm_pretrained: download timm's pretrained weights when the model is built from this config (default
            `False`: nothing is downloaded). Building the model resets it to `False`: the weights are then part
            of the model, saved with it, and `from_pretrained` never downloads them again.
        timm_kwargs: extra keyword arguments for `timm.create_model`.
        feature_layer: which hidden state (HF: index into `hidden_states`, default -2 as in LLaVA) or which
            feature stage (timm: index into the `features_only` outputs, default -1) feeds the pooling.
        feature_fn: how the HF vision tower's output becomes a feature map (`FEATURE_READERS` of the modeling
            module): `"hidden_states"` (hidden state `feature_layer`, CLS dropped; default),
            `"last_hidden_state"` (the tower's post-normalised output) or `"qwen2_vl"` (Qwen2-VL's unmerged
            patch grid).
        family: the VLM family the model was converted from (`subobject_vlm.families`), or `None`.
        shape_resolution: R, side of the per-region shape picture (R*R projector inputs).
        projector_depth: number of Linear layers of the projector MLP (>= 1).
        projector_hidden_size: width of the projector's hidden layers (default: the text hidden size).
        projector_hidden_act: activation between projector layers (`gelu`, `relu`, `silu`).
        image_token_index: id of the `<image>` placeholder token (also readable as `image_token_id`). It may lie
            outside the text vocabulary: placeholder positions never go through the word embeddings.
        max_tokens_per_image: largest number of regions one image may have (the processor's EPOC budget).

    Each image with `n` regions occupies `num_image_placeholders(n) = n + 2` placeholder tokens in the text:
    start-of-image vector, `n` region tokens, end-of-image vector.

    Example:

    ```python
    >>> from transformers import CLIPVisionConfig, LlamaConfig
    >>> from subobject_vlm import SubobjectLlavaConfig, SubobjectLlavaForConditionalGeneration
    >>> config = SubobjectLlavaConfig(vision_config=CLIPVisionConfig(), text_config=LlamaConfig())
    >>> model = SubobjectLlavaForConditionalGeneration(config)
    ```"""

    model_type = "subobject_llava"
    attribute_map = {"image_token_id": "image_token_index"}
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig, model_type="clip_vision_model", optional=True
        ),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }
    default_vision_config: ClassVar[dict[str, Any]] = {
        "intermediate_size": 4096,
        "hidden_size": 1024,
        "patch_size": 14,
        "image_size": 336,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "projection_dim": 768,
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    timm_model_name: str | None = None
    timm_pretrained: bool = False
    timm_kwargs: dict | None = None
    feature_layer: int | None = None
    feature_fn: str = "hidden_states"
    family: str | None = None
    shape_resolution: int = 8
    projector_depth: int = 2
    projector_hidden_size: int | None = None
    projector_hidden_act: str = "gelu"
    image_token_index: int = 32000
    max_tokens_per_image: int = 256
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        if self.timm_model_name is None and self.vision_config is None:
            self.vision_config = dict(self.default_vision_config)
        super().__post_init__(**kwargs)
        if self.feature_layer is None:
            self.feature_layer = -1 if self.timm_model_name is not None else -2
        if self.timm_kwargs is None:
            self.timm_kwargs = {}
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        self._check_values()

    def _check_values(self) -> None:
        """Raise a ValueError naming the field when a setting cannot work."""
        if self.timm_model_name is not None:
            if not isinstance(self.timm_model_name, str) or not self.timm_model_name:
                raise ValueError(f"timm_model_name must be a non-empty string, got {self.timm_model_name!r}")
            if self.vision_config is not None:
                raise ValueError(
                    "Set either vision_config (HF vision model) or timm_model_name (timm), not both"
                )
        elif not (
            hasattr(self.vision_config, "hidden_size") or getattr(self.vision_config, "hidden_sizes", None)
        ):
            raise ValueError(
                "vision_config must describe an HF vision model with a hidden_size (ViT) or hidden_sizes "
                f"(convolutional backbone), got {self.vision_config}"
            )
        int_fields = (
            "shape_resolution",
            "projector_depth",
            "max_tokens_per_image",
            "image_token_index",
            "feature_layer",
        )
        for name in int_fields + ("projector_hidden_size",):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"SubobjectLlavaConfig.{name} must be an int, got {value!r}")
        checks = {
            "shape_resolution": self.shape_resolution >= 1,
            "projector_depth": self.projector_depth >= 1,
            "projector_hidden_size": self.projector_hidden_size is None or self.projector_hidden_size >= 1,
            "max_tokens_per_image": self.max_tokens_per_image >= 1,
            "image_token_index": self.image_token_index >= 0,
            "projector_hidden_act": self.projector_hidden_act in ("gelu", "relu", "silu"),
            "feature_fn": self.feature_fn in FEATURE_FNS,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"Invalid SubobjectLlavaConfig.{name}: {getattr(self, name)!r}")

    def num_image_placeholders(self, num_tokens: int | torch.Tensor) -> int | torch.Tensor:
        """Placeholder tokens needed for an image with ``num_tokens`` regions (``num_tokens + 2``)."""
        return num_image_placeholders(num_tokens)


__all__ = ["FEATURE_FNS", "NUM_IMAGE_BOUNDARY_TOKENS", "SubobjectLlavaConfig", "num_image_placeholders"]
