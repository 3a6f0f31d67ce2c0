"""Pieces shared by the segmentation models: size handling and small conv blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` at the bottom and right so that H and W are multiples of ``multiple``.

    Reflect padding continues the terrain's texture instead of inventing a black border; where a
    side is too small to reflect (pad >= size, only on tiny inputs) replicate padding is used.
    The image is never resized, so every output pixel stays aligned with its input pixel.
    """
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class SegmentationModel(nn.Module):
    """Base class: any (H, W) in, logits of the same (H, W) out.

    Subclasses set ``size_multiple`` (the network's total stride) and implement
    :meth:`forward_padded` for inputs whose sides are multiples of it. Attribute names of
    subclasses are the state-dict keys of saved checkpoints, so keep them stable.
    """

    size_multiple: int = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` float -> logits ``(B, num_classes, H, W)``."""
        height, width = x.shape[-2:]
        logits = self.forward_padded(pad_to_multiple(x, self.size_multiple))
        if logits.shape[-2:] == (height, width):
            return logits
        return logits[..., :height, :width].contiguous()

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1) -> nn.Sequential:
    """Conv (no bias: BN has one) + BatchNorm + ReLU, 'same' padding."""
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def upconv_bn_relu(channels: int) -> nn.Sequential:
    """Learned x2 upsampling: 3x3 transposed conv (stride 2, padding 1, output_padding 1) + BN + ReLU.

    Output size is exactly 2H x 2W. Kernel 3 as in the authors' published code.
    """
    return nn.Sequential(
        nn.ConvTranspose2d(channels, channels, kernel_size=3, stride=2, padding=1, output_padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


def bilinear_upsample_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weight ``(channels, channels, k, k)`` making a ConvTranspose2d a per-channel bilinear upsampler.

    The initialisation of FCN's learned upsampling (Long et al. 2015, section 3.3).
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float32) - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    for c in range(channels):
        weight[c, c] = taps[:, None] * taps[None, :]
    return weight
