"""Tiny random models and tokenizers, built locally in milliseconds: for tests, examples and smoke runs.

Nothing here downloads anything. The one home of these builders (as ``transformers.testing_utils``), used by
``train --config configs/vlm_tiny_smoke.yaml`` (``model.tiny``), the comparison's word-level tokenizer, the
examples and the tests.
"""

from __future__ import annotations


def tiny_text_config(vocab_size: int, **token_ids):
    """A 2-layer Llama config of width 32 (tests, smoke runs); ``token_ids``: ``pad/bos/eos_token_id``."""
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        **token_ids,
    )


def tiny_vision_config(image_size: int = 32, config_class=None):
    """A 2-layer ViT config of width 32 with 8-pixel patches (``CLIPVisionConfig`` unless ``config_class``)."""
    if config_class is None:
        from transformers import CLIPVisionConfig as config_class
    return config_class(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=8,
    )


def build_tiny_model(tokenizer, image_size: int = 32, **overrides):
    """A random SubobjectLlava (CLIP vision width 32, Llama width 32, 2 layers each) for ``tokenizer``.

    ``overrides`` are ``SubobjectLlavaConfig`` fields. Builds in well under a second; nothing is downloaded.
    """
    from .configuration_subobject_llava import SubobjectLlavaConfig
    from .modeling_subobject_llava import SubobjectLlavaForConditionalGeneration
    from .processing_subobject_llava import add_image_token

    text_config = tiny_text_config(
        len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    settings = {"shape_resolution": 4, "max_tokens_per_image": 64, **overrides}
    config = SubobjectLlavaConfig(
        vision_config=tiny_vision_config(image_size), text_config=text_config, **settings
    )
    add_image_token(tokenizer, config)
    return SubobjectLlavaForConditionalGeneration(config)


def tiny_tokenizer(words: list[str] | None = None, named_tokens: dict[str, str] | None = None):
    """A word-level ``PreTrainedTokenizerFast`` (``<pad> <s> </s> <unk>`` + ``words`` + ``<image>``), built locally.

    Adds ``<s>`` in front of every text, as Llama tokenizers do. ``named_tokens``: model-specific special
    tokens by attribute (e.g. ``{"boi_token": "<start_of_image>"}``, as Gemma 3's tokenizer has), added to
    the vocabulary. For tests, examples and smoke runs.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from .processing_subobject_llava import add_image_token

    if words is None:  # the words of the synthetic smoke set (``configs/vlm_tiny_smoke.yaml``)
        from .data.synthetic_shapes import synthetic_vocabulary

        words = synthetic_vocabulary()
    named_tokens = dict(named_tokens or {})
    special = ["<pad>", "<s>", "</s>", "<unk>", *named_tokens.values()]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(special + list(words)))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        **named_tokens,
    )
    if named_tokens:  # special: never split, never stripped by the word-level pre-tokenizer
        tokenizer.add_special_tokens(
            {"extra_special_tokens": list(named_tokens.values())}, replace_extra_special_tokens=False
        )
    add_image_token(tokenizer)
    return tokenizer


_TINY_NAMED_TOKENS = {
    "gemma3": {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
    "qwen2_vl": {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                 "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"},
    "idefics3": {"fake_image_token": "<fake_token_around_image>", "global_image_token": "<global-img>",
                 "end_of_utterance_token": "<end_of_utterance>"},
}  # fmt: skip
_TINY_NAMED_TOKENS["qwen2_5_vl"] = _TINY_NAMED_TOKENS["qwen2_vl"]
_TINY_NAMED_TOKENS["smolvlm"] = _TINY_NAMED_TOKENS["idefics3"]
TINY_SOURCE_MEAN, TINY_SOURCE_STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def _tiny_text(config_class, vocab_size: int, tokenizer, **extra):
    """A 1-layer text config of width 32 of ``config_class`` with ``tokenizer``'s special ids."""
    return config_class(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        vocab_size=vocab_size,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **extra,
    )


def _tiny_vit(config_class, image_size: int = 32, **extra):
    """A 1-layer ViT config of width 32 with 8-pixel patches."""
    return config_class(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=8,
        **extra,
    )


def save_tiny_source_vlm(model_type: str, folder) -> None:
    """Save a random tiny transformers VLM of ``model_type`` into ``folder`` as the hub ships one (weights,
    tokenizer with its chat template, image processor): what ``subobject-vlm convert`` takes. Built locally in
    well under a second; nothing is downloaded.

    Width 32, one layer per tower, 32-pixel images with 8-pixel patches (Qwen2-VL: 2-pixel patches), the
    word-level :func:`tiny_tokenizer` with the family's special tokens, images normalised with
    ``TINY_SOURCE_MEAN`` / ``TINY_SOURCE_STD``; PaliGemma's tokenizer has no chat template, as on the hub.
    """
    model, tokenizer, image_processor = _tiny_source_parts(model_type)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)


