"""FCN-8s (Long et al. 2015) on a torchvision ResNet.

The ResNet runs at its native output stride 32. Class scores are predicted from layer4 (stride
32, through torchvision's FCN head: 3x3 conv to C/4 + BN + ReLU + dropout 0.1 + 1x1 conv), and by
1x1 convs from layer3 (stride 16) and layer2 (stride 8), which play the parts of VGG's pool4 and
pool3. Scores are fused coarse to fine: x2 learned upsampling (transposed conv initialised to
bilinear, as in FCN) + add, twice, then bilinear x8 to the input size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lsmap.models.common import SegmentationModel, bilinear_upsample_kernel, conv_bn_relu
from lsmap.models.encoders import ResNetEncoder


def _learned_x2_upsampling(num_classes: int) -> nn.ConvTranspose2d:
    """Transposed conv, kernel 4 stride 2 padding 1 (exactly 2H x 2W), starting as bilinear."""
    up = nn.ConvTranspose2d(num_classes, num_classes, kernel_size=4, stride=2, padding=1, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_upsample_kernel(num_classes, 4))
    return up


class FCN8s(SegmentationModel):
    """FCN-8s-style skips on ResNet strides 8/16/32: logits ``(B, num_classes, H, W)``."""

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
        channels = self.encoder.out_channels
        self.score32 = nn.Sequential(
            conv_bn_relu(channels[4], channels[4] // 4),
            nn.Dropout(0.1),
            nn.Conv2d(channels[4] // 4, num_classes, kernel_size=1),
        )
        self.score16 = nn.Conv2d(channels[3], num_classes, kernel_size=1)
        self.score8 = nn.Conv2d(channels[2], num_classes, kernel_size=1)
        self.up32to16 = _learned_x2_upsampling(num_classes)
        self.up16to8 = _learned_x2_upsampling(num_classes)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        _, _, c8, c16, c32 = self.encoder(x)
        scores = self.up32to16(self.score32(c32)) + self.score16(c16)
        scores = self.up16to8(scores) + self.score8(c8)
        return F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)
