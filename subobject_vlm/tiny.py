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


def tiny_tokenizer(words: list[str] | None = None):
    """A word-level ``PreTrainedTokenizerFast`` (``<pad> <s> </s> <unk>`` + ``words`` + ``<image>``), built locally.

    Adds ``<s>`` in front of every text, as Llama tokenizers do. For tests, examples and smoke runs.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from .processing_subobject_llava import add_image_token

    if words is None:  # the words of the synthetic smoke set (``configs/vlm_tiny_smoke.yaml``)
        from .data.synthetic_shapes import synthetic_vocabulary

        words = synthetic_vocabulary()
    special = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(special + list(words)))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    add_image_token(tokenizer)
    return tokenizer


__all__ = ["build_tiny_model", "tiny_text_config", "tiny_tokenizer", "tiny_vision_config"]
