"""The VLM families ``subobject-vlm convert`` takes: one small declarative spec each.

A family is data, not code paths: :class:`VLMFamily` says where a source model (as its transformers class
builds it) keeps its vision tower, language model and projector, how its image features are read, how its
projector is reused, and its image and prompt conventions. One conversion path
(:func:`subobject_vlm.conversion.convert_checkpoint`) reads the spec, and one model
(:class:`~subobject_vlm.modeling_subobject_llava.SubobjectLlavaForConditionalGeneration`) runs every family:
its vision tower and language model are whatever the source's ``vision_config`` / ``text_config`` build, and
its features come from the reader named by ``feature_fn`` (a three-entry table in the model module).

>>> family_of("llava_onevision").projector_layers
('linear_1', 'linear_2')

Adding a family means adding a spec here and its tiny-model test (``tests/test_families.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

VISION_TOWER_PREFIX = "model.vision_tower."
LANGUAGE_MODEL_PREFIX = "model.language_model."
PROJECTOR_PREFIX = "model.multi_modal_projector."


@dataclass(frozen=True)
class VLMFamily:
    """How to read one family of transformers VLMs.

    Attributes:
        name: the family's name (what the README table and error messages say).
        model_types: the source ``config.model_type`` values of this family.
        vision_prefix: where the vision tower's tensors live in the source's state dict.
        text_prefix: where the language model's (decoder's) tensors live; ``lm_head.`` is kept as it is.
        projector_prefix: where the family's projector / connector lives (replaced by
            :class:`~subobject_vlm.embedding.MaskPooledEmbedding`).
        projector_layers: the projector's ``Linear`` layers, first to last, relative to ``projector_prefix``,
            that the region embedding starts from (``reuse_projector``); empty: no reuse. A first layer whose
            input is ``k`` times the feature width (a pixel shuffle or a patch merger concatenating ``k``
            patches) is folded to the width by summing its ``k`` column blocks: the region token is then the
            source projection of ``k`` patches that all hold the region's mean feature.
        projector_act: activation between the reused layers (``gelu``; ``None``: the source config's
            ``projector_hidden_act``).
        unused: other source tensors deliberately left out (e.g. LLaVA-NeXT's ``image_newline``).
        feature_fn: the model's feature reader: ``hidden_states`` (hidden state ``feature_layer`` of a ViT,
            CLS dropped where the tower has one), ``last_hidden_state`` (the tower's final, post-normalised
            output, as SigLIP families project it) or ``qwen2_vl`` (see :data:`QWEN2_VL`).
        feature_layer: the source config attribute naming the hidden state (LLaVA's ``vision_feature_layer``),
            or ``None`` where ``feature_fn`` fixes it.
        image_patches: for a tower without a fixed input size, the processor's square side in patches;
            ``None``: the source processor's crop size, else the vision config's ``image_size``.
        pad_to_square: the source pads images to a square (background: the mean colour) before resizing; the
            converted image processor does too (``do_pad``), for its pixels and its label maps alike.
        image_token: the token the family's chat template writes for one image (the processor expands it
            into ``n + 2`` placeholders, which the model fills with ``[start, regions..., end]``).
        chat_template: the template to use where the source ships none. Either way the converted checkpoint's
            template marks assistant turns ``{% generation %}`` (wrapping a template that has no markers, see
            :func:`~subobject_vlm.processing_subobject_llava.with_generation_markers`), for TRL's
            ``assistant_only_loss``.
    """

    name: str
    model_types: tuple[str, ...]
    vision_prefix: str
    text_prefix: str
    projector_prefix: str
    projector_layers: tuple[str, ...]
    feature_fn: str
    projector_act: str | None = "gelu"
    unused: tuple[str, ...] = ()
    feature_layer: str | None = None
    image_patches: int | None = None
    pad_to_square: bool = False
    image_token: str = "<image>"
    chat_template: str | None = None


LLAVA = VLMFamily(
    name="llava",
    model_types=("llava",),
    vision_prefix=VISION_TOWER_PREFIX,
    text_prefix=LANGUAGE_MODEL_PREFIX,
    projector_prefix=PROJECTOR_PREFIX,
    projector_layers=("linear_1", "linear_2"),
    projector_act=None,
    feature_fn="hidden_states",
    feature_layer="vision_feature_layer",
    pad_to_square=True,
)
"""LLaVA-1.5 (``llava-hf/llava-1.5-*-hf``, BakLLaVA, ...): CLIP ViT-L/14-336 hidden state -2 with its CLS
dropped, a GELU MLP projector, Vicuna / Mistral. LLaVA-1.5 pads an image to a square before resizing."""

LLAVA_NEXT = replace(
    LLAVA,
    name="llava_next",
    model_types=("llava_next",),
    unused=("model.image_newline",),
    pad_to_square=False,
)
"""LLaVA-NeXT / 1.6 (``llava-hf/llava-v1.6-*-hf``): LLaVA-1.5's tower and projector. Its any-resolution tiles
and their ``image_newline`` are not used: the regions of one whole image, resized to the tower's side, are
the image tokens."""

LLAVA_ONEVISION = replace(LLAVA_NEXT, name="llava_onevision", model_types=("llava_onevision",))
"""LLaVA-OneVision (``llava-hf/llava-onevision-qwen2-*-ov-hf``): SigLIP so400m (no CLS) hidden state -1,
an MLP projector, Qwen2. Any-resolution tiles and ``image_newline`` are not used, as for LLaVA-NeXT."""

IDEFICS3 = VLMFamily(
    name="idefics3",
    model_types=("idefics3", "smolvlm"),
    vision_prefix="model.vision_model.",
    text_prefix="model.text_model.",
    projector_prefix="model.connector.",
    projector_layers=("modality_projection.proj",),
    feature_fn="last_hidden_state",
)
"""Idefics3 and SmolVLM (``HuggingFaceTB/SmolVLM-256M-Instruct``, ...): a SigLIP-style tower without CLS
whose post-normalised output is pixel-shuffled (``scale_factor`` x ``scale_factor`` patches concatenated)
and projected by one bias-free ``Linear``, SmolLM2 / Llama. The region embedding reads the un-shuffled
patch grid and starts from that ``Linear`` folded to one patch's width. Image splitting is not used: the
whole image, resized to the tower's side, is cut into regions."""

