"""Loss functions: values at known points, ignored pixels, and empty batches."""

from __future__ import annotations

import pytest
import torch

from lsmap.errors import LsmapError
from lsmap.losses import LOSSES, SMOOTH, build_loss, soft_iou_loss
from lsmap.metrics import IGNORE


def _label():
    label = torch.zeros(2, 8, 8, dtype=torch.uint8)
    label[0, 2:6, 2:6] = 1
    label[1, :, :3] = 1
    return label


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_confident_correct_logits_give_near_zero_loss_and_wrong_ones_a_large_loss(name):
    label = _label()
    right = (label.float() * 2 - 1)[:, None] * 20
    loss = build_loss(name)
    assert float(loss(right, label)) < 0.01
    assert float(loss(-right, label)) > 0.9


def test_soft_iou_matches_hand_computation():
    label = _label()
    logits = torch.zeros(2, 1, 8, 8)  # p = 0.5 everywhere
    t = float(label.sum())
    n = label.numel()
    intersection = 0.5 * t
    union = 0.5 * n + t - intersection
    expected = 1 - (intersection + SMOOTH) / (union + SMOOTH)
    assert float(soft_iou_loss(logits, label)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_ignored_pixels_do_not_change_the_loss(name):
    label = _label()
    label[:, 6:, :] = IGNORE
    logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    changed = logits.clone()
    changed[:, :, 6:, :] = 50.0
    loss = build_loss(name)
    assert float(loss(logits, label)) == pytest.approx(float(loss(changed, label)), abs=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_all_background_batch_has_finite_gradient_towards_background(name):
    label = torch.zeros(2, 8, 8, dtype=torch.uint8)
    logits = torch.zeros(2, 1, 8, 8, requires_grad=True)
    build_loss(name)(logits, label).backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad > 0).all()  # descending lowers the landslide logits


def test_unknown_loss_is_a_one_line_error():
    with pytest.raises(LsmapError, match="unknown loss 'focal'"):
        build_loss("focal")
