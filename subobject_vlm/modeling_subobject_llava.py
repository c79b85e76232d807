"""SubobjectLlava: LLaVA whose image tokens are the regions of a label map (one token per subobject).

Differences from :class:`transformers.LlavaForConditionalGeneration`:

* the vision tower is an HF vision model (CLIP, SigLIP, Idefics3's, Qwen2-VL's, ...; read as the config's
  ``feature_fn`` says, e.g. hidden state ``feature_layer`` with CLS dropped, reshaped to a grid) or a timm
  backbone (``features_only``), giving a feature map ``(B, C, h, w)``;
* :class:`~subobject_vlm.embedding.MaskPooledEmbedding` replaces ``multi_modal_projector``: every region of
  the label map ``(B, H, W)`` becomes one token, so images have different numbers of tokens;
* each image's tokens are wrapped in a learned start-of-image and end-of-image vector. The processor expands
  ``<image>`` into ``num_image_placeholders(n) = n + 2`` placeholder tokens; the model fills them with
  ``[start, region_0, ..., region_{n-1}, end]``. No extra text tokens are needed.

``generate`` comes from the base classes: ``pixel_values``, ``label_maps`` and ``num_tokens`` are encoded once
before prefill (``get_image_features``) and reach ``forward`` as ``mm_encoder_outputs`` on the first step only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, LlavaForConditionalGeneration, LlavaModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.llava.modeling_llava import (
    LlavaCausalLMOutputWithPast,
    LlavaModelOutputWithPast,
    LlavaPreTrainedModel,
)
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple

from .configuration_subobject_llava import NUM_IMAGE_BOUNDARY_TOKENS, SubobjectLlavaConfig
from .embedding import MaskPooledEmbedding


@dataclass
class SubobjectImageOutput(BaseModelOutputWithPooling):
    """Output of ``get_image_features``.

    Attributes:
        last_hidden_state: (B, C, h, w) backbone feature map.
        pooler_output: list of B tensors (n_i + 2, D): ``[start, regions..., end]``, what fills the placeholders.
        image_tokens: (sum n_i, D) the region tokens alone, packed (image 0 first).
        tokens_per_image: (B,) int64, n_i.
    """

    image_tokens: torch.FloatTensor | None = None
    tokens_per_image: torch.LongTensor | None = None


class TimmVisionTower(nn.Module):
    """A timm backbone (``features_only=True``) returning one feature stage as (B, C, h, w)."""

    def __init__(self, config: SubobjectLlavaConfig) -> None:
        super().__init__()
        import timm

        self.model = timm.create_model(
            config.timm_model_name,
            pretrained=config.timm_pretrained,
            features_only=True,
            **config.timm_kwargs,
        )
        channels = self.model.feature_info.channels()
        if not -len(channels) <= config.feature_layer < len(channels):
            raise ValueError(
                f"feature_layer {config.feature_layer} out of range for {config.timm_model_name} "
                f"({len(channels)} feature stages)"
            )
        self.feature_layer = config.feature_layer
        self.num_channels = channels[config.feature_layer]
        if config.timm_pretrained:
            # keep timm's weights through post_init's weight initialisation ...
            for tensor in [*self.model.parameters(), *self.model.buffers()]:
                tensor._is_hf_initialized = True
            for module in self.model.modules():
                module._is_hf_initialized = True
            # ... and never download them again: from now on they are part of this model's own weights
            config.timm_pretrained = False

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, h, w)."""
        return self.model(pixel_values)[self.feature_layer]


def vision_channels(config: SubobjectLlavaConfig) -> int:
    """Channels C of the feature map the HF vision tower gives (see :data:`FEATURE_READERS`).

    ViTs and the pixel tower: ``hidden_size``; convolutional backbones (ResNet, ConvNeXt) list ``hidden_sizes``
    per stage, and their ``hidden_states`` are (stem, stage 1, ..., stage N); Qwen2-VL's ViT: ``embed_dim``.
    """
    vision = config.vision_config
    if config.feature_fn == "qwen2_vl":
        return getattr(vision, "embed_dim", None) or vision.hidden_size  # Qwen2-VL / Qwen2.5-VL
    if getattr(vision, "hidden_sizes", None):
        widths = [getattr(vision, "embedding_size", vision.hidden_sizes[0]), *vision.hidden_sizes]
        if not -len(widths) <= config.feature_layer < len(widths):
            raise ValueError(
                f"feature_layer {config.feature_layer} out of range for {len(widths)} hidden states"
            )
        return widths[config.feature_layer]
    return vision.hidden_size


