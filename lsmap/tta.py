"""Test-time augmentation: the mean of a model's outputs over flips and 90 degree rotations.

:class:`DihedralTTA` wraps a segmentation model: each chosen transform of the dihedral group D4 is
applied to the input batch, the model runs on it, the inverse transform brings the output back
onto the input's pixel grid, and the outputs are averaged. The wrapper has the model's signature
((B, C, H, W) -> (B, K, H, W) logits), so it runs inside the mapping predictor's tiling and
blending unchanged. Logits are averaged after a sigmoid and mapped back to logits, so the result
is the mean *probability* of the views (averaging logits would let one confident view dominate).

Rotations by 90/270 degrees need square tiles; lsmap's tiles always are.
"""

from __future__ import annotations

import torch

from lsmap.errors import LsmapError

# name -> (k quarter-turns counter-clockwise, then flip left-right?) applied to the input
TRANSFORMS: dict[str, tuple[int, bool]] = {
    "identity": (0, False), "rot90": (1, False), "rot180": (2, False), "rot270": (3, False),
    "hflip": (0, True), "rot90_hflip": (1, True), "rot180_hflip": (2, True), "rot270_hflip": (3, True),
}
PRESETS = {
    "none": ("identity",),
    "flip": ("identity", "hflip"),
    "flips": ("identity", "hflip", "rot180_hflip", "rot180"),  # rot180_hflip is the up-down flip
    "8": tuple(TRANSFORMS),  # the whole dihedral group D4
    "d4": tuple(TRANSFORMS),
}


def parse_tta(spec: str | None) -> tuple[str, ...]:
    """``None``/``none`` -> identity only; a preset (``flip``: 2 views, ``flips``: 4 without quarter turns,
    ``8``/``d4``: all 8) or a
    comma-separated list of :data:`TRANSFORMS` names."""
    if spec is None or spec == "" or spec is False:
        return PRESETS["none"]
    spec = str(spec).strip().lower()
    if spec in PRESETS:
        return PRESETS[spec]
    names = tuple(name.strip() for name in spec.split(",") if name.strip())
    unknown = [name for name in names if name not in TRANSFORMS]
    if unknown or not names:
        raise LsmapError(f"unknown test-time augmentation {spec!r}: use {', '.join(sorted(PRESETS))} "
                         f"or a comma-separated list of {', '.join(TRANSFORMS)}")
    return names


def forward_transform(x: torch.Tensor, name: str) -> torch.Tensor:
    k, flip = TRANSFORMS[name]
    x = torch.rot90(x, k, dims=(-2, -1)) if k else x
    return torch.flip(x, dims=(-1,)) if flip else x


def inverse_transform(y: torch.Tensor, name: str) -> torch.Tensor:
    k, flip = TRANSFORMS[name]
    y = torch.flip(y, dims=(-1,)) if flip else y
    return torch.rot90(y, -k, dims=(-2, -1)) if k else y


class DihedralTTA(torch.nn.Module):
    """``model`` averaged over ``transforms`` (names of :data:`TRANSFORMS`); returns logits.

    Cost: one forward pass per transform (8x for the full group). Inputs with H != W are
    accepted only by transforms that keep the shape (no 90/270 degree rotations).
    """

    def __init__(self, model: torch.nn.Module, transforms: tuple[str, ...] = PRESETS["d4"]):
        super().__init__()
        self.model = model
        self.transforms = tuple(transforms)
        if not self.transforms:
            raise LsmapError("test-time augmentation needs at least one transform")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        square = x.shape[-1] == x.shape[-2]
        total = None
        for name in self.transforms:
            if not square and TRANSFORMS[name][0] % 2:
                raise LsmapError(f"test-time augmentation {name!r} needs square tiles, got {tuple(x.shape[-2:])}")
            view = forward_transform(x, name)
            probability = torch.sigmoid(inverse_transform(self.model(view), name).float())
            total = probability if total is None else total + probability
        mean = (total / len(self.transforms)).clamp(1e-6, 1 - 1e-6)
        return torch.logit(mean)


def with_tta(model: torch.nn.Module, spec: str | None) -> torch.nn.Module:
    """``model`` itself when ``spec`` asks for no augmentation, else wrapped in :class:`DihedralTTA`."""
    transforms = parse_tta(spec)
    return model if transforms == PRESETS["none"] else DihedralTTA(model, transforms)
