"""SegNet (Badrinarayanan et al. 2017): VGG16-BN encoder, decoder upsampling by max-unpooling.

The classic design, as in the authors' baseline code: the encoder is VGG16-BN's 13 convolutions
in five stages, each followed by 2x2 max pooling whose indices are kept; the decoder mirrors it,
each stage max-unpooling with the indices of its encoder stage (no learned upsampling, no skip
features) followed by 3x3 conv + BN + ReLU layers; a 3x3 conv gives the logits. SegNet's
unpooling needs the encoder's pooling indices, which ResNet (strided convolutions) does not have,
so the encoder is always VGG16-BN and ``backbone`` is ignored; ``pretrained="imagenet"`` loads
torchvision's ``vgg16_bn`` ImageNet weights, and a local file must be a ``vgg16_bn`` state dict.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lsmap.models.common import SegmentationModel, conv_bn_relu
from lsmap.models.encoders import VGG16BNEncoder

# Decoder stages, deepest first: conv output channels after each unpooling (mirror of VGG16).
DECODER_STAGES = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64,))


class SegNet(SegmentationModel):
    """SegNet with pooling-index unpooling: logits ``(B, num_classes, H, W)``."""

    size_multiple = 32

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        backbone: str = "resnet50",  # ignored: SegNet's encoder is VGG16-BN (see module docstring)
        pretrained: str | os.PathLike = "none",
        rgb_channels: Sequence[int] = (0, 1, 2),
    ) -> None:
        super().__init__()
        self.encoder = VGG16BNEncoder(in_channels, pretrained, rgb_channels)
        stages = []
        channels = 512
        for widths in DECODER_STAGES:
            layers = []
            for width in widths:
                layers.append(conv_bn_relu(channels, width))
                channels = width
            stages.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList(stages)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=3, padding=1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        y, pools = self.encoder(x)
        for stage, (indices, size) in zip(self.decoder, reversed(pools), strict=True):
            y = stage(F.max_unpool2d(y, indices, kernel_size=2, stride=2, output_size=size[-2:]))
        return self.classifier(y)
