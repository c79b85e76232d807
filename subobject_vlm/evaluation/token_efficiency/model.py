"""The small LLaVA-style model every run trains: vision tower, MaskPooledEmbedding, language model."""

from __future__ import annotations

from typing import Any

from .config import ComparisonConfig


def build_model(config: ComparisonConfig, tokenizer, max_tokens: int):
    """The SubobjectLlava every run trains: vision tower, MaskPooledEmbedding, language model (see the config)."""
    from transformers import AutoConfig, LlamaConfig, ResNetConfig

    from ...configuration_subobject_llava import SubobjectLlavaConfig
    from ...modeling_pixel_features import PixelFeaturesConfig
    from ...modeling_subobject_llava import SubobjectLlavaForConditionalGeneration

    section = config.model
    vision = section.get("vision", "pixels")
    vision_kwargs: dict[str, Any] = {}
    if vision == "pixels":
        vision_kwargs = {"vision_config": PixelFeaturesConfig(), "feature_layer": -1}
    elif vision == "cnn":  # a small ResNet trained from scratch with the rest: stride 4, 64 channels
        resnet = ResNetConfig(embedding_size=32, hidden_sizes=[64], depths=[2], layer_type="basic")
        vision_kwargs = {"vision_config": resnet, "feature_layer": -1}
    elif "timm" in vision:
        vision_kwargs = {
            "vision_config": None,
            "timm_model_name": vision["timm"],
            "timm_pretrained": bool(vision.get("pretrained", False)),
            "feature_layer": vision.get("feature_layer", -1),
        }
    else:
        hf = AutoConfig.from_pretrained(vision["hf"])
        vision_kwargs = {
            "vision_config": getattr(hf, "vision_config", None) or hf,
            "feature_layer": vision.get("feature_layer", -2),
        }
    text = dict(section.get("text", {}))
    pretrained_text = text.pop("pretrained", None)
    if pretrained_text is not None:
        text_config = AutoConfig.from_pretrained(pretrained_text)
    else:
        width = text.pop("hidden_size", 128)
        defaults = {
            "hidden_size": width,
            "intermediate_size": 2 * width,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "max_position_embeddings": 2048,
            "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        text_config = LlamaConfig(**{**defaults, **text})  # the config's text settings win
    model_config = SubobjectLlavaConfig(
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        max_tokens_per_image=max_tokens,
        projector_depth=section.get("projector_depth", 2),
        shape_resolution=section.get("shape_resolution", 8),
        **vision_kwargs,
    )
    model = SubobjectLlavaForConditionalGeneration(model_config)
    if pretrained_text is not None:
        from transformers import AutoModelForCausalLM

        lm = AutoModelForCausalLM.from_pretrained(pretrained_text, use_safetensors=True)
        model.model.language_model.load_state_dict(lm.model.state_dict())
        model.lm_head.load_state_dict(lm.lm_head.state_dict())
    if "hf" in (vision if isinstance(vision, dict) else {}):
        tower = type(model.model.vision_tower).from_pretrained(vision["hf"], use_safetensors=True)
        model.model.vision_tower.load_state_dict(tower.state_dict())
    return model
