"""The paper's Table 5 for our trained models, and a figure of sample test chips: ``lsmap benchmark``.

For every model (rows in the paper's order: FCN, U-Net, SegNet, DeepLabV3+, improved DeepLabV3+)
the test split is scored at full chip resolution in both metric protocols of :mod:`lsmap.metrics`
(``*_global``: one confusion matrix over the split; ``*_perchip``: the paper's per-chip class
means), plus the parameter count, GFLOPs per 512 x 512 tile and tiles/s on the current device.

Conventions: metric columns are percentages (0-100) like the paper's table. ``precision``,
``recall``, ``f1`` are means over the two classes in both protocols (the paper's definition);
``*_landslide_*`` columns give the landslide class alone. GFLOPs are floating-point operations
of one forward pass as counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add
counts 2), batch 1, fp32, the model's own input padding included. ``tiles_per_s``: forward passes
of a batch of 512 x 512 tiles (1 on CPU, 8 on CUDA) at the precision mapping uses
(``lsmap.device.autocast_dtype``, "auto": bf16 on CPUs with native bf16), from the median batch
time after a warm-up; the ``device`` column names the precision.
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lsmap.data import list_chips, read_image, read_label, rgb_channels
from lsmap.device import autocast_dtype, pick_device
from lsmap.errors import LsmapError
from lsmap.evaluate import autocast_context, evaluate_checkpoint, model_from_checkpoint
from lsmap.fileio import atomic_output
from lsmap.metrics import SegmentationMeter

MODEL_LABELS = {"fcn": "FCN", "unet": "U-Net", "segnet": "SegNet", "deeplabv3plus": "DeepLabV3+",
                "improved_deeplabv3plus": "Improved DeepLabV3+"}
METRIC_KEYS = ("recall", "precision", "f1", "pa", "miou", "iou_landslide", "precision_landslide",
               "recall_landslide", "f1_landslide")
PAPER_IMPROVED = {"miou": 87.24, "precision": 90.35, "recall": 92.47, "f1": 90.87, "pa": 98.91}
TILE_PX = 512


def table_columns() -> list[str]:
    columns = ["model", "label"]
    for protocol in ("global", "perchip"):
        columns += [f"{key}_{protocol}" for key in METRIC_KEYS]
    return columns + ["params_m", "gflops_512", "tiles_per_s", "device", "epoch", "n_chips", "checkpoint"]


# ----------------------------------------------------------------------------------------------
# Cost


def gflops_per_tile(model: torch.nn.Module, in_channels: int, tile_px: int = TILE_PX) -> float:
    """Forward GFLOPs of one ``tile_px`` square tile, counted on the meta device (nothing is computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    meta_model = copy.deepcopy(model).to("meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_model(torch.zeros(1, in_channels, tile_px, tile_px, device="meta"))
    return counter.get_total_flops() / 1e9


@torch.no_grad()
def tiles_per_second(model: torch.nn.Module, in_channels: int, device: torch.device, *, batch_size: int = 1,
                     tile_px: int = TILE_PX, min_seconds: float = 3.0, min_batches: int = 3,
                     precision: str = "auto") -> float:
    """Throughput of ``model`` on random 512 px tiles: ``batch_size`` / the median batch time.

    After a warm-up, batches run until both ``min_batches`` and ``min_seconds`` are reached; the
    median resists other processes stealing the CPU for part of the run.
    """
    model = model.to(device).eval()
    tiles = torch.randn(batch_size, in_channels, tile_px, tile_px, device=device)
    dtype = autocast_dtype(device, precision)

    def one_batch() -> float:
        started = time.perf_counter()
        with autocast_context(device, dtype):
            model(tiles)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    if device.type == "cuda":
        one_batch()  # cuDNN autotuning and allocator warm-up
    else:  # a small tile initialises the kernels; a full warm-up tile would double the cost on CPU
        with autocast_context(device, dtype):
            model(tiles[:1, :, :64, :64])
    times: list[float] = []
    while len(times) < min_batches or sum(times) < min_seconds:
        times.append(one_batch())
    return batch_size / float(np.median(times))


# ----------------------------------------------------------------------------------------------
# Evaluation


def _percent(metrics: dict, key: str) -> float:
    value = metrics.get(key, math.nan)
    return round(100.0 * value, 2) if value is not None and not math.isnan(value) else math.nan


def metric_columns(metrics: dict) -> dict[str, float]:
    """Table-5 metric columns (percent) from an ``evaluate_checkpoint``/meter summary."""
    out = {}
    for protocol in ("global", "perchip"):
        for key in METRIC_KEYS:
            out[f"{key}_{protocol}"] = _percent(metrics, f"{protocol}_{key}")
    return out


def background_baseline(dataset_dir: Path, split: str) -> dict[str, float]:
    """The predict-all-background baseline on the same split (what 'learning nothing' scores)."""
    meter = SegmentationMeter()
    for chip in list_chips(dataset_dir, split):
        label = read_label(chip.label)
        meter.update(np.zeros_like(label), label)
    return metric_columns(meter.summary())


def choose_sample_chips(dataset_dir: Path, split: str, count: int) -> list[str]:
    """``count`` chips spread over the split (sorted by name) among those 3-60 % landslide."""
    candidates = []
    for chip in list_chips(dataset_dir, split):
        fraction = read_label(chip.label).mean()
        if 0.03 <= fraction <= 0.6:
            candidates.append(chip.name)
    if not candidates:
        return []
    picks = np.linspace(0, len(candidates) - 1, num=min(count, len(candidates))).round().astype(int)
    return [candidates[i] for i in sorted(set(picks))]


def run_benchmark(checkpoints: dict[str, Path], dataset_dir: Path, out_dir: Path, *, split: str = "Test",
                  device: str = "auto", precision: str = "auto", sample_chips: int = 6, batch_size: int = 1,
                  throughput_batch: int | None = None, min_seconds: float = 3.0, progress: bool = False) -> list[dict]:
    """Write ``table5.csv``, ``table5.md`` and ``samples.png`` into ``out_dir``; returns the rows."""
    from lsmap.models import MODEL_NAMES, count_parameters

    unknown = sorted(set(checkpoints) - set(MODEL_NAMES))
    if unknown:
        raise LsmapError(f"unknown model {unknown[0]!r}: use one of {', '.join(MODEL_NAMES)}")
    if not checkpoints:
        raise LsmapError(f"{dataset_dir}: no checkpoints to benchmark")
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    torch_device = pick_device(device)
    samples = choose_sample_chips(dataset_dir, split, sample_chips)
    predictions: dict[str, dict[str, np.ndarray]] = {}
    rows = []
    for name in [m for m in MODEL_NAMES if m in checkpoints]:
        path = Path(checkpoints[name])
        kept: dict[str, np.ndarray] = {}

        def keep_sample(chip: str, probability: np.ndarray, _label: np.ndarray, kept=kept) -> None:
            if chip in samples:
                kept[chip] = probability > 0.5

        metrics = evaluate_checkpoint(path, dataset_dir, split, device=device, precision=precision,
                                      batch_size=batch_size, expect_model=name, progress=progress, on_chip=keep_sample)
        predictions[name] = kept
        checkpoint, model = model_from_checkpoint(path, torch_device, expect_model=name)
        in_channels = checkpoint.input.in_channels
        rows.append({
            "model": name, "label": MODEL_LABELS[name], **metric_columns(metrics),
            "params_m": round(count_parameters(model) / 1e6, 3),
            "gflops_512": round(gflops_per_tile(model, in_channels), 2),
            "tiles_per_s": round(tiles_per_second(model, in_channels, torch_device,
                                                  batch_size=throughput_batch or (8 if torch_device.type == "cuda" else 1),
                                                  min_seconds=min_seconds, precision=precision), 3),
            "device": device_description(torch_device, precision), "epoch": checkpoint.epoch, "n_chips": metrics["n_chips"],
            "checkpoint": str(path),
        })
        print(f"benchmark {name}: mIoU {rows[-1]['miou_global']} (whole split), {rows[-1]['miou_perchip']} (per chip), "
              f"IoU landslide {rows[-1]['iou_landslide_global']}", file=sys.stderr, flush=True)
    baseline = background_baseline(dataset_dir, split)
    write_table_csv(rows, out_dir / "table5.csv")
    write_table_markdown(rows, baseline, out_dir / "table5.md", split)
    if samples:
        plot_samples(dataset_dir, split, samples, predictions, out_dir / "samples.png", checkpoints)
    else:
        raise LsmapError(f"{dataset_dir / split}: no chip with 3-60 % landslide pixels for the sample figure")
    return rows


def device_description(device: torch.device, precision: str = "auto") -> str:
    """The device and the precision tiles/s was measured at, e.g. ``cpu (2 threads, bf16)``."""
    dtype = autocast_dtype(device, precision)
    name = str(dtype).replace("torch.", "").replace("bfloat16", "bf16").replace("float16", "fp16") if dtype else "fp32"
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({name})"
    return f"cpu ({torch.get_num_threads()} threads, {name})"


# ----------------------------------------------------------------------------------------------
# Outputs


def write_table_csv(rows: list[dict], path: Path) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=table_columns(), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def write_table_markdown(rows: list[dict], baseline: dict, path: Path, split: str) -> None:
    """Two tables (paper protocol, whole split) plus cost, the baseline and the paper's figures."""
    lines = [f"# Table 5: models on the {split} split (percent)", "",
             "## Paper protocol: metrics per chip, averaged over chips, then over the two classes", "",
             "| Model | Recall | Precision | F1 | PA | mIoU | IoU landslide |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append("| " + " | ".join([row["label"]] + [_fmt(row[f"{k}_perchip"]) for k in
                                                           ("recall", "precision", "f1", "pa", "miou", "iou_landslide")]) + " |")
    lines += ["", "## Whole split: one confusion matrix over all test pixels", "",
              "| Model | Recall | Precision | F1 | PA | mIoU | IoU landslide | Precision landslide | Recall landslide |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append("| " + " | ".join([row["label"]] + [_fmt(row[f"{k}_global"]) for k in
                                                           ("recall", "precision", "f1", "pa", "miou", "iou_landslide",
                                                            "precision_landslide", "recall_landslide")]) + " |")
    lines += ["", "## Cost", "", "| Model | Parameters (M) | GFLOPs / 512² tile | Tiles/s | Device | Epoch |",
              "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['label']} | {row['params_m']:.2f} | {row['gflops_512']:.1f} | {row['tiles_per_s']:.3f} | "
                     f"{row['device']} | {row['epoch']} |")
    lines += ["", f"Predict-all-background baseline: whole-split mIoU {_fmt(baseline['miou_global'])}, "
              f"IoU landslide {_fmt(baseline['iou_landslide_global'])}, PA {_fmt(baseline['pa_global'])}; "
              f"per-chip mIoU {_fmt(baseline['miou_perchip'])}, PA {_fmt(baseline['pa_perchip'])}.",
              "", "Paper (Zhao et al. 2024, Table 5, improved DeepLabV3+, their GF-6 test set): "
              + ", ".join(f"{k} {v}" for k, v in PAPER_IMPROVED.items()) + ".",
              "Per-chip protocol: a per-chip metric with a zero denominator (e.g. landslide recall of a chip "
              "without landslides) is left out of that class's average, not counted as 0 or 1.", ""]
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines))


