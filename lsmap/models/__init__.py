"""The segmentation models and their registry.

Every model maps ``(B, in_channels, H, W)`` float input to logits ``(B, num_classes, H, W)`` for
any H, W (inputs are reflect-padded to the network's stride and the logits cropped back).
``build_model`` is the one constructor; a checkpoint stores its keyword arguments and rebuilds
the model with ``pretrained="none"`` before loading the weights, so the structure depends on
those arguments only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from torch import nn

from lsmap.errors import LsmapError
from lsmap.models.deeplabv3plus import DeepLabV3Plus, ImprovedDeepLabV3Plus
from lsmap.models.encoders import RESNET_BACKBONES
from lsmap.models.fcn import FCN8s
from lsmap.models.segnet import SegNet
from lsmap.models.unet import UNet

MODEL_NAMES = ("fcn", "unet", "segnet", "deeplabv3plus", "improved_deeplabv3plus")
BACKBONES = RESNET_BACKBONES
COMMON_OPTIONS = ("rgb_channels",)


@dataclass(frozen=True)
class ModelSpec:
    cls: type[nn.Module]
    description: str
    uses_backbone: bool = True  # False: fixed encoder, ``backbone`` is ignored
    encoder: str = "resnet"
    options: tuple[str, ...] = ()


REGISTRY: dict[str, ModelSpec] = {
    "fcn": ModelSpec(FCN8s, "FCN-8s skips (strides 8/16/32) on a ResNet"),
    "unet": ModelSpec(UNet, "U-Net decoder on a ResNet encoder"),
    "segnet": ModelSpec(SegNet, "SegNet, max-unpooling decoder", uses_backbone=False, encoder="vgg16_bn"),
    "deeplabv3plus": ModelSpec(DeepLabV3Plus, "DeepLabV3+ baseline, ResNet OS8, bilinear decoder"),
    "improved_deeplabv3plus": ModelSpec(
        ImprovedDeepLabV3Plus,
        "Zhao et al. 2024: attention fusion + transposed convs",
        options=("fusion", "gate"),
    ),
}
assert tuple(REGISTRY) == MODEL_NAMES


def build_model(
    name: str,
    in_channels: int = 3,
    num_classes: int = 1,
    backbone: str = "resnet50",
    pretrained: str | os.PathLike | None = "none",
    **options,
) -> nn.Module:
    """Build a registered model; logits ``(B, num_classes, H, W)`` with the input's H, W.

    ``backbone``: one of :data:`BACKBONES` (ignored by ``segnet``, whose encoder is VGG16-BN).
    ``pretrained``: ``"none"`` (or None), ``"imagenet"`` or a path to a torchvision-format state dict.
    ``options``: ``rgb_channels=(r, g, b)`` input indices of red, green, blue (used to place the
    ImageNet first-conv weights; GF-6 B/G/R/NIR scenes: ``(2, 1, 0)``); for
    ``improved_deeplabv3plus`` also ``fusion="gated"|"se"`` and ``gate="relu"|"sigmoid"``.
    """
    if name not in REGISTRY:
        raise LsmapError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}")
    spec = REGISTRY[name]
    if pretrained is None:
        pretrained = "none"
    if backbone not in BACKBONES:
        raise LsmapError(f"unknown backbone {backbone!r}: choose one of {', '.join(BACKBONES)}")
    allowed = COMMON_OPTIONS + spec.options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise LsmapError(f"unknown option {unknown[0]!r} for model {name}: valid options are {', '.join(allowed)}")
    for label, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LsmapError(f"{label} must be a positive integer, got {value!r}")
    return spec.cls(
        in_channels=in_channels, num_classes=num_classes, backbone=backbone, pretrained=pretrained, **options
    )


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def encoder_name(name: str, backbone: str) -> str:
    """The encoder a model actually uses with ``backbone`` (segnet: always vgg16_bn)."""
    spec = REGISTRY[name]
    return backbone if spec.uses_backbone else spec.encoder


__all__ = ["BACKBONES", "MODEL_NAMES", "REGISTRY", "build_model", "count_parameters", "encoder_name"]
