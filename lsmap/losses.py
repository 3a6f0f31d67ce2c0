"""Losses for binary landslide segmentation from logits.

Every loss takes ``logits`` (B, 1, H, W) float and ``label`` (B, H, W) uint8/int with values
{0, 1, 255}; 255 (``IGNORE``: padding) pixels are left out. Region losses (IoU, Dice) are computed
over the whole batch rather than per chip, so a batch that holds landslide-free chips still has a
well-defined gradient (a per-chip soft IoU of an empty chip is 0/0).

The paper trains with the IoU loss (soft Jaccard, Rahman & Wang 2016): 1 - sum(p t) / sum(p + t - p t).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lsmap.errors import LsmapError
from lsmap.metrics import IGNORE

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SMOOTH = 1.0  # keeps the ratio finite on an all-background batch and predicted-empty output


def _probabilities_targets_valid(logits: torch.Tensor, label: torch.Tensor):
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"logits must be (B, 1, H, W), got {tuple(logits.shape)}")
    if label.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"label {tuple(label.shape)} does not match logits {tuple(logits.shape)}")
    logits = logits[:, 0].float()  # region sums in fp32 even under autocast
    valid = (label != IGNORE).float()
    target = (label == 1).float()
    return logits, torch.sigmoid(logits) * valid, target, valid


def soft_iou_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """1 - soft Jaccard of the landslide class over the batch (0 = perfect)."""
    _, prob, target, _ = _probabilities_targets_valid(logits, label)
    intersection = (prob * target).sum()
    union = prob.sum() + target.sum() - intersection
    return 1.0 - (intersection + SMOOTH) / (union + SMOOTH)


def dice_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice (F1) of the landslide class over the batch."""
    _, prob, target, _ = _probabilities_targets_valid(logits, label)
    intersection = (prob * target).sum()
    return 1.0 - (2.0 * intersection + SMOOTH) / (prob.sum() + target.sum() + SMOOTH)


def bce_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over valid pixels."""
    logits, _, target, valid = _probabilities_targets_valid(logits, label)
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (per_pixel * valid).sum() / valid.sum().clamp_min(1.0)


def _sum_of(*losses: LossFn) -> LossFn:
    def combined(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return sum(loss(logits, label) for loss in losses)

    return combined


LOSSES: dict[str, LossFn] = {
    "iou": soft_iou_loss,
    "dice": dice_loss,
    "bce": bce_loss,
    "bce_dice": _sum_of(bce_loss, dice_loss),
    "bce_iou": _sum_of(bce_loss, soft_iou_loss),
}


def build_loss(name: str) -> LossFn:
    """The loss called ``name`` (one of ``LOSSES``)."""
    if name not in LOSSES:
        raise LsmapError(f"unknown loss {name!r}: use one of {', '.join(LOSSES)}")
    return LOSSES[name]