PALIGEMMA = VLMFamily(
    name="paligemma",
    model_types=("paligemma",),
    vision_prefix=VISION_TOWER_PREFIX,
    text_prefix=LANGUAGE_MODEL_PREFIX,
    projector_prefix=PROJECTOR_PREFIX,
    projector_layers=("linear",),
    feature_fn="last_hidden_state",
    chat_template=(
        "{% for message in messages %}"
        "{% if message['content'] is string %}{% set parts = [{'type': 'text', 'text': message['content']}] %}"
        "{% else %}{% set parts = message['content'] %}{% endif %}"
        "{% if message['role'] == 'assistant' %}"
        "{% generation %}{% for part in parts if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
        "{{ eos_token }}{% endgeneration %}"
        "{% else %}"
        "{% for part in parts if part['type'] == 'image' %}<image>{% endfor %}"
        "{% for part in parts if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}{{ '\n' }}"
        "{% endif %}"
        "{% endfor %}"
    ),
)
"""PaliGemma / PaliGemma 2 (``google/paligemma2-3b-pt-224``, ...): SigLIP (no CLS) post-normalised output, one
``Linear`` projector (reused as it is), Gemma / Gemma 2 (whose word embeddings carry the ``sqrt(D)`` scale,
so image tokens need none). PaliGemma ships no chat template: the one here writes its prefix format
(``<image>`` ... prompt ``\\n`` answer ``<eos>``). PaliGemma attends bidirectionally over its prefix; the
converted model attends causally everywhere (fine-tuning adapts it)."""

GEMMA3 = VLMFamily(
    name="gemma3",
    model_types=("gemma3",),
    vision_prefix=VISION_TOWER_PREFIX,
    text_prefix=LANGUAGE_MODEL_PREFIX,
    projector_prefix=PROJECTOR_PREFIX,
    projector_layers=(),
    feature_fn="last_hidden_state",
    image_token="<start_of_image>",
)
"""Gemma 3 (``google/gemma-3-4b-it``, ...): SigLIP so400m (no CLS, 64 x 64 patches at 896 px) average-pooled
4 x 4, RMS-normalised, then projected; Gemma 3 text. The region embedding reads the full 64 x 64 grid. Its
projector is not reused: the normalisation acts between pooling and projection, where the region embedding
has no place for it. Gemma 3's chat template writes ``<start_of_image>`` for an image: the processor expands
that token into the ``n + 2`` placeholders (the learned start/end vectors play the part of Gemma 3's
begin/end-of-image tokens). Gemma 3 attends bidirectionally within an image; the converted model causally."""

QWEN2_VL = VLMFamily(
    name="qwen2_vl",
    model_types=("qwen2_vl", "qwen2_5_vl"),
    vision_prefix="model.visual.",
    text_prefix=LANGUAGE_MODEL_PREFIX,
    projector_prefix="model.visual.merger.mlp.",
    projector_layers=("0", "2"),
    feature_fn="qwen2_vl",
    image_patches=32,
    image_token="<|image_pad|>",
)
"""Qwen2-VL / Qwen2.5-VL (``Qwen/Qwen2-VL-2B-Instruct``, ...): their own ViT (14 px patches, 2-D rotary
positions; Qwen2.5 with windowed attention) whose patch merger normalises each patch (``ln_q``), concatenates
2 x 2 neighbours and maps them through a GELU MLP to the text width; Qwen2 text with M-RoPE.

Region pooling reads the **unmerged** 14 px grid after ``ln_q`` (the merger's per-patch normalisation,
kept in the tower): a region is pooled at twice the merged grid's resolution, so regions smaller than a
28 px cell keep features of their own, and the merger's MLP still fits exactly: its first layer, folded over
the four concatenated patches, and its last layer start the region embedding, so a region token begins as
the merger's output for a 2 x 2 block whose patches all hold the region's mean feature. The merger's MLP
thus becomes the region embedding and leaves the tower. Images are resized to a fixed square of 32 x 32 patches (448 px;
Qwen's dynamic resolution is not used). The text model gets ordinary 1-D positions:
Qwen2-VL's text model repeats 2-D ``position_ids`` over its three M-RoPE sections, which is plain RoPE."""

FAMILIES: tuple[VLMFamily, ...] = (LLAVA, LLAVA_NEXT, LLAVA_ONEVISION, IDEFICS3, PALIGEMMA, GEMMA3, QWEN2_VL)


def supported_model_types() -> list[str]:
    """Every source ``model_type`` a family here takes, in table order."""
    return [model_type for family in FAMILIES for model_type in family.model_types]


def family_of(model_type: str) -> VLMFamily:
    """The family of a source ``model_type``; ``ValueError`` (one line naming the supported ones) otherwise."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise ValueError(
        f"no VLM family takes model_type {model_type!r}; supported: {', '.join(supported_model_types())}"
    )


__all__ = ["FAMILIES", "VLMFamily", "family_of", "supported_model_types"]
