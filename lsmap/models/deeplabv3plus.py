"""DeepLabV3+ (the baseline) and the improved DeepLabV3+ of Zhao et al. 2024.

Both use a torchvision ResNet at output stride 8 (layer3 and layer4 dilated, as in the authors'
code: timm ``tv_resnet50`` with ``output_stride=8``) and the same ASPP.

ASPP (Chen et al. 2017, DeepLabV3 section 3.3): a 1x1 branch, three 3x3 branches at dilation
6/12/18 and an image-pooling branch, 256 channels each, concatenated to 1280 channels and
projected by 1x1 conv + BN + ReLU to 256. Each branch has BN + ReLU as in the DeepLabV3 paper (the
authors' code has bare convolutions there); the image-pooling branch has a ReLU but no BN, because
BN over a 1x1 map fails in training on a batch of one.

Baseline decoder (``deeplabv3plus``): the standard DeepLabV3+ decoder of Chen et al. 2018
(section 3.1): low-level layer1 features projected to 48 channels (1x1 + BN + ReLU), ASPP output
upsampled bilinearly to stride 4, concatenated, two 3x3 conv + BN + ReLU (256), a 1x1 classifier,
bilinear upsampling x4 to the input size. (The authors' baseline differs in detail: 256-channel
low-level projection and two x2 bilinear steps.)

Improved decoder (``improved_deeplabv3plus``), following the authors' published code: the
projected ASPP output is upsampled x2 (stride 8 -> 4) by a learned 3x3 transposed conv + BN + ReLU
(the authors' code used bilinear upsampling at this one place; the paper replaces all bilinear
upsampling with transposed convolution, so we do too); layer1 is projected 1x1 to 256 + BN + ReLU;
the two 256-channel maps are fused by attention (see :class:`GatedAttentionFusion`); then two
stages of 3x3 conv + BN + ReLU + x2 transposed conv + BN + ReLU (256 -> 128 -> 64 channels,
stride 4 -> 2 -> 1) and a head of 3x3 conv + BN + ReLU (32) and a 3x3 conv to the logits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lsmap.errors import LsmapError
from lsmap.models.common import SegmentationModel, conv_bn_relu, upconv_bn_relu
from lsmap.models.encoders import ResNetEncoder

ASPP_RATES = (6, 12, 18)
FUSIONS = ("gated", "se")
GATES = ("relu", "sigmoid")


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: ``(B, C, h, w)`` -> ``(B, 256, h, w)`` (five 256-ch branches)."""

    def __init__(self, in_channels: int, channels: int = 256, rates: Sequence[int] = ASPP_RATES) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, channels, kernel_size=1)]
            + [conv_bn_relu(in_channels, channels, kernel_size=3, dilation=rate) for rate in rates]
        )
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, channels, kernel_size=1), nn.ReLU(inplace=True)
        )
        self.project = conv_bn_relu(channels * (len(rates) + 2), channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [branch(x) for branch in self.branches]
        branches.append(self.image_pool(x).expand(-1, -1, *x.shape[-2:]))  # broadcast == upsampling a 1x1 map
        return self.project(torch.cat(branches, dim=1))


class GatedAttentionFusion(nn.Module):
    """``high * att(high) + low * att(low)`` with ONE gating network shared by both inputs.

    The gating network is the authors': 1x1 conv + BN + ReLU, twice, applied per pixel, giving a
    per-pixel, per-channel attention map of the input's shape ``(B, C, h, w)``.
    Squashing (``gate``): ``"relu"`` (default, exactly the authors' code) ends with the second ReLU,
    so the map is non-negative but unbounded, a learned gain that can also switch features off;
    ``"sigmoid"`` replaces that last ReLU by a sigmoid, bounding it to (0, 1) like classic attention.
    """

    def __init__(self, channels: int = 256, gate: str = "relu") -> None:
        super().__init__()
        if gate not in GATES:
            raise LsmapError(f"unknown gate {gate!r}: choose one of {', '.join(GATES)}")
        self.attention = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU() if gate == "relu" else nn.Sigmoid(),
        )

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return high * self.attention(high) + low * self.attention(low)


class SEFusion(nn.Module):
    """Ablation: ``high * s(high) + low * s(low)`` with a shared squeeze-and-excitation gate.

    ``s`` (Hu et al. 2018): global average pooling, 1x1 conv to C/16, ReLU, 1x1 conv to C, sigmoid:
    one weight per channel and image, the same at every pixel.
    """

    def __init__(self, channels: int = 256, reduction: int = 16) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, channels // reduction, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return high * self.attention(high) + low * self.attention(low)


class DeepLabV3Plus(SegmentationModel):
    """Baseline DeepLabV3+ (see module docstring): logits ``(B, num_classes, H, W)``."""

    size_multiple = 8

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        backbone: str = "resnet50",
        pretrained: str | os.PathLike = "none",
        rgb_channels: Sequence[int] = (0, 1, 2),
    ) -> None:
        super().__init__()
        self.encoder = ResNetEncoder(backbone, in_channels, 8, pretrained, rgb_channels)
        self.aspp = ASPP(self.encoder.out_channels[4])
        self.low_project = conv_bn_relu(self.encoder.out_channels[1], 48, kernel_size=1)
        self.decoder = nn.Sequential(conv_bn_relu(256 + 48, 256), conv_bn_relu(256, 256))
        self.classifier = nn.Conv2d(256, num_classes, kernel_size=1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        _, low, _, _, deep = self.encoder(x)
        high = F.interpolate(self.aspp(deep), size=low.shape[-2:], mode="bilinear", align_corners=False)
        fused = self.decoder(torch.cat([high, self.low_project(low)], dim=1))
        return F.interpolate(self.classifier(fused), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ImprovedDeepLabV3Plus(SegmentationModel):
    """Improved DeepLabV3+ (Zhao et al. 2024; see module docstring): logits ``(B, num_classes, H, W)``.

    ``fusion``: ``"gated"`` (the paper's, :class:`GatedAttentionFusion`) or ``"se"``
    (:class:`SEFusion`, ablation). ``gate``: squashing of the gated attention map.
    """

    size_multiple = 8

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        backbone: str = "resnet50",
        pretrained: str | os.PathLike = "none",
        rgb_channels: Sequence[int] = (0, 1, 2),
        fusion: str = "gated",
        gate: str = "relu",
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise LsmapError(f"unknown fusion {fusion!r}: choose one of {', '.join(FUSIONS)}")
        if fusion == "se" and gate != "relu":
            raise LsmapError("option gate applies to fusion='gated' only")
        self.encoder = ResNetEncoder(backbone, in_channels, 8, pretrained, rgb_channels)
        self.aspp = ASPP(self.encoder.out_channels[4])
        self.high_upsample = upconv_bn_relu(256)
        self.low_project = conv_bn_relu(self.encoder.out_channels[1], 256, kernel_size=1)
        self.fusion = GatedAttentionFusion(256, gate) if fusion == "gated" else SEFusion(256)
        self.decoder1 = nn.Sequential(conv_bn_relu(256, 128), upconv_bn_relu(128))
        self.decoder2 = nn.Sequential(conv_bn_relu(128, 64), upconv_bn_relu(64))
        self.head = nn.Sequential(conv_bn_relu(64, 32), nn.Conv2d(32, num_classes, kernel_size=3, padding=1))

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        _, low, _, _, deep = self.encoder(x)
        high = self.high_upsample(self.aspp(deep))  # stride 8 -> 4
        fused = self.fusion(high, self.low_project(low))
        return self.head(self.decoder2(self.decoder1(fused)))  # stride 4 -> 2 -> 1
