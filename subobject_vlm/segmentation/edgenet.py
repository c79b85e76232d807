"""EdgeNet: a small fully-convolutional boundary network that trains from scratch on a CPU.

A HED-style FCN (stages at 1, 1/2, 1/4 and 1/8 resolution, one side output per stage, fused by a 1x1
convolution) fed with the RGB image and, optionally, fixed handcrafted channels computed inside the model:
multi-scale CIELAB gradients split into lightness and chroma, structure-tensor orientation, differences of
Gaussians and local contrast. The classical gradient map (``gradient_boundary_probs``) is one of these channels
and also enters the fusion directly, so the network learns a correction of a sound classical map. Trained from
scratch on BSDS500 train on one CPU core, it reaches ODS 0.73 on val in under an hour (0.72 from RGB alone),
where SegFormer-b0 stays near 0.61 (see ``weights/default/README.md``).

It is an ordinary transformers model: ``EdgeNetConfig`` / ``EdgeNetForBoundaryDetection`` are registered with
``AutoConfig`` and ``AutoModelForSemanticSegmentation`` (``model_type="subobject_edgenet"``), take
``pixel_values`` ``(B, 3, H, W)`` normalised with ``config.image_mean``/``image_std`` and return
``logits`` ``(B, 1, H, W)`` at the input size, so ``BoundaryPredictor`` runs it exactly like a one-label SegFormer and
``subobject-vlm train-boundary`` trains it (``model: {architecture: edgenet}``).

>>> model = EdgeNetForBoundaryDetection(EdgeNetConfig())
>>> model(pixel_values=torch.randn(2, 3, 64, 96)).logits.shape
torch.Size([2, 1, 64, 96])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from .losses import supervised_loss
from .predictor import IMAGENET_MEAN, IMAGENET_STD

_SRGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_D65_WHITE = (0.950456, 1.0, 1.088754)


class EdgeNetConfig(PretrainedConfig):
    """Configuration of ``EdgeNetForBoundaryDetection``.

    Args:
        widths: channels of the four stages (full, 1/2, 1/4, 1/8 resolution).
        handcrafted_features: add the 16 fixed colour-gradient channels to the RGB input (19 in all), and
            the classical gradient map to the fusion.
        feature_sigmas: Gaussian scales (pixels) of the gradient channels.
        image_mean, image_std: the normalisation of ``pixel_values`` (undone to compute colour features).
        resolution, keep_aspect: how ``BoundaryPredictor`` sizes images for this model by default (the longer side
            is resized to ``resolution``); the scale it was trained at.
    """

    model_type = "subobject_edgenet"

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 48, 64),
        handcrafted_features: bool = True,
        feature_sigmas: Sequence[float] = (1.0, 2.0, 4.0),
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        resolution: int = 512,
        keep_aspect: bool = True,
        loss: dict | None = None,
        **kwargs,
    ):
        kwargs.setdefault("id2label", {0: "boundary"})
        kwargs.setdefault("label2id", {"boundary": 0})
        super().__init__(**kwargs)
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"widths must be 4 positive channel counts, got {widths}")
        if not feature_sigmas or min(feature_sigmas) <= 0:
            raise ValueError(f"feature_sigmas must be positive, got {feature_sigmas}")
        if len(image_mean) != 3 or len(image_std) != 3 or min(image_std) <= 0:
            raise ValueError(
                f"image_mean / image_std must be 3 values (std > 0), got {image_mean}, {image_std}"
            )
        self.widths = [int(w) for w in widths]
        self.handcrafted_features = bool(handcrafted_features)
        self.feature_sigmas = [float(s) for s in feature_sigmas]
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.resolution = int(resolution)
        self.keep_aspect = bool(keep_aspect)
        self.loss = dict(loss or {})  # supervised_loss options (class_balance, side_weight, ...) of training

    @property
    def num_input_channels(self) -> int:
        return 3 + (4 * len(self.feature_sigmas) + 4 if self.handcrafted_features else 0)


# ---------------------------------------------------------------------------------------- fixed features


# False: the pure-PyTorch reference path (torch convolutions for the fixed filters, ``kthvalue`` for percentiles,
# NCHW layout); True: the same computation, faster (see ``_separable_filter``, ``_per_image_quantile``, ``forward``)
USE_FAST_PATH = True


def _pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad the last two dims by ``pad`` (replicate where the image is too small to reflect)."""
    mode = "reflect" if pad < min(x.shape[-2:]) else "replicate"
    return F.pad(x, (pad, pad, pad, pad), mode=mode)


