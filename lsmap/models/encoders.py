"""Encoders built from torchvision networks: ResNet at a chosen output stride, and VGG16-BN for SegNet.

Pretrained weights (``pretrained``):

- ``"none"``: random initialisation (torchvision's own initialisers).
- ``"imagenet"``: torchvision's ``IMAGENET1K_V1`` weights through its weights API (the same
  tensors timm's ``tv_resnet50`` mirrors, which the authors used). Needs the network once; the
  file is cached under ``torch.hub.get_dir()/checkpoints``.
- a path: a local torchvision-format state dict (e.g. the downloaded ``resnet50-0676ba61.pth``),
  read with ``torch.load(weights_only=True)``. The classifier head (``fc.*`` / ``classifier.*``)
  may be present or absent; every other key must match.

First-convolution adaptation (:func:`adapt_first_conv_weight`): the ImageNet kernels of the
red, green and blue inputs are copied to the input channels named by ``rgb_channels`` (GF-6
analysis-ready scenes are B, G, R, NIR, so callers pass ``(2, 1, 0)``); every other channel
(NIR, DEM-derived, ...) starts from the mean of the three RGB kernels; then the whole kernel is
multiplied by ``3 / in_channels``. For an input whose normalised channels all carry the same
signal (the grey-world case; real bands are strongly correlated) the adapted convolution
therefore gives exactly the response of the original RGB convolution, so the pretrained
BatchNorm statistics behind it stay valid. A single-channel input (panchromatic) gets the sum of
the RGB kernels, which has the same property.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision
from torch import nn

from lsmap.errors import LsmapError

RESNET_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
IMAGENET_WEIGHTS = "IMAGENET1K_V1"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_rgb_channels(rgb_channels: Sequence[int], in_channels: int) -> tuple[int, int, int]:
    """Validate ``rgb_channels`` (input indices of red, green, blue) for ``in_channels`` >= 3."""
    try:
        rgb = tuple(int(c) for c in rgb_channels)
    except (TypeError, ValueError):
        raise LsmapError(
            f"rgb_channels must be three channel indices (red, green, blue), got {rgb_channels!r}"
        ) from None
    if len(rgb) != 3 or len(set(rgb)) != 3 or not all(0 <= c < in_channels for c in rgb):
        raise LsmapError(
            f"rgb_channels must be three distinct indices in 0..{in_channels - 1} "
            f"(input channels of red, green, blue), got {tuple(rgb_channels)!r}"
        )
    return rgb  # type: ignore[return-value]


def adapt_first_conv_weight(
    weight: torch.Tensor, in_channels: int, rgb_channels: Sequence[int] = (0, 1, 2)
) -> torch.Tensor:
    """ImageNet first-conv kernel ``(O, 3, k, k)`` (RGB order) -> ``(O, in_channels, k, k)``.

    RGB kernels go to ``rgb_channels``, other channels get the mean RGB kernel, and everything is
    scaled by ``3 / in_channels`` so that a grey input (all channels equal) gives the original
    response. ``in_channels == 1``: the sum of the RGB kernels.
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise LsmapError(f"expected an RGB first-conv kernel of shape (O, 3, k, k), got {tuple(weight.shape)}")
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    if in_channels == 2:
        raise LsmapError("pretrained RGB weights need in_channels == 1 or >= 3 (red, green and blue among them), got 2")
    rgb = check_rgb_channels(rgb_channels, in_channels)
    adapted = weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
    for source, target in enumerate(rgb):
        adapted[:, target] = weight[:, source]
    return adapted * (3.0 / in_channels)


