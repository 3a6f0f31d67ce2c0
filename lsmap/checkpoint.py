"""Self-describing model checkpoints.

A checkpoint holds everything ``lsmap map`` needs to use a model: the registry name and
constructor arguments, the input bands and their normalisation (computed on the training split,
in the units the pixels have on disk), the tile size it was trained at, the training config,
the dataset hash, validation metrics and the lsmap version. It is a plain dict of tensors and
Python primitives so that ``torch.load(..., weights_only=True)`` can read it safely.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import lsmap
from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output, sha256_file

FORMAT = "lsmap-checkpoint"
FORMAT_VERSION = 1


@dataclass
class InputSpec:
    """How pixels on disk become model input: ``(x - mean) / std`` per band, in band order."""

    bands: list[str]
    mean: list[float]
    std: list[float]
    tile_size: int

    @property
    def in_channels(self) -> int:
        return len(self.bands)

    def __post_init__(self) -> None:
        if not (len(self.bands) == len(self.mean) == len(self.std)):
            raise LsmapError(
                f"input spec has {len(self.bands)} bands but {len(self.mean)} means and {len(self.std)} stds"
            )


@dataclass
class Checkpoint:
    model_name: str
    model_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    input: InputSpec
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    dataset_hash: str = ""
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    lsmap_version: str = lsmap.__version__
    path: str = ""  # where it was read from (error messages name it); not saved

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "lsmap_version": self.lsmap_version,
            "model": {"name": self.model_name, "kwargs": dict(self.model_kwargs)},
            "state_dict": self.state_dict,
            "input": {
                "bands": list(self.input.bands),
                "mean": [float(v) for v in self.input.mean],
                "std": [float(v) for v in self.input.std],
                "tile_size": int(self.input.tile_size),
            },
            "epoch": int(self.epoch),
            "metrics": dict(self.metrics),
            "training": dict(self.training),
            "dataset_hash": self.dataset_hash,
            "optimizer_state": self.optimizer_state,
            "scheduler_state": self.scheduler_state,
            "extra": dict(self.extra),
        }

    def build_model(self, device: torch.device | str = "cpu") -> torch.nn.Module:
        """The model with these weights, in eval mode, on ``device`` (no download: pretrained='none').

        A header naming one model over another's weights is a one-line LsmapError naming the file.
        """
        from lsmap.models import build_model

        kwargs = dict(self.model_kwargs)
        kwargs["pretrained"] = "none"  # the weights come from the checkpoint itself
        where = self.path or "checkpoint"
        try:
            model = build_model(self.model_name, **kwargs)
        except LsmapError as exc:
            raise LsmapError(f"{where}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise LsmapError(f"{where}: cannot build model {self.model_name!r} with {kwargs} ({_first_line(exc)})") from exc
        try:
            model.load_state_dict(self.state_dict)
        except (RuntimeError, TypeError, AttributeError) as exc:  # missing/unexpected keys, shape mismatches
            raise LsmapError(f"{where}: weights do not fit model {self.model_name!r} ({_first_line(exc)})") from exc
        return model.to(device).eval()


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(exc).__name__)


def first_conv_in_channels(model: torch.nn.Module) -> int | None:
    """Input channels of the model's first convolution (what a tile must have)."""
    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    return None if conv is None else conv.in_channels


def validate_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load ``path``, build its model, load the weights and check that the input spec's bands feed
    the first convolution; one-line LsmapError naming the file otherwise. Run before any output is
    written, so that a bad checkpoint fails in a second, not after a scene has been read."""
    checkpoint = load_checkpoint(path)
    model = checkpoint.build_model("cpu")
    channels = first_conv_in_channels(model)
    if channels is not None and channels != checkpoint.input.in_channels:
        raise LsmapError(f"{path}: input spec names {checkpoint.input.in_channels} bands "
                         f"({', '.join(checkpoint.input.bands)}) but the model's first layer takes {channels}")
    return checkpoint


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike) -> Path:
    """Write atomically: a killed run never leaves a truncated checkpoint under ``path``."""
    path = Path(path)
    with atomic_output(path) as tmp:
        torch.save(checkpoint.to_dict(), tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; one-line error on anything else."""
    path = Path(path)
    if not path.is_file():
        raise LsmapError(f"{path}: checkpoint not found")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        text = str(exc).strip()
        if "Weights only load failed" in text:  # garbage, or a pickle of objects/code: refused unread, briefly
            detail = next((line.strip() for line in text.splitlines() if line.strip().startswith("Unsupported")), "")
            reason = "not a file of plain tensors; lsmap never unpickles other objects" + (f": {detail}" if detail else "")
        else:
            reason = text.splitlines()[0] if text else type(exc).__name__
        raise LsmapError(f"{path}: not a readable checkpoint ({reason})") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise LsmapError(f"{path}: not an lsmap checkpoint (no 'format: {FORMAT}' entry)")
    if raw.get("format_version", 0) > FORMAT_VERSION:
        raise LsmapError(
            f"{path}: checkpoint format {raw['format_version']} is newer than this lsmap reads ({FORMAT_VERSION})"
        )
    try:
        spec = raw["input"]
        return Checkpoint(
            model_name=raw["model"]["name"],
            model_kwargs=dict(raw["model"]["kwargs"]),
            state_dict=raw["state_dict"],
            input=InputSpec(list(spec["bands"]), list(spec["mean"]), list(spec["std"]), int(spec["tile_size"])),
            epoch=raw.get("epoch", 0),
            metrics=raw.get("metrics", {}),
            training=raw.get("training", {}),
            dataset_hash=raw.get("dataset_hash", ""),
            optimizer_state=raw.get("optimizer_state"),
            scheduler_state=raw.get("scheduler_state"),
            extra=raw.get("extra", {}),
            lsmap_version=raw.get("lsmap_version", "unknown"),
            path=str(path),
        )
    except KeyError as exc:
        raise LsmapError(f"{path}: lsmap checkpoint without its {exc.args[0]!r} entry") from exc
    except (TypeError, ValueError) as exc:
        raise LsmapError(f"{path}: malformed lsmap checkpoint ({_first_line(exc)})") from exc
    except LsmapError as exc:  # InputSpec's own check does not know the file
        raise LsmapError(f"{path}: {exc}") from exc


def checkpoint_hash(path: str | os.PathLike) -> str:
    """Provenance id of a checkpoint file: its SHA-256, as recorded in every mapping output."""
    return sha256_file(path)
