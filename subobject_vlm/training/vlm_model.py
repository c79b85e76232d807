"""The model a VLM training adapts: built from a checkpoint, from parts or tiny; its LoRA config; adapters
reloaded or merged afterwards."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..devices import DTYPES
from .config import (
    ConfigError,
)
from .vlm_config import TRAINED_MODULES, LoraSection, ModelSection, VLMTrainingConfig


def _build_from_parts(section: ModelSection, dtype: torch.dtype):
    """A SubobjectLlava from a pretrained causal LM and vision model (new embedding initialised at random)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from ..configuration_subobject_llava import SubobjectLlavaConfig
    from ..modeling_subobject_llava import SubobjectLlavaForConditionalGeneration
    from ..processing_subobject_llava import add_image_token

    text_config = AutoConfig.from_pretrained(section.text_model)
    vision_config = AutoConfig.from_pretrained(section.vision_model)
    vision_config = (
        getattr(vision_config, "vision_config", None) or vision_config
    )  # CLIPConfig -> vision part
    tokenizer = AutoTokenizer.from_pretrained(section.text_model)
    config = SubobjectLlavaConfig(
        vision_config=vision_config, text_config=text_config, **section.config_overrides
    )
    add_image_token(tokenizer, config)
    model = SubobjectLlavaForConditionalGeneration(config).to(dtype)
    vision = type(model.model.vision_tower).from_pretrained(
        section.vision_model, dtype=dtype, use_safetensors=True
    )
    model.model.vision_tower.load_state_dict(vision.state_dict())
    text = AutoModelForCausalLM.from_pretrained(section.text_model, dtype=dtype, use_safetensors=True)
    model.model.language_model.load_state_dict(text.model.state_dict())
    model.lm_head.load_state_dict(text.lm_head.state_dict())
    model.tie_weights()
    return model, tokenizer


def _image_processor_for(section: ModelSection, base_processor, overrides: dict):
    """The ``SubobjectImageProcessor`` for training: the checkpoint's (or a new one), with ``overrides``."""
    from ..image_processing_subobject import SubobjectImageProcessor

    settings: dict[str, Any] = {}
    if base_processor is not None:
        settings = {
            k: v
            for k, v in base_processor.to_dict().items()
            if k in base_processor.valid_kwargs.__annotations__
        }
    elif section.vision_model is not None:
        from transformers import AutoImageProcessor

        source = AutoImageProcessor.from_pretrained(section.vision_model)
        crop = getattr(source, "crop_size", None) or source.size
        side = crop.get("height") or crop.get("shortest_edge")
        settings = {
            "size": {"height": side, "width": side},
            "label_size": {"height": side, "width": side},
            "image_mean": list(source.image_mean),
            "image_std": list(source.image_std),
        }
    elif section.tiny:
        settings = {
            "size": {"height": 32, "width": 32},
            "label_size": {"height": 32, "width": 32},
            "boundary_model": "gradient",
            "max_tokens": 16,
        }
    return SubobjectImageProcessor(**{**settings, **overrides})