def _download_imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    weights = torchvision.models.get_model_weights(arch)[IMAGENET_WEIGHTS]
    try:
        return torch.hub.load_state_dict_from_url(
            weights.url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except Exception as exc:  # URLError, OSError, hash mismatch: all mean "no usable weights here"
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise LsmapError(
            f"{weights.url}: could not get the ImageNet weights of {arch} ({_first_line(exc)}); "
            f"without network access, download that file elsewhere and pass its local path as "
            f"pretrained (a torchvision-format state dict), or put it in {cache}"
        ) from exc


def _read_local_state_dict(path: Path, arch: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise LsmapError(
            f"{path}: pretrained weights file not found "
            f"(pretrained must be 'none', 'imagenet' or the path of a torchvision-format {arch} state dict)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or pickled-object files
        raise LsmapError(
            f"{path}: not a state dict readable with torch.load(weights_only=True) ({_first_line(exc)})"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LsmapError(f"{path}: not a torchvision-format {arch} state dict (expected a dict of tensors)")
    return state


def load_pretrained(
    net: nn.Module,
    arch: str,
    pretrained: str | os.PathLike,
    in_channels: int,
    rgb_channels: Sequence[int],
    first_conv_key: str,
    head_prefix: str,
) -> None:
    """Load torchvision ``arch`` weights into ``net`` (whose first conv takes ``in_channels``).

    The classifier head (keys starting ``head_prefix``) is ignored; any other missing, unexpected
    or mis-shaped key is an LsmapError naming the source.
    """
    if str(pretrained) == "imagenet":
        source = f"ImageNet {arch} weights"
        state = _download_imagenet_state_dict(arch)
    else:
        path = Path(pretrained).expanduser()
        source = str(path)
        state = _read_local_state_dict(path, arch)
    if first_conv_key not in state:
        raise LsmapError(f"{source}: not a torchvision-format {arch} state dict (no '{first_conv_key}')")
    state = {k: v for k, v in state.items() if not k.startswith(head_prefix)}
    state[first_conv_key] = adapt_first_conv_weight(state[first_conv_key].float(), in_channels, rgb_channels)
    expected = {k: v for k, v in net.state_dict().items() if not k.startswith(head_prefix)}
    # Old torchvision files predate BatchNorm's num_batches_tracked buffer; it does not affect eval.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                problems.append(f"{len(keys)} {label} keys, e.g. {keys[0]}")
        raise LsmapError(f"{source}: not a torchvision-format {arch} state dict ({'; '.join(problems)})")
    net.load_state_dict(state, strict=False)


def _fresh_conv_like(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """Same geometry as ``conv`` but ``in_channels`` inputs; torchvision's kaiming initialisation."""
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


def _dilate_layer(layer: nn.Sequential, first_dilation: int, dilation: int) -> None:
    """Turn a stride-2 ResNet stage into a stride-1 dilated one, in place (DeepLab's atrous trick).

    Same rule as torchvision's ``replace_stride_with_dilation``: the first block keeps the previous
    dilation, the later blocks use the new one. Works for BasicBlock too (resnet18/34), which
    torchvision refuses to dilate. Parameter shapes do not change, so pretrained weights still fit.
    """
    for index, block in enumerate(layer):
        block_dilation = first_dilation if index == 0 else dilation
        for name, module in block.named_modules():
            if not isinstance(module, nn.Conv2d):
                continue
            module.stride = (1, 1)
            if module.kernel_size == (3, 3) and not name.startswith("downsample"):
                module.dilation = (block_dilation, block_dilation)
                module.padding = (block_dilation, block_dilation)


class ResNetEncoder(nn.Module):
    """torchvision ResNet without its classifier, returning five feature maps.

    ``forward(x)`` with ``x`` ``(B, in_channels, H, W)`` returns
    ``[stem, layer1, layer2, layer3, layer4]`` at strides ``self.strides`` (2, 4, 8, then 16/32,
    16/16 or 8/8 for output stride 32, 16 or 8) with channels ``self.out_channels``
    (64, 64, 128, 256, 512 for resnet18/34; 64, 256, 512, 1024, 2048 for resnet50/101).
    Module names are torchvision's (``conv1``, ``bn1``, ``layer1`` ...).
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        in_channels: int = 3,
        output_stride: int = 32,
        pretrained: str | os.PathLike = "none",
        rgb_channels: Sequence[int] = (0, 1, 2),
    ) -> None:
        super().__init__()
        if backbone not in RESNET_BACKBONES:
            raise LsmapError(f"unknown backbone {backbone!r}: choose one of {', '.join(RESNET_BACKBONES)}")
        if output_stride not in (8, 16, 32):
            raise LsmapError(f"output stride must be 8, 16 or 32, got {output_stride}")
        net = torchvision.models.get_model(backbone, weights=None)
        net.conv1 = _fresh_conv_like(net.conv1, in_channels)
        if str(pretrained) != "none":
            load_pretrained(net, backbone, pretrained, in_channels, rgb_channels, "conv1.weight", "fc.")
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if output_stride <= 16:
            _dilate_layer(self.layer4, 1 if output_stride == 16 else 2, 2 if output_stride == 16 else 4)
        if output_stride == 8:
            _dilate_layer(self.layer3, 1, 2)
        expansion = type(net.layer1[0]).expansion
        self.out_channels = (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)
        self.strides = (2, 4, 8, min(16, output_stride), output_stride)
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        c1 = self.layer1(self.maxpool(stem))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [stem, c1, c2, c3, c4]


# torchvision's VGG16 ("D") layout: conv widths, "M" = 2x2 max pooling.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16_bn_features(in_channels: int = 3) -> nn.Sequential:
    """torchvision's ``vgg16_bn().features`` (same layer indices, same initialisation), built
    without the 120 M-parameter classifier that SegNet would throw away."""
    layers: list[nn.Module] = []
    channels = in_channels
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(channels, int(item), kernel_size=3, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.BatchNorm2d(int(item)), nn.ReLU(inplace=True)]
        channels = int(item)
    return nn.Sequential(*layers)


class VGG16BNEncoder(nn.Module):
    """torchvision VGG16-BN convolutions (``features``), the encoder of the classic SegNet.

    ``forward(x)`` returns the stride-32 features ``(B, 512, H/32, W/32)`` and, per pooling stage
    (shallow to deep), ``(indices, size_before_pooling)`` for SegNet's max-unpooling.
    Parameter names are torchvision's (``features.0.weight`` ...), so a ``vgg16_bn`` state dict
    loads (its ``classifier.*`` keys are ignored).
    """

    out_channels = (64, 128, 256, 512, 512)

    def __init__(
        self,
        in_channels: int = 3,
        pretrained: str | os.PathLike = "none",
        rgb_channels: Sequence[int] = (0, 1, 2),
    ) -> None:
        super().__init__()
        self.features = vgg16_bn_features(in_channels)
        if str(pretrained) != "none":
            load_pretrained(self, "vgg16_bn", pretrained, in_channels, rgb_channels, "features.0.weight", "classifier.")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Size]]]:
        pools = []
        for module in self.features:
            if isinstance(module, nn.MaxPool2d):
                size = x.shape
                x, indices = nn.functional.max_pool2d(x, kernel_size=2, stride=2, return_indices=True)
                pools.append((indices, size))
            else:
                x = module(x)
        return x, pools