def _display_rgb(image: np.ndarray, bands: list[str]) -> np.ndarray:
    """(H, W, 3) float 0..1: red/green/blue bands with a 2-98 percentile stretch per band."""
    channels = rgb_channels(bands) if image.shape[0] >= 3 else (0, 0, 0)
    rgb = image[list(channels)].astype(np.float32)
    low, high = np.percentile(rgb, 2, axis=(1, 2), keepdims=True), np.percentile(rgb, 98, axis=(1, 2), keepdims=True)
    return np.clip((rgb - low) / np.maximum(high - low, 1e-6), 0, 1).transpose(1, 2, 0)


def plot_samples(dataset_dir: Path, split: str, samples: list[str], predictions: dict[str, dict[str, np.ndarray]],
                 path: Path, checkpoints: dict[str, Path]) -> None:
    """Rows = sample chips; columns = image, label, each model's prediction (as in the paper's Figs. 12-13)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lsmap.checkpoint import load_checkpoint
    from lsmap.metrics import confusion_matrix, summarise_confusion

    chips = {chip.name: chip for chip in list_chips(dataset_dir, split)}
    models = list(predictions)
    bands = load_checkpoint(checkpoints[models[0]]).input.bands if models else ["red", "green", "blue"]
    columns = 2 + len(models)
    fig, axes = plt.subplots(len(samples), columns, figsize=(1.9 * columns, 1.9 * len(samples)), squeeze=False)
    for row, name in enumerate(samples):
        label = read_label(chips[name].label)
        panels = [("image", _display_rgb(read_image(chips[name].image), bands)), ("label", label)]
        for model in models:
            prediction = predictions[model].get(name)
            iou = summarise_confusion(confusion_matrix(prediction, label))["iou_landslide"] if prediction is not None else math.nan
            title = f"{MODEL_LABELS[model]}\nIoU {iou:.2f}" if row == 0 else f"IoU {iou:.2f}"
            panels.append((title, prediction if prediction is not None else np.zeros_like(label)))
        for column, (title, data) in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(data, cmap=None if data.ndim == 3 else "gray", vmin=0, vmax=1, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_title(title if row == 0 or column >= 2 else "", fontsize=7)
        axes[row, 0].set_ylabel(name, fontsize=7)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# CLI


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", type=Path, required=True, help="dataset folder in the paper layout")
    parser.add_argument("--train-dir", type=Path, help="folder with <model>/best.pt for each model")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH",
                        help="a model's checkpoint (repeatable; overrides --train-dir)")
    parser.add_argument("--out", type=Path, required=True, help="folder for table5.csv, table5.md, samples.png")
    parser.add_argument("--split", choices=("Train", "Valid", "Test"), default="Test")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--samples", type=int, default=6, help="sample chips in samples.png")


def run(args: argparse.Namespace) -> int:
    from lsmap.models import MODEL_NAMES

    checkpoints: dict[str, Path] = {}
    if args.train_dir:
        checkpoints = {m: args.train_dir / m / "best.pt" for m in MODEL_NAMES if (args.train_dir / m / "best.pt").exists()}
    for item in args.checkpoint:
        model, sep, path = item.partition("=")
        if not sep:
            raise LsmapError(f"--checkpoint {item!r}: use MODEL=PATH")
        checkpoints[model] = Path(path)
    rows = run_benchmark(checkpoints, args.dataset, args.out, split=args.split, device=args.device,
                         precision=args.precision, sample_chips=args.samples, progress=sys.stderr.isatty())
    print((args.out / "table5.md").read_text())
    return 0 if rows else 1
