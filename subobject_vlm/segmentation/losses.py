"""Losses of the boundary models, next to them: one definition for training and for ``forward(labels=...)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -1.0
"""Boundary-target value of pixels left out of the loss (padding)."""
CLASS_BALANCE = ("none", "pos_weight", "hed", "rcf")


def boundary_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_balance: str = "none",
    max_pos_weight: float = 10.0,
    positive_threshold: float = 0.3,
) -> torch.Tensor:
    """Masked BCE-with-logits. ``logits``: ``(B, 1, h, w)`` (SegFormer outputs at 1/4 resolution are upsampled
    bilinearly here); ``labels``: ``(B, H, W)`` float in [0, 1], ``IGNORE_INDEX`` where ignored. Returns a scalar
    (the loss summed over the valid pixels, divided by their number)."""
    logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    valid = (labels != IGNORE_INDEX).float()
    target = labels.clamp(min=0) * valid
    count = valid.sum().clamp(min=1)
    positives = target.sum()
    negatives = (valid - target).sum()
    if class_balance == "pos_weight":
        pos_weight = (negatives / positives.clamp(min=1)).clamp(1, max_pos_weight).detach()
        losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none", pos_weight=pos_weight)
    elif class_balance == "hed":
        beta = (negatives / count).detach()
        weights = target * beta + (1 - target) * (1 - beta)
        losses = weights * F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    elif class_balance == "rcf":
        positive = (target >= positive_threshold).float() * valid
        negative = (target == 0).float() * valid
        num_pos, num_neg = positive.sum(), negative.sum()
        total = (num_pos + num_neg).clamp(min=1)
        weights = positive * (num_neg / total) + negative * (1.1 * num_pos / total)
        losses = weights * F.binary_cross_entropy_with_logits(logits, positive, reduction="none")
    else:
        losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (losses * valid).sum() / count


def supervised_loss(
    logits: torch.Tensor,
    side_logits: tuple[torch.Tensor, ...] | None,
    labels: torch.Tensor,
    class_balance: str = "none",
    max_pos_weight: float = 10.0,
    positive_threshold: float = 0.3,
    side_weight: float = 0.5,
) -> torch.Tensor:
    """What boundary training optimises: ``boundary_loss`` of the logits plus ``side_weight`` times that of each
    side output (deep supervision; ``side_logits`` ``None`` or empty for models without them). Scalar."""
    if class_balance not in CLASS_BALANCE:
        raise ValueError(f"class_balance must be one of {CLASS_BALANCE}, got {class_balance!r}")
    options = (class_balance, max_pos_weight, positive_threshold)
    loss = boundary_loss(logits, labels, *options)
    for side in side_logits or ():
        loss = loss + side_weight * boundary_loss(side, labels, *options)
    return loss


__all__ = ["CLASS_BALANCE", "IGNORE_INDEX", "boundary_loss", "supervised_loss"]
