"""Evaluating a checkpoint on one split of a dataset: ``lsmap evaluate``.

Every chip is scored at its full resolution against its own label (see :mod:`lsmap.data` for the
size policies); both metric protocols of :mod:`lsmap.metrics` are reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lsmap.checkpoint import Checkpoint, load_checkpoint
from lsmap.data import (ChipDataset, band_names, check_chips, list_chips, logits_at_label_size, make_loader)
from lsmap.device import autocast_dtype, pick_device
from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output
from lsmap.metrics import SegmentationMeter


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for ``dtype`` on ``device``, or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def predict_loader(model: torch.nn.Module, loader, device: torch.device, *, amp_dtype: torch.dtype | None = None,
                   loss_fn: Callable | None = None, progress: bool = False, desc: str = "evaluate",
                   on_chip: Callable[[str, np.ndarray, np.ndarray], None] | None = None) -> tuple[float, SegmentationMeter]:
    """Run ``model`` over an evaluation loader (:func:`lsmap.data.collate_eval` batches).

    Returns the mean per-chip loss (NaN without ``loss_fn``) and the metric meter. ``on_chip(name,
    probability (H, W) float32, label (H, W) uint8)`` sees every chip (for sample figures).
    A pixel is landslide where the probability exceeds 0.5 (logit > 0).
    """
    from tqdm import tqdm

    model.eval()
    meter = SegmentationMeter()
    losses = []
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, mininterval=10, leave=False):
        images = batch["image"].to(device, non_blocking=True)
        with autocast_context(device, amp_dtype):
            logits = model(images)
        for index, label in enumerate(batch["labels"]):
            chip_logits = logits_at_label_size(logits[index].float(), batch["content_hw"][index], label.shape)
            if loss_fn is not None:
                losses.append(float(loss_fn(chip_logits[None], label[None].to(device))))
            prediction = (chip_logits[0] > 0).cpu().numpy().astype(np.uint8)
            label_np = label.numpy()
            meter.update(prediction, label_np)
            if on_chip is not None:
                on_chip(batch["names"][index], torch.sigmoid(chip_logits[0]).cpu().numpy(), label_np)
    return (float(np.mean(losses)) if losses else math.nan), meter


def model_from_checkpoint(path: Path, device: torch.device, expect_model: str | None = None) -> tuple[Checkpoint, torch.nn.Module]:
    """Load a checkpoint and its model; a checkpoint of another model or with foreign weights is an error."""
    checkpoint = load_checkpoint(path)
    if expect_model is not None and checkpoint.model_name != expect_model:
        raise LsmapError(f"{path}: checkpoint is a '{checkpoint.model_name}' model, not '{expect_model}'")
    try:
        model = checkpoint.build_model(device)
    except RuntimeError as exc:  # load_state_dict: missing/unexpected keys or shapes
        raise LsmapError(f"{path}: weights do not fit model '{checkpoint.model_name}' ({str(exc).splitlines()[0]})") from exc
    return checkpoint, model


def check_dataset_matches(checkpoint: Checkpoint, checkpoint_path: Path, dataset_dir: Path, n_bands: int) -> None:
    bands = band_names(dataset_dir, n_bands)
    if bands != list(checkpoint.input.bands):
        raise LsmapError(
            f"{checkpoint_path}: model expects bands {checkpoint.input.bands} but {dataset_dir} has {bands}"
        )


def evaluation_dataset(checkpoint: Checkpoint, chips) -> ChipDataset:
    return ChipDataset(chips, checkpoint.input.mean, checkpoint.input.std, input_size=checkpoint.input.tile_size,
                       size_policy=checkpoint.extra.get("size_policy", "crop"), train=False)


def evaluate_checkpoint(checkpoint_path: Path, dataset_dir: Path, split: str = "Test", *, device: str = "auto",
                        precision: str = "auto", batch_size: int = 1, num_workers: int = 0,
                        expect_model: str | None = None, progress: bool = True,
                        on_chip: Callable | None = None) -> dict:
    """Metrics of one checkpoint on one split: ``global_*`` and ``perchip_*`` keys plus provenance."""
    checkpoint_path, dataset_dir = Path(checkpoint_path), Path(dataset_dir)
    torch_device = pick_device(device)
    checkpoint, model = model_from_checkpoint(checkpoint_path, torch_device, expect_model)
    chips = list_chips(dataset_dir, split)
    check_dataset_matches(checkpoint, checkpoint_path, dataset_dir, check_chips(chips))
    loader = make_loader(evaluation_dataset(checkpoint, chips), batch_size=batch_size, num_workers=num_workers)
    _, meter = predict_loader(model, loader, torch_device, amp_dtype=autocast_dtype(torch_device, precision),
                              progress=progress, desc=f"evaluate {checkpoint.model_name}", on_chip=on_chip)
    return {"model": checkpoint.model_name, "checkpoint": str(checkpoint_path), "split": split,
            "n_chips": len(chips), "device": str(torch_device), "epoch": checkpoint.epoch, **meter.summary()}


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True, help="dataset folder in the paper layout")
    parser.add_argument("--split", choices=("Train", "Valid", "Test"), default="Test")
    parser.add_argument("--model", help="fail unless the checkpoint holds this model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the metrics as JSON here")


def run(args: argparse.Namespace) -> int:
    metrics = evaluate_checkpoint(args.checkpoint, args.dataset, args.split, device=args.device,
                                  precision=args.precision, batch_size=args.batch_size, expect_model=args.model,
                                  progress=sys.stderr.isatty())
    text = json.dumps(metrics, indent=2)
    if args.out:
        with atomic_output(args.out) as tmp:
            tmp.write_text(text + "\n")
    print(text)
    return 0
