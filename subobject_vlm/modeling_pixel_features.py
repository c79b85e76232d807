"""A vision tower without weights: the image's own pixels (RGB) and each pixel's position as features.

Mask pooling over it gives every region its mean colour and centroid; with the box and shape that
:class:`~subobject_vlm.embedding.MaskPooledEmbedding` adds, this is the "raw pixel" visual embedding of
subobjects-VLM, and what a token-efficiency experiment without a pretrained encoder can use.

>>> config = SubobjectLlavaConfig(vision_config=PixelFeaturesConfig(), text_config=LlamaConfig(), feature_layer=-1)
"""

from __future__ import annotations

import torch
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput


class PixelFeaturesConfig(PreTrainedConfig):
    """``position=True`` adds two channels, y and x in [-1, 1]; ``hidden_size`` is the channel count (3 or 5)."""

    model_type = "subobject_pixel_features"

    def __init__(self, position: bool = True, num_channels: int = 3, **kwargs) -> None:
        self.position = bool(position)
        self.num_channels = int(num_channels)
        super().__init__(**kwargs)

    @property
    def hidden_size(self) -> int:
        return self.num_channels + 2 * self.position


class PixelFeaturesModel(PreTrainedModel):
    """(B, C, H, W) pixels -> (B, C (+2), H, W) features: the pixels, then y and x coordinates."""

    config_class = PixelFeaturesConfig
    config: PixelFeaturesConfig
    main_input_name = "pixel_values"

    def __init__(self, config: PixelFeaturesConfig) -> None:
        super().__init__(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values must be (B, {self.config.num_channels}, H, W), got {tuple(pixel_values.shape)}"
            )
        features = pixel_values
        if self.config.position:
            batch, _, height, width = pixel_values.shape
            ys = torch.linspace(-1, 1, height, dtype=pixel_values.dtype, device=pixel_values.device)
            xs = torch.linspace(-1, 1, width, dtype=pixel_values.dtype, device=pixel_values.device)
            grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"))  # (2, H, W)
            features = torch.cat([pixel_values, grid.expand(batch, -1, -1, -1)], dim=1)  # (B, C + 2, H, W)
        return BaseModelOutput(last_hidden_state=features, hidden_states=(features,))


__all__ = ["PixelFeaturesConfig", "PixelFeaturesModel"]