def _tiny_source_parts(model_type: str):
    """(model, tokenizer, image processor) of a tiny VLM of ``model_type`` (see :func:`save_tiny_source_vlm`)."""
    import transformers as tf

    from .processing_subobject_llava import DEFAULT_CHAT_TEMPLATE

    tokenizer = tiny_tokenizer(named_tokens=_TINY_NAMED_TOKENS.get(model_type))
    vocab = len(tokenizer)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    norm = {"image_mean": TINY_SOURCE_MEAN, "image_std": TINY_SOURCE_STD}
    square = {"height": 32, "width": 32}
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE  # writes <image> for an image, as LLaVA's does

    if model_type in ("llava_next", "llava_onevision"):
        next_ = model_type == "llava_next"
        config = (tf.LlavaNextConfig if next_ else tf.LlavaOnevisionConfig)(
            vision_config=_tiny_vit(tf.CLIPVisionConfig if next_ else tf.SiglipVisionConfig),
            text_config=_tiny_text(tf.LlamaConfig if next_ else tf.Qwen2Config, vocab, tokenizer),
            image_token_index=image_token_id,
            image_grid_pinpoints=[[32, 32]],
            vision_feature_layer=-2 if next_ else -1,
            vision_feature_select_strategy="default" if next_ else "full",
        )
        if next_:
            images = tf.LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size=square, **norm)
        else:
            images = tf.LlavaOnevisionImageProcessor(size=square, **norm)
    elif model_type in ("idefics3", "smolvlm"):
        smol = model_type == "smolvlm"
        config = (tf.SmolVLMConfig if smol else tf.Idefics3Config)(
            vision_config=_tiny_vit(tf.SmolVLMVisionConfig if smol else tf.Idefics3VisionConfig),
            text_config=_tiny_text(tf.LlamaConfig, vocab, tokenizer),
            image_token_id=image_token_id,
            scale_factor=2,
        )
        images = (tf.SmolVLMImageProcessor if smol else tf.Idefics3ImageProcessor)(
            size={"longest_edge": 32}, max_image_size={"longest_edge": 32}, **norm
        )
    elif model_type == "paligemma":
        tokenizer.chat_template = None
        config = tf.PaliGemmaConfig(
            vision_config=_tiny_vit(tf.SiglipVisionConfig, projection_dim=32),
            text_config=_tiny_text(tf.GemmaConfig, vocab, tokenizer),
            image_token_index=image_token_id,
            projection_dim=32,
        )
        images = tf.SiglipImageProcessor(size=square, **norm)
    elif model_type == "gemma3":
        config = tf.Gemma3Config(
            vision_config=_tiny_vit(tf.SiglipVisionConfig),
            text_config=_tiny_text(tf.Gemma3TextConfig, vocab, tokenizer, sliding_window=16),
            mm_tokens_per_image=4,
            boi_token_index=tokenizer.boi_token_id,
            eoi_token_index=tokenizer.eoi_token_id,
            image_token_index=tokenizer.image_token_id,
        )
        images = tf.Gemma3ImageProcessor(size=square, **norm)
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE.replace("'<image>", "'<start_of_image>")
    elif model_type in ("qwen2_vl", "qwen2_5_vl"):
        qwen2 = model_type == "qwen2_vl"
        vision = {
            "depth": 1,
            "num_heads": 2,
            "patch_size": 2,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        }
        if qwen2:
            vision.update(embed_dim=32, hidden_size=32, mlp_ratio=2)
        else:
            vision.update(hidden_size=32, out_hidden_size=32, intermediate_size=64, window_size=8,
                          fullatt_block_indexes=[0])  # fmt: skip
        rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]}
        text_class = tf.Qwen2VLTextConfig if qwen2 else tf.Qwen2_5_VLTextConfig
        config = (tf.Qwen2VLConfig if qwen2 else tf.Qwen2_5_VLConfig)(
            vision_config=vision,
            text_config=_tiny_text(text_class, vocab, tokenizer, rope_parameters=rope),
            image_token_id=tokenizer.image_token_id,
            video_token_id=tokenizer.video_token_id,
            vision_start_token_id=tokenizer.vision_start_token_id,
            vision_end_token_id=tokenizer.vision_end_token_id,
        )
        pixels = {"shortest_edge": 32 * 32, "longest_edge": 64 * 64}
        images = tf.Qwen2VLImageProcessor(size=pixels, patch_size=2, merge_size=2, **norm)
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE.replace(
            "'<image>", "'<|vision_start|><|image_pad|><|vision_end|>"
        )
    else:
        raise ValueError(f"no tiny source builder for model_type {model_type!r}")
    return tf.AutoModelForImageTextToText.from_config(config), tokenizer, images


__all__ = [
    "build_tiny_model",
    "save_tiny_source_vlm",
    "tiny_text_config",
    "tiny_tokenizer",
    "tiny_vision_config",
]