def build_model_and_processor(config: VLMTrainingConfig):
    """(model, processor, base_saved_elsewhere): the model to adapt and its ``SubobjectLlavaProcessor``."""
    from transformers import AutoProcessor

    from ..modeling_subobject_llava import SubobjectLlavaForConditionalGeneration
    from ..processing_subobject_llava import (
        DEFAULT_CHAT_TEMPLATE,
        DEFAULT_IMAGE_TOKEN,
        SubobjectLlavaProcessor,
    )

    section = config.model
    dtype = DTYPES[section.dtype]
    base_processor, image_token = None, DEFAULT_IMAGE_TOKEN
    if section.pretrained is not None:
        model = SubobjectLlavaForConditionalGeneration.from_pretrained(
            section.pretrained, dtype=dtype, use_safetensors=True
        )
        loaded = AutoProcessor.from_pretrained(section.pretrained)
        tokenizer, base_processor = loaded.tokenizer, loaded.image_processor
        image_token = loaded.image_token  # a converted Gemma 3 / Qwen2-VL keeps its family's token
        chat_template = section.chat_template or loaded.chat_template
    elif section.tiny:
        from ..tiny import build_tiny_model, tiny_tokenizer

        tokenizer = tiny_tokenizer()
        model = build_tiny_model(tokenizer, **section.config_overrides).to(dtype)
        chat_template = section.chat_template or DEFAULT_CHAT_TEMPLATE
    else:
        model, tokenizer = _build_from_parts(section, dtype)
        chat_template = section.chat_template or DEFAULT_CHAT_TEMPLATE
    image_processor = _image_processor_for(section, base_processor, dict(config.image_processor))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    processor = SubobjectLlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=chat_template,
        image_token=image_token,
    )
    if processor.image_token_id != model.config.image_token_id:
        raise ConfigError(
            f"the tokenizer's image token id {processor.image_token_id} differs from the model's "
            f"image_token_id {model.config.image_token_id}"
        )
    vision = model.config.vision_config
    size = image_processor.size
    if (
        vision is not None
        and hasattr(vision, "image_size")
        and (size["height"], size["width"]) != (vision.image_size,) * 2
    ):
        raise ConfigError(
            f"image_processor.size {dict(size)} does not match the vision tower's image_size {vision.image_size}"
        )
    if (image_processor.max_tokens or 0) > model.config.max_tokens_per_image:
        raise ConfigError(
            f"image_processor.max_tokens={image_processor.max_tokens} exceeds the model's max_tokens_per_image="
            f"{model.config.max_tokens_per_image}"
        )
    return model, processor, section.pretrained is not None


def lora_config(section: LoraSection, train_vision_tower: bool = False):
    """PEFT ``LoraConfig``: adapters on ``language_model`` projections only; the embedding trained in full."""
    from peft import LoraConfig

    names = "|".join(section.target_modules)
    return LoraConfig(
        r=section.r,
        lora_alpha=section.alpha,
        lora_dropout=section.dropout,
        target_modules=rf".*\blanguage_model\..*\.({names})",
        modules_to_save=[
            *TRAINED_MODULES,
            *(["vision_tower"] if train_vision_tower else []),
            *section.modules_to_save,
        ],
    )


def _base_model_path(adapter_dir: Path) -> str:
    settings = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = settings.get("base_model_name_or_path")
    if base and Path(base).is_dir():
        return base
    if (adapter_dir / "base").is_dir():  # the output folder was moved: its own base/ copy
        return str(adapter_dir / "base")
    if base:
        return base  # a hub id
    raise ValueError(f"{adapter_dir}/adapter_config.json names no base model")


def load_adapted_model(adapter_dir: str | os.PathLike, dtype: torch.dtype | None = None):
    """The base SubobjectLlava with the trained adapters and modules of ``adapter_dir`` (not merged), eval mode."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from .. import modeling_subobject_llava, processing_subobject_llava  # noqa: F401 - register the Auto classes

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ValueError(f"{adapter_dir} has no adapter_config.json: not a LoRA training output")
    base = AutoModelForImageTextToText.from_pretrained(
        _base_model_path(adapter_dir), dtype=dtype, use_safetensors=True
    )
    return PeftModel.from_pretrained(base, str(adapter_dir)).eval()


def merge_lora(
    adapter_dir: str | os.PathLike, out_dir: str | os.PathLike, dtype: torch.dtype | None = None
) -> Path:
    """Merge the LoRA adapters of ``adapter_dir`` into its base model; save model + processor to ``out_dir``.

    The result is a plain SubobjectLlava checkpoint (safetensors) loadable with
    ``AutoModelForImageTextToText.from_pretrained(out_dir)`` and ``AutoProcessor.from_pretrained(out_dir)``.
    """
    from transformers import AutoProcessor

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    merged = load_adapted_model(adapter_dir, dtype).merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    AutoProcessor.from_pretrained(adapter_dir).save_pretrained(out_dir)
    return out_dir


__all__ = ["build_model_and_processor", "load_adapted_model", "lora_config", "merge_lora"]