def _token_grid(
    config: SubobjectLlavaConfig, hidden: torch.Tensor, pixel_values: torch.Tensor
) -> torch.Tensor:
    """ViT tokens (B, N, C) of (B, 3, H, W) pixels -> (B, C, h, w); a leading CLS token is dropped."""
    if hidden.ndim == 4:  # convolutional HF backbones already give (B, C, h, w)
        return hidden
    batch, length, channels = hidden.shape
    patch = config.vision_config.patch_size
    grid_h, grid_w = pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch
    if length == grid_h * grid_w + 1:  # drop CLS
        hidden = hidden[:, 1:]
    elif length != grid_h * grid_w:
        raise ValueError(
            f"vision tower gave {length} tokens for a {grid_h}x{grid_w} patch grid; cannot reshape to a feature map"
        )
    return hidden.transpose(1, 2).reshape(batch, channels, grid_h, grid_w)  # (B, C, h, w)


def _hidden_state_features(config: SubobjectLlavaConfig, tower: nn.Module, pixel_values: torch.Tensor):
    """LLaVA's reading: hidden state ``feature_layer`` (before the tower's final norm), CLS dropped."""
    hidden = tower(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
    return _token_grid(config, hidden[config.feature_layer], pixel_values)


def _last_hidden_state_features(config: SubobjectLlavaConfig, tower: nn.Module, pixel_values: torch.Tensor):
    """SigLIP families' reading (PaliGemma, Gemma 3, Idefics3 / SmolVLM): the tower's post-normalised output."""
    return _token_grid(config, tower(pixel_values, return_dict=True).last_hidden_state, pixel_values)


def _qwen2_vl_features(config: SubobjectLlavaConfig, tower: nn.Module, pixel_values: torch.Tensor):
    """Qwen2-VL / Qwen2.5-VL: the unmerged patch grid after the merger's per-patch ``ln_q`` (B, C, h, w).

    The pixels are cut into Qwen's flat patches as its image processor does (2 x 2 merge blocks together, each
    frame repeated ``temporal_patch_size`` times); the tower's merger has no MLP here (it became the region
    embedding, see :data:`subobject_vlm.families.QWEN2_VL`), so its output is ``ln_q`` of every patch, in
    processor order, which is put back on the (h, w) grid.
    """
    vision = config.vision_config
    batch, channels, height, width = pixel_values.shape
    patch, merge, frames = vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
    grid_h, grid_w = height // patch, width // patch
    if grid_h * patch != height or grid_w * patch != width or grid_h % merge or grid_w % merge:
        raise ValueError(
            f"Qwen2-VL pixels must have sides that are multiples of {patch * merge}, got {height}x{width}"
        )
    blocks = pixel_values.reshape(
        batch, channels, grid_h // merge, merge, patch, grid_w // merge, merge, patch
    )
    blocks = blocks.permute(0, 2, 5, 3, 6, 1, 4, 7)  # (B, h/m, w/m, m, m, 3, p, p)
    patches = blocks.unsqueeze(6).expand(*blocks.shape[:6], frames, patch, patch)  # (..., 3, T, p, p)
    patches = patches.reshape(batch * grid_h * grid_w, channels * frames * patch * patch)
    grid_thw = torch.tensor([[1, grid_h, grid_w]] * batch, device=pixel_values.device)
    normed = tower(patches, grid_thw=grid_thw, return_dict=True).pooler_output  # (B*h*w/m^2, m^2*C)
    normed = normed.reshape(batch, grid_h // merge, grid_w // merge, merge, merge, -1)
    return normed.permute(0, 5, 1, 3, 2, 4).reshape(batch, -1, grid_h, grid_w)  # (B, C, h, w)


FEATURE_READERS = {
    "hidden_states": _hidden_state_features,
    "last_hidden_state": _last_hidden_state_features,
    "qwen2_vl": _qwen2_vl_features,
}
"""How a vision tower's output becomes a (B, C, h, w) feature map: ``SubobjectLlavaConfig.feature_fn`` names one.
Which family reads which is stated in :mod:`subobject_vlm.families`."""


def build_vision_tower(config: SubobjectLlavaConfig) -> nn.Module:
    """The HF vision tower of ``config.vision_config``, ready for its ``feature_fn``.

    ``AutoModel`` builds every tower except Qwen2-VL's, which transformers only builds inside Qwen2-VL; a
    Qwen tower's merger keeps its per-patch norm and loses its MLP (the region embedding replaces it).
    """
    vision = config.vision_config
    if vision.model_type == "qwen2_vl_vision":
        from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

        tower = Qwen2VisionTransformerPretrainedModel._from_config(vision)
    else:
        tower = AutoModel.from_config(vision)
    if config.feature_fn == "qwen2_vl":
        tower.merger.mlp = nn.Identity()
    return tower


def _feature_map(config: SubobjectLlavaConfig, tower: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Run the vision tower: (B, 3, H, W) pixels -> (B, C, h, w) features."""
    if isinstance(tower, TimmVisionTower):
        return tower(pixel_values)
    return FEATURE_READERS[config.feature_fn](config, tower, pixel_values)


def _check_images_per_sample(placeholders: torch.Tensor, image_embeds: list[torch.Tensor]) -> None:
    """Every sample's placeholders must hold whole images, in order: a sample may not end inside an image.

    ``placeholders`` (B, L) bool; ``image_embeds`` one (n_i + 2, D) tensor per image, in batch order. Without this
    check a batch whose totals match but whose placeholders moved between samples would put one image's tokens
    (e.g. its end vector) into the next sample.
    """
    per_sample = placeholders.sum(-1)  # (B,)
    sample_ends = torch.cumsum(per_sample, 0)  # (B,) placeholders up to the end of each sample
    lengths = torch.tensor([len(x) for x in image_embeds], device=per_sample.device)  # (N,)
    image_ends = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])  # (N + 1,) image boundaries
    split = (~torch.isin(sample_ends, image_ends)).nonzero().flatten()  # samples that end inside an image
    if split.numel():
        b = int(split[0])
        raise ValueError(
            f"sample {b} holds {int(per_sample[b])} image placeholder tokens, which ends inside an image "
            f"(images in batch order need {lengths.tolist()} placeholders each); every sample must hold whole images"
        )


class SubobjectLlavaPreTrainedModel(LlavaPreTrainedModel):
    config: SubobjectLlavaConfig
    config_class = SubobjectLlavaConfig
    _can_compile_fullgraph = False  # the number of image tokens depends on the data


class SubobjectLlavaModel(SubobjectLlavaPreTrainedModel, LlavaModel):
    """Vision tower + :class:`MaskPooledEmbedding` (as ``multi_modal_projector``) + language model."""

    def __init__(self, config: SubobjectLlavaConfig) -> None:
        SubobjectLlavaPreTrainedModel.__init__(self, config)
        if config.timm_model_name is not None:
            self.vision_tower = TimmVisionTower(config)
            channels = self.vision_tower.num_channels
        else:
            self.vision_tower = build_vision_tower(config)
            channels = vision_channels(config)
        hidden_size = config.text_config.hidden_size
        self.multi_modal_projector = MaskPooledEmbedding(
            channels,
            hidden_size,
            shape_resolution=config.shape_resolution,
            projector_depth=config.projector_depth,
            projector_hidden_size=config.projector_hidden_size,
            projector_hidden_act=config.projector_hidden_act,
        )
        self.image_boundary_embeddings = nn.Embedding(NUM_IMAGE_BOUNDARY_TOKENS, hidden_size)  # start, end
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        label_maps: torch.Tensor | None = None,
        num_tokens: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        **kwargs,
    ) -> SubobjectImageOutput:
        """Encode images into region tokens.

        Args:
            pixel_values: (B, 3, H_img, W_img) float.
            label_maps: (B, H, W) integer labels 0..n_i-1 (any resolution; every pixel labelled).
            num_tokens: optional (B,) n_i (default: max label + 1 per image).
            boxes: optional (sum n_i, 4) boxes as returned by the image processor; only checked against the
                region count (the model computes boxes from ``label_maps``), so ``model(**inputs)`` works.

        Returns:
            :class:`SubobjectImageOutput`; ``pooler_output[i]`` is (n_i + 2, D): start, regions, end.
        """
        if label_maps is None:
            raise ValueError(
                "label_maps (B, H, W) are required with pixel_values: one token per labelled region"
            )
        if pixel_values.ndim != 4 or label_maps.shape[0] != pixel_values.shape[0]:
            raise ValueError(
                f"pixel_values {tuple(pixel_values.shape)} and label_maps {tuple(label_maps.shape)} must be "
                "(B, 3, H, W) and (B, H', W') with the same B"
            )
        label_maps = label_maps.to(pixel_values.device)
        if num_tokens is not None:
            num_tokens = torch.as_tensor(num_tokens, device=pixel_values.device)
        weight = next(self.vision_tower.parameters(), None)  # None: a tower without weights (raw pixels)
        tower_dtype = weight.dtype if weight is not None else pixel_values.dtype
        features = _feature_map(self.config, self.vision_tower, pixel_values.to(tower_dtype))  # (B, C, h, w)
        tokens, tokens_per_image = self.multi_modal_projector(
            features, label_maps, num_tokens
        )  # (n, D), (B,)
        if boxes is not None and boxes.shape[0] != tokens.shape[0]:
            raise ValueError(
                f"got {boxes.shape[0]} boxes for {tokens.shape[0]} regions (num_tokens {tokens_per_image.tolist()})"
            )
        too_many = tokens_per_image > self.config.max_tokens_per_image
        if bool(too_many.any()):
            raise ValueError(
                f"an image has {int(tokens_per_image.max())} regions, more than "
                f"max_tokens_per_image={self.config.max_tokens_per_image}"
            )
        # packed [start, regions..., end] per image: region j of image i sits after 2*i + 1 boundary slots
        batch = tokens_per_image.shape[0]
        lengths = tokens_per_image + NUM_IMAGE_BOUNDARY_TOKENS  # (B,)
        ends = torch.cumsum(lengths, 0)  # (B,)
        image_of_token = torch.repeat_interleave(torch.arange(batch, device=tokens.device), tokens_per_image)
        slots = torch.arange(tokens.shape[0], device=tokens.device) + 2 * image_of_token + 1  # (n,)
        boundary = self.image_boundary_embeddings.weight.to(tokens.dtype)  # (2, D)
        packed = tokens.new_empty(int(ends[-1]), tokens.shape[1])  # (sum n_i + 2B, D)
        packed = packed.index_copy(0, slots, tokens)
        packed = packed.index_copy(0, ends - lengths, boundary[0].expand(batch, -1))
        packed = packed.index_copy(0, ends - 1, boundary[1].expand(batch, -1))
        return SubobjectImageOutput(
            last_hidden_state=features,
            pooler_output=list(torch.split(packed, lengths.tolist())),
            image_tokens=tokens,
            tokens_per_image=tokens_per_image,
        )

    def _embed_text(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """Word embeddings (B, L, D); placeholder ids (possibly outside the vocabulary) are looked up as id 0."""
        return self.get_input_embeddings()(input_ids.masked_fill(input_ids == self.config.image_token_id, 0))

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        label_maps: torch.Tensor | None = None,
        num_tokens: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        **kwargs,
    ) -> LlavaModelOutputWithPast:
        """Scatter every image's ``[start, regions..., end]`` into its placeholders, then run the language model.

        ``input_ids`` (B, L) hold ``num_image_placeholders(n_i)`` ``image_token_id`` placeholders per image, in
        image order; ``pixel_values``/``label_maps``/``num_tokens`` describe all images of the batch in that
        order (text-only samples simply have no placeholders).
        """
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        image_outputs = (mm_encoder_outputs or {}).get("image")
        if pixel_values is not None and image_outputs is not None:
            raise ValueError("You cannot specify both pixel_values and mm_encoder_outputs at the same time")
        if inputs_embeds is None:
            inputs_embeds = self._embed_text(input_ids)
        if image_outputs is None and pixel_values is not None:
            image_outputs = self.get_image_features(
                pixel_values, label_maps, num_tokens, boxes, return_dict=True
            )

        if image_outputs is not None:
            if input_ids is None:
                raise ValueError(
                    "Images need input_ids with image placeholder tokens, not only inputs_embeds"
                )
            image_embeds = torch.cat(list(image_outputs.pooler_output), dim=0)  # (sum n_i + 2B, D)
            image_embeds = image_embeds.to(inputs_embeds.device, inputs_embeds.dtype)
            placeholders = input_ids == self.config.image_token_id  # (B, L)
            if int(placeholders.sum()) != image_embeds.shape[0]:
                lengths = [len(x) for x in image_outputs.pooler_output]
                raise ValueError(
                    f"input_ids hold {int(placeholders.sum())} image placeholder tokens "
                    f"(per sample: {placeholders.sum(-1).tolist()}) but the images need {image_embeds.shape[0]} "
                    f"(per image: {lengths} = num_tokens + {NUM_IMAGE_BOUNDARY_TOKENS}); expand each <image> into "
                    "num_image_placeholders(num_tokens) placeholders"
                )
            _check_images_per_sample(placeholders, image_outputs.pooler_output)
            inputs_embeds = inputs_embeds.masked_scatter(placeholders[..., None], image_embeds)
        elif input_ids is not None and (cache is None or cache.get_seq_length() == 0):
            if bool((input_ids == self.config.image_token_id).any()):
                raise ValueError(
                    "input_ids contain image placeholder tokens but no pixel_values/label_maps were given"
                )

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        return LlavaModelOutputWithPast(**outputs, image_outputs=image_outputs)


class SubobjectLlavaForConditionalGeneration(SubobjectLlavaPreTrainedModel, LlavaForConditionalGeneration):
    """SubobjectLlava with a language-modelling head; ``generate`` works as for LLaVA.

    Example:

    ```python
    >>> out = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels,
    ...                      label_maps=labels, num_tokens=num_tokens, max_new_tokens=20)
    ```
    """

    def __init__(self, config: SubobjectLlavaConfig) -> None:
        SubobjectLlavaPreTrainedModel.__init__(self, config)
        self.model = SubobjectLlavaModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        label_maps: torch.Tensor | None = None,
        num_tokens: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        **kwargs,
    ) -> SubobjectImageOutput:
        """See :meth:`SubobjectLlavaModel.get_image_features`; ``.image_tokens`` is (sum n_i, D)."""
        return self.model.get_image_features(pixel_values, label_maps, num_tokens, boxes, **kwargs)

    def num_image_placeholders(self, num_tokens: int | torch.Tensor) -> int | torch.Tensor:
        """Placeholder tokens needed for an image with ``num_tokens`` regions (``num_tokens + 2``)."""
        return self.config.num_image_placeholders(num_tokens)

    def mask_labels(
        self,
        labels: torch.LongTensor,
        input_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None,
    ) -> torch.LongTensor:
        """Labels (B, L) with image placeholders and padding (attention_mask == 0) set to -100."""
        if input_ids is not None:
            labels = labels.masked_fill(input_ids == self.config.image_token_id, -100)
        if attention_mask is not None and attention_mask.ndim == 2:
            labels = labels.masked_fill(attention_mask.to(labels.device) == 0, -100)
        return labels

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        label_maps: torch.Tensor | None = None,
        num_tokens: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        **kwargs,
    ) -> LlavaCausalLMOutputWithPast:
        """Causal LM forward. ``labels`` (B, L): image placeholders and padding never count in the loss."""
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            label_maps=label_maps,
            num_tokens=num_tokens,
            boxes=boxes,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            mm_encoder_outputs=mm_encoder_outputs,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs[0], logits_to_keep)
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            labels = self.mask_labels(labels, input_ids, attention_mask)
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        return LlavaCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=outputs.image_outputs,
        )


__all__ = [
    "FEATURE_READERS",
    "SubobjectImageOutput",
    "SubobjectLlavaForConditionalGeneration",
    "SubobjectLlavaModel",
    "SubobjectLlavaPreTrainedModel",
    "TimmVisionTower",
    "build_vision_tower",
    "vision_channels",
]
