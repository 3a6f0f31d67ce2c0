"""U-Net with a torchvision ResNet encoder.

Why not the classic U-Net of Ronneberger et al. 2015 (trained from scratch, as in the authors'
baseline code)? With a ResNet encoder the U-Net (1) starts from the same ImageNet weights as the
other models, so a comparison measures the decoders rather than pretraining, which matters with a
few thousand training chips; (2) accepts the same ``backbone`` choices, so resnet18 gives a
fast CPU variant; (3) costs far less per 512x512 tile than the classic U-Net's 64-1024-channel
full-resolution stages. The U-Net idea is kept whole: skips at every scale (stem stride 2,
layer1..3 at strides 4/8/16) concatenated into a symmetric decoder.

Decoder: five blocks (256, 128, 64, 32, 16 channels), each bilinear x2 upsampling, concatenation
with the encoder feature of that stride (none at full resolution), and two 3x3 conv + BN + ReLU;
then a 3x3 conv to the logits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lsmap.models.common import SegmentationModel, conv_bn_relu
from lsmap.models.encoders import ResNetEncoder

DECODER_CHANNELS = (256, 128, 64, 32, 16)


class DecoderBlock(nn.Module):
    """x2 bilinear upsampling, concat the skip (if any), two 3x3 conv + BN + ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            conv_bn_relu(in_channels + skip_channels, out_channels), conv_bn_relu(out_channels, out_channels)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class UNet(SegmentationModel):
    """ResNet-encoder U-Net (see module docstring): logits ``(B, num_classes, H, W)``."""

    size_multiple = 32

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        backbone: str = "resnet50",
        pretrained: str | os.PathLike = "none",
        rgb_channels: Sequence[int] = (0, 1, 2),
    ) -> None:
        super().__init__()
        self.encoder = ResNetEncoder(backbone, in_channels, 32, pretrained, rgb_channels)
        skips = list(reversed(self.encoder.out_channels[:4])) + [0]  # layer3, layer2, layer1, stem, none
        inputs = [self.encoder.out_channels[4], *DECODER_CHANNELS[:-1]]
        self.decoder = nn.ModuleList(
            DecoderBlock(i, s, o) for i, s, o in zip(inputs, skips, DECODER_CHANNELS, strict=True)
        )
        self.head = nn.Conv2d(DECODER_CHANNELS[-1], num_classes, kernel_size=3, padding=1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        stem, c1, c2, c3, c4 = self.encoder(x)
        y = c4
        for block, skip in zip(self.decoder, (c3, c2, c1, stem, None), strict=True):
            y = block(y, skip)
        return self.head(y)