def _separable_filter(x: torch.Tensor, row_taps: torch.Tensor, column_taps: torch.Tensor) -> torch.Tensor:
    """Correlate every plane of ``(B, C, H, W)`` with ``column_taps[:, None] * row_taps[None, :]`` (two 1-D
    kernels of the same odd length), reflected borders as ``_pad``: ``(B, C, H, W)`` out.

    On CPU tensors that need no gradient and are large enough to reflect, OpenCV's ``sepFilter2D`` (the same
    taps, ``BORDER_REFLECT_101`` = torch's ``reflect``) replaces the two depthwise convolutions: 5-15x faster
    here, equal to float32 rounding (features within 1e-4; ``tests/test_throughput.py``).
    """
    radius = row_taps.numel() // 2
    height, width = x.shape[-2:]
    if (
        USE_FAST_PATH
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not x.requires_grad
        and radius < min(height, width)
    ):
        planes = x.detach().reshape(-1, height, width).contiguous().numpy()  # (B*C, H, W) float32
        row, column = row_taps.float().numpy(), column_taps.float().numpy()
        out = np.empty_like(planes)
        for i, plane in enumerate(planes):  # one C call per plane: SIMD, no padded copies
            cv2.sepFilter2D(plane, -1, row, column, dst=out[i], borderType=cv2.BORDER_REFLECT_101)
        return torch.from_numpy(out).view(x.shape)
    channels = x.shape[1]
    x = _pad(x, radius)
    x = F.conv2d(x, row_taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(x, column_taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)``, radius ``ceil(4 sigma)``, reflected borders (as OpenCV)."""
    radius = max(1, math.ceil(4 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    return _separable_filter(x, kernel, kernel)


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """3x3 Sobel derivatives ``(d/dx, d/dy)`` of ``(B, C, H, W)``, reflected borders."""
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    diff = torch.tensor([-1.0, 0.0, 1.0], dtype=x.dtype, device=x.device)
    return _separable_filter(x, diff, smooth), _separable_filter(x, smooth, diff)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB ``(B, 3, H, W)`` in [0, 1] -> CIELAB scaled as OpenCV's 8-bit Lab (L * 255/100, a + 128, b + 128)."""
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb.clamp(min=0) + 0.055) / 1.055) ** 2.4)
    matrix = torch.tensor(_SRGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device)
    white = torch.tensor(_D65_WHITE, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    xyz = torch.einsum("ij,bjhw->bihw", matrix, linear) / white  # (B, 3, H, W)
    f = torch.where(xyz > 0.008856, xyz.clamp(min=1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    lightness = 116 * f[:, 1] - 16
    a = 500 * (f[:, 0] - f[:, 1])
    b = 200 * (f[:, 1] - f[:, 2])
    return torch.stack([lightness * 2.55, a + 128, b + 128], dim=1)


def _per_image_quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q`` quantile of each image of ``(B, 1, H, W)`` -> ``(B, 1, 1, 1)`` (no size limit, unlike quantile)."""
    flat = x.flatten(1)  # (B, H*W)
    k = min(flat.shape[1], max(1, math.ceil(q * flat.shape[1])))
    if USE_FAST_PATH and flat.device.type == "cpu" and flat.dtype == torch.float32 and not flat.requires_grad:
        values = np.partition(flat.detach().numpy(), k - 1, axis=1)[:, k - 1]  # (B,) same value, 5-25x faster
        return torch.from_numpy(np.ascontiguousarray(values)).to(x.dtype).view(-1, 1, 1, 1)
    return flat.kthvalue(k, dim=1).values.view(-1, 1, 1, 1)


def handcrafted_features(rgb: torch.Tensor, sigmas: Sequence[float] = (1.0, 2.0, 4.0)) -> torch.Tensor:
    """Fixed boundary cues of an RGB batch: ``(B, 3, H, W)`` float in [0, 1] -> ``(B, 4 len(sigmas) + 4, H, W)``.

    Channel 0 is the classical gradient map (``gradient_boundary_probs``: the mean scale-normalised CIELAB
    gradient over ``sigmas`` divided by its per-image 99th percentile, clipped to [0, 1]) mapped to [-1, 1].
    Then per sigma: lightness and chroma gradient magnitudes (normalised by the same percentile of their
    combined magnitude) and the structure tensor's orientation (cos 2θ, sin 2θ, weighted by coherence); then
    differences of Gaussians on lightness at sigma 1 and 3 and the local lightness deviation at sigma 3.
    """
    lab = rgb_to_lab(rgb)  # (B, 3, H, W)
    per_scale, magnitudes = [], []
    for sigma in sigmas:
        gx, gy = sobel(gaussian_blur(lab, sigma))  # (B, 3, H, W) each
        mag_lightness = torch.sqrt(gx[:, :1] ** 2 + gy[:, :1] ** 2) * sigma  # (B, 1, H, W)
        mag_chroma = torch.sqrt((gx[:, 1:] ** 2 + gy[:, 1:] ** 2).sum(1, keepdim=True)) * sigma
        magnitude = torch.sqrt(mag_lightness**2 + mag_chroma**2)
        magnitudes.append(magnitude)
        reference = _per_image_quantile(magnitude, 0.99).clamp(min=1e-3)
        tensor = gaussian_blur(
            torch.cat(
                [(gx**2).sum(1, keepdim=True), (gy**2).sum(1, keepdim=True), (gx * gy).sum(1, keepdim=True)],
                1,
            ),
            sigma,
        )  # (B, 3, H, W): Jxx, Jyy, Jxy
        trace = tensor[:, :1] + tensor[:, 1:2] + 1e-3
        per_scale += [
            mag_lightness / reference,
            mag_chroma / reference,
            (tensor[:, :1] - tensor[:, 1:2]) / trace,
            2 * tensor[:, 2:3] / trace,
        ]
    mean_magnitude = torch.stack(magnitudes).mean(0)  # (B, 1, H, W)
    reference = _per_image_quantile(mean_magnitude, 0.99)  # below 1e-3: a flat image (up to rounding)
    classical = torch.where(reference > 1e-3, mean_magnitude / reference.clamp(min=1e-3), 0.0).clamp(0, 1)
    lightness = lab[:, :1] / 255.0  # (B, 1, H, W) in [0, 1]
    dogs = [(gaussian_blur(lightness, s) - gaussian_blur(lightness, 2 * s)) * 10 for s in (1.0, 3.0)]
    local_mean = gaussian_blur(torch.cat([lightness, lightness**2], 1), 3.0)
    deviation = torch.sqrt((local_mean[:, 1:] - local_mean[:, :1] ** 2).clamp(min=0)) * 5
    return torch.cat([classical * 2 - 1, *per_scale, *dogs, deviation], dim=1)


# ------------------------------------------------------------------------------------------------- model


def _conv_bn_relu(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


@dataclass
class EdgeNetOutput(ModelOutput):
    """``logits``: ``(B, 1, H, W)`` fused boundary logits; ``side_logits``: one ``(B, 1, H, W)`` per stage
    (deep supervision during training); ``loss``: BCE against ``labels`` when given."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    side_logits: tuple[torch.Tensor, ...] | None = None


class EdgeNetPreTrainedModel(PreTrainedModel):
    config_class = EdgeNetConfig
    base_model_prefix = "edgenet"
    main_input_name = "pixel_values"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            module.reset_parameters()  # PyTorch's defaults (kaiming-uniform convolutions)


class EdgeNetForBoundaryDetection(EdgeNetPreTrainedModel):
    """``pixel_values`` ``(B, 3, H, W)`` (any H, W) -> ``EdgeNetOutput`` with ``logits`` ``(B, 1, H, W)``."""

    def __init__(self, config: EdgeNetConfig):
        super().__init__(config)
        w1, w2, w3, w4 = config.widths
        self.stage1 = nn.Sequential(_conv_bn_relu(config.num_input_channels, w1), _conv_bn_relu(w1, w1))
        self.stage2 = nn.Sequential(_conv_bn_relu(w1, w2), _conv_bn_relu(w2, w2))
        self.stage3 = nn.Sequential(_conv_bn_relu(w2, w3), _conv_bn_relu(w3, w3, 2))
        self.stage4 = nn.Sequential(_conv_bn_relu(w3, w4), _conv_bn_relu(w4, w4, 2), _conv_bn_relu(w4, w4, 4))
        self.side = nn.ModuleList([nn.Conv2d(width, 1, 1) for width in config.widths])
        self.fuse = nn.Conv2d(len(config.widths) + int(config.handcrafted_features), 1, 1)
        self.post_init()

    def input_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised -> ``(B, C_in, H, W)`` float32 network input (RGB + fixed channels)."""
        pixel_values = pixel_values.float()
        if not self.config.handcrafted_features:
            return pixel_values
        # plain tensors, not buffers: from_pretrained leaves non-persistent buffers uninitialised
        mean = torch.tensor(self.config.image_mean, device=pixel_values.device).view(1, 3, 1, 1)
        std = torch.tensor(self.config.image_std, device=pixel_values.device).view(1, 3, 1, 1)
        with torch.no_grad(), torch.autocast(pixel_values.device.type, enabled=False):
            rgb = (pixel_values * std + mean).clamp(0, 1)
            return torch.cat([pixel_values, handcrafted_features(rgb, self.config.feature_sigmas)], dim=1)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> EdgeNetOutput | tuple:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must be (B, 3, H, W), got {tuple(pixel_values.shape)}")
        height, width = pixel_values.shape[-2:]
        features = self.input_features(pixel_values)  # (B, C_in, H, W) float32
        pad_h, pad_w = (-height) % 8, (-width) % 8  # three 2x poolings
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            features = F.pad(features, (0, pad_w, 0, pad_h), mode=mode)
        # channels-last: oneDNN's native layout on CPU (no reorder per convolution; 1.8x faster trunk here),
        # tensor cores' on CUDA
        layout = torch.channels_last if USE_FAST_PATH else torch.contiguous_format
        features = features.to(self.fuse.weight.dtype).contiguous(memory_format=layout)
        f1 = self.stage1(features)  # (B, w1, H', W')
        f2 = self.stage2(F.max_pool2d(f1, 2))  # (B, w2, H'/2, W'/2)
        f3 = self.stage3(F.max_pool2d(f2, 2))  # (B, w3, H'/4, W'/4)
        f4 = self.stage4(F.max_pool2d(f3, 2))  # (B, w4, H'/8, W'/8)
        size = features.shape[-2:]
        sides = [
            F.interpolate(head(f), size=size, mode="bilinear", align_corners=False)
            if f.shape[-2:] != size
            else head(f)
            for head, f in zip(self.side, (f1, f2, f3, f4))
        ]  # 4 x (B, 1, H', W')
        fusion_inputs = sides + ([features[:, 3:4]] if self.config.handcrafted_features else [])
        logits = self.fuse(torch.cat(fusion_inputs, dim=1))[..., :height, :width]  # (B, 1, H, W)
        sides = tuple(side[..., :height, :width] for side in sides)
        loss = None
        if labels is not None:  # the loss training optimises, with the options it was trained with
            loss = supervised_loss(logits, sides, labels, **(self.config.loss or {}))
        if return_dict is False:
            return tuple(v for v in (loss, logits, sides) if v is not None)
        return EdgeNetOutput(loss=loss, logits=logits, side_logits=sides)


__all__ = [
    "EdgeNetConfig",
    "EdgeNetForBoundaryDetection",
    "EdgeNetOutput",
    "gaussian_blur",
    "handcrafted_features",
    "rgb_to_lab",
    "sobel",
]
