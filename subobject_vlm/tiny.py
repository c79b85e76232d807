"""Tiny random models and tokenizers, built locally in milliseconds: for tests, examples and smoke runs.

Nothing here downloads anything. The one home of these builders (as ``transformers.testing_utils``), used by
``train --config configs/vlm_tiny_smoke.yaml`` (``model.tiny``), the comparison's word-level tokenizer, the
examples and the tests.
"""

from __future__ import annotations


def tiny_text_config(vocab_size: int, config_class=None, num_hidden_layers: int = 2, **fields):
    """A Llama config (or ``config_class``) of width 32, 2 layers unless ``num_hidden_layers`` (tests, smoke
    runs); ``fields``: e.g. ``pad/bos/eos_token_id``."""
    if config_class is None:
        from transformers import LlamaConfig as config_class
    return config_class(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        **fields,
    )


def tiny_vision_config(image_size: int = 32, config_class=None, num_hidden_layers: int = 2, **fields):
    """A ViT config of width 32 with 8-pixel patches, 2 layers unless ``num_hidden_layers``
    (``CLIPVisionConfig`` unless ``config_class``)."""
    if config_class is None:
        from transformers import CLIPVisionConfig as config_class
    return config_class(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=8,
        **fields,
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
    "gemma3": {
        "boi_token": "<start_of_image>",
        "eoi_token": "<end_of_image>",
        "image_token": "<image_soft_token>",
        "sot_token": "<start_of_turn>",
        "eot_token": "<end_of_turn>",
    },
    "qwen2_vl": {
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_start_token": "<|vision_start|>",
        "vision_end_token": "<|vision_end|>",
        "im_start_token": "<|im_start|>",
        "im_end_token": "<|im_end|>",
    },
    "idefics3": {
        "fake_image_token": "<fake_token_around_image>",
        "global_image_token": "<global-img>",
        "end_of_utterance_token": "<end_of_utterance>",
        "im_start_token": "<|im_start|>",
    },
}
_CHAT_WORDS = ["system", "user", "assistant", "model", "User", "Assistant", "You", "are", "a", "helpful"]
_TINY_NAMED_TOKENS["qwen2_5_vl"] = _TINY_NAMED_TOKENS["qwen2_vl"]
_TINY_NAMED_TOKENS["smolvlm"] = _TINY_NAMED_TOKENS["idefics3"]
TINY_SOURCE_MEAN, TINY_SOURCE_STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]

# The chat templates the hub ships with these families (none has ``{% generation %}`` markers; llava-hf's do, as
# ``DEFAULT_CHAT_TEMPLATE``; PaliGemma ships none): ``HuggingFaceTB/SmolVLM-256M-Instruct``,
# ``Qwen/Qwen2-VL-2B-Instruct``, ``google/gemma-3-4b-it``.
HUB_CHAT_TEMPLATES = {
    "smolvlm": "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}",
    "qwen2_vl": "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}\n",
    "gemma3": "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n    {%- else -%}\n        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n    {%- endif -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n",
}


def _tiny_text(config_class, vocab_size: int, tokenizer, **extra):
    """A 1-layer text config of width 32 of ``config_class`` with ``tokenizer``'s special ids."""
    ids = {f"{k}_token_id": getattr(tokenizer, f"{k}_token_id") for k in ("pad", "bos", "eos")}
    return tiny_text_config(vocab_size, config_class, num_hidden_layers=1, head_dim=8, **ids, **extra)


def _tiny_vit(config_class, image_size: int = 32, **extra):
    """A 1-layer ViT config of width 32 with 8-pixel patches."""
    return tiny_vision_config(image_size, config_class, num_hidden_layers=1, **extra)


def save_tiny_source_vlm(model_type: str, folder) -> None:
    """Save a random tiny transformers VLM of ``model_type`` into ``folder`` as the hub ships one (weights,
    tokenizer with its chat template, image processor): what ``subobject-vlm convert`` takes. Built locally in
    well under a second; nothing is downloaded.

    Width 32, one layer per tower, 32-pixel images with 8-pixel patches (Qwen2-VL: 2-pixel patches), the
    word-level :func:`tiny_tokenizer` with the family's special tokens, images normalised with
    ``TINY_SOURCE_MEAN`` / ``TINY_SOURCE_STD``, the family's hub chat template (``HUB_CHAT_TEMPLATES``; LLaVA's:
    ``DEFAULT_CHAT_TEMPLATE``); PaliGemma's tokenizer has no chat template, as on the hub.
    """
    model, tokenizer, image_processor = _tiny_source_parts(model_type)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)


def _tiny_source_parts(model_type: str):
    """(model, tokenizer, image processor) of a tiny VLM of ``model_type`` (see :func:`save_tiny_source_vlm`)."""
    import transformers as tf

    from .data.synthetic_shapes import synthetic_vocabulary
    from .processing_subobject_llava import DEFAULT_CHAT_TEMPLATE

    words = synthetic_vocabulary() + _CHAT_WORDS  # the chat templates' own words too
    tokenizer = tiny_tokenizer(words, named_tokens=_TINY_NAMED_TOKENS.get(model_type))
    vocab = len(tokenizer)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    norm = {"image_mean": TINY_SOURCE_MEAN, "image_std": TINY_SOURCE_STD}
    square = {"height": 32, "width": 32}
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE  # llava-hf's: <image> for an image, generation markers

    if model_type == "llava":
        config = tf.LlavaConfig(
            vision_config=_tiny_vit(tf.CLIPVisionConfig),
            text_config=_tiny_text(tf.LlamaConfig, vocab, tokenizer),
            image_token_index=image_token_id,
            pad_token_id=tokenizer.pad_token_id,  # at the top level, as llava-hf saves it
        )
        images = tf.LlavaImageProcessor(size={"shortest_edge": 32}, crop_size=square, **norm)
    elif model_type in ("llava_next", "llava_onevision"):
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
        tokenizer.chat_template = HUB_CHAT_TEMPLATES["smolvlm"]
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
        tokenizer.chat_template = HUB_CHAT_TEMPLATES["gemma3"]
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
            vision.update(
                hidden_size=32,
                out_hidden_size=32,
                intermediate_size=64,
                window_size=8,
                fullatt_block_indexes=[0],
            )
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
        tokenizer.chat_template = HUB_CHAT_TEMPLATES["qwen2_vl"]
    else:
        raise ValueError(f"no tiny source builder for model_type {model_type!r}")
    return tf.AutoModelForImageTextToText.from_config(config), tokenizer, images


__all__ = [
    "HUB_CHAT_TEMPLATES",
    "build_tiny_model",
    "save_tiny_source_vlm",
    "tiny_text_config",
    "tiny_tokenizer",
    "tiny_vision_config",
]
