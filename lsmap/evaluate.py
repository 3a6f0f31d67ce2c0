"""Evaluating a checkpoint on labelled chips: ``lsmap evaluate``.

Chips come from one split of a dataset in the paper layout (``--dataset``, ``--split``) or from
a plain folder of images and a folder of masks with the same stems (``--images``, ``--masks``):
labelled chips of another region, scored before a model is trusted there. Masks are 0/255, 0/1,
or mark landslides with one colour (``--mask-colour 255,0,0``). Every chip is scored at its full
resolution against its own label; both metric protocols of :mod:`lsmap.metrics` are reported.

Two predictors:

* ``mapping`` (default for folders and with ``--tta``): each chip is written to an in-memory
  GeoTIFF and run through :func:`lsmap.predict.predict_scene`, the tiling and blending of
  ``lsmap map`` itself (tile size, overlap, precision, test-time augmentation): big chips are
  tiled, small ones padded as a scene edge is. The score measures what mapping does.
* ``chips`` (default for ``--dataset``; what training validates with): whole chips, mirror-padded
  to a multiple of 32, one forward pass each, honouring the checkpoint's size policy. Test-time
  augmentation works here too: flips on any chip, quarter turns (``--tta 8``) only for a
  resize-policy checkpoint, whose inputs are square.

``--gsd-m`` gives the chips' ground sampling distance; when the checkpoint records the one it was
trained at (or ``--model-gsd-m`` gives it), chips are resampled to the model's pixel size before
prediction and the probabilities back to the label's grid (labels are never resampled).
One JSON and one Markdown table are written per evaluation (``--out metrics.json`` and
``metrics.md`` beside it). Memory: one chip at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lsmap.checkpoint import Checkpoint, load_checkpoint
from lsmap.data import (Chip, ChipDataset, band_names, check_chips, list_chips, logits_at_label_size,
                        make_loader, nodata_mask, parse_colour, read_image, read_label, read_nodata,
                        resize_image_bilinear, resize_label_nearest)
from lsmap.device import autocast_dtype, pick_device
from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output
from lsmap.metrics import IGNORE, SegmentationMeter
from lsmap.predict import InferenceOptions, predict_scene
from lsmap.tta import TRANSFORMS, parse_tta, with_tta

PREDICTORS = ("mapping", "chips")


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
                        on_chip: Callable | None = None, predictor: str = "chips",
                        inference: InferenceOptions | None = None, gsd_m: float | None = None,
                        model_gsd_m: float | None = None, threshold: float | None = None) -> dict:
    """Metrics of one checkpoint on one split: ``global_*`` and ``perchip_*`` keys plus provenance."""
    checkpoint_path, dataset_dir = Path(checkpoint_path), Path(dataset_dir)
    chips = list_chips(dataset_dir, split)
    if predictor == "chips":
        transforms = parse_tta(inference.tta if inference is not None else None)
        if gsd_m is not None:
            raise LsmapError("GSD resampling runs through the mapping predictor: use --predictor mapping")
        torch_device = pick_device(device)
        checkpoint, model = model_from_checkpoint(checkpoint_path, torch_device, expect_model)
        # whole chips are square only when the checkpoint resizes them (size_policy resize)
        if checkpoint.extra.get("size_policy") != "resize" and any(TRANSFORMS[name][0] % 2 for name in transforms):
            raise LsmapError("quarter-turn test-time augmentation needs square inputs: use --predictor mapping, "
                             "or --tta flips with --predictor chips (chips of a crop-policy checkpoint keep their shape)")
        model = with_tta(model, inference.tta if inference is not None else None)
        check_dataset_matches(checkpoint, checkpoint_path, dataset_dir, check_chips(chips))
        loader = make_loader(evaluation_dataset(checkpoint, chips), batch_size=batch_size, num_workers=num_workers)
        _, meter = predict_loader(model, loader, torch_device, amp_dtype=autocast_dtype(torch_device, precision),
                                  progress=progress, desc=f"evaluate {checkpoint.model_name}", on_chip=on_chip)
        return {"model": checkpoint.model_name, "checkpoint": str(checkpoint_path), "split": split,
                "n_chips": len(chips), "device": str(torch_device), "epoch": checkpoint.epoch,
                "predictor": "chips", "tta": "+".join(transforms), **meter.summary()}
    checkpoint = validate_for_evaluation(checkpoint_path, expect_model)
    check_dataset_matches(checkpoint, checkpoint_path, dataset_dir, check_chips(chips))
    inference = inference or InferenceOptions(device=device, precision=precision, progress=False)
    result = evaluate_chips_mapping(checkpoint, chips, inference, gsd_m=gsd_m, model_gsd_m=model_gsd_m,
                                    threshold=threshold, progress=progress, on_chip=on_chip,
                                    source=f"{dataset_dir} ({split})")
    return {"split": split, **result}


def evaluate_folder(checkpoint_path: Path, images: Path, masks: Path, *, colour: tuple[int, ...] | None = None,
                    predictor: str = "mapping", inference: InferenceOptions | None = None,
                    gsd_m: float | None = None, model_gsd_m: float | None = None, threshold: float | None = None,
                    expect_model: str | None = None, progress: bool = True, on_chip: Callable | None = None) -> dict:
    """Metrics of one checkpoint on a folder of image chips and a folder of masks of the same stems."""
    from lsmap.dataset import folder_pairs

    if predictor != "mapping":
        raise LsmapError("a folder of images and masks is scored through the mapping predictor (--predictor mapping)")
    checkpoint = validate_for_evaluation(Path(checkpoint_path), expect_model)
    chips = [Chip(stem, image, mask) for stem, (image, mask) in folder_pairs(Path(images), Path(masks)).items()]
    inference = inference or InferenceOptions(progress=False)
    return evaluate_chips_mapping(checkpoint, chips, inference, colour=colour, gsd_m=gsd_m, model_gsd_m=model_gsd_m,
                                  threshold=threshold, progress=progress, on_chip=on_chip,
                                  source=f"{images} + {masks}", masks_dir=Path(masks))


# ----------------------------------------------------------------------------------------------
# Through the mapping predictor


def validate_for_evaluation(checkpoint_path: Path, expect_model: str | None) -> Checkpoint:
    from lsmap.checkpoint import validate_checkpoint

    checkpoint = validate_checkpoint(checkpoint_path)
    if expect_model is not None and checkpoint.model_name != expect_model:
        raise LsmapError(f"{checkpoint_path}: checkpoint is a '{checkpoint.model_name}' model, not '{expect_model}'")
    return checkpoint


def resample_scale(checkpoint: Checkpoint, gsd_m: float | None, model_gsd_m: float | None) -> float:
    """Factor by which chips are scaled to reach the model's pixel size (1.0: no resampling)."""
    if gsd_m is None:
        return 1.0
    model = model_gsd_m if model_gsd_m is not None else checkpoint.extra.get("gsd_m")
    if model is None:
        raise LsmapError(f"{checkpoint.path}: checkpoint records no training GSD; give it with --model-gsd-m to resample "
                         f"chips of {gsd_m} m")
    if not (gsd_m > 0 and model > 0):
        raise LsmapError(f"ground sampling distances must be positive (chips {gsd_m} m, model {model} m)")
    return float(gsd_m) / float(model)


def load_labelled_chip(chip: Chip, colour: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(C, H, W) pixels in the on-disk dtype, (H, W) label {0, 1, IGNORE at nodata}, nodata value."""
    image = read_image(chip.image)
    label = read_label(chip.label, image.shape[1:], colour=colour)
    nodata = read_nodata(chip.image)
    invalid = nodata_mask(image, nodata)
    if invalid is not None:
        if invalid.all():
            raise LsmapError(f"{chip.image}: chip has no valid pixel (every pixel is nodata {nodata})")
        label[invalid] = IGNORE
    return image, label, nodata


def check_evaluation_chips(checkpoint: Checkpoint, chips: list[Chip], colour: tuple[int, ...] | None,
                           masks_dir: Path | None) -> None:
    """Every chip readable, of the checkpoint's band count, its mask of its size, at least one valid
    pixel, and (with a colour) the colour present somewhere: checked before the model runs."""
    expected = checkpoint.input.in_channels
    matched = 0
    for chip in chips:
        image, label, _ = load_labelled_chip(chip, colour)
        if image.shape[0] != expected:
            raise LsmapError(f"{chip.image}: evaluation chips have {image.shape[0]} bands but checkpoint "
                             f"{checkpoint.path} expects {expected} ({', '.join(checkpoint.input.bands)})")
        matched += int((label == 1).sum())
    if colour is not None and matched == 0:
        raise LsmapError(f"{masks_dir or chips[0].label.parent}: mask colour {','.join(map(str, colour))} "
                         "matches no pixel of any mask")


def chip_probability(checkpoint: Checkpoint, image: np.ndarray, nodata: float | None, options: InferenceOptions,
                     scale: float = 1.0) -> np.ndarray:
    """(H, W) float32 probability of a (C, H, W) chip through the mapping predictor.

    The chip becomes an in-memory GeoTIFF (a nominal metric CRS: the model ignores geography) and
    goes through :func:`lsmap.predict.predict_scene`; with ``scale`` != 1 it is resampled
    (bilinear, nodata kept by nearest neighbour) to ``scale`` times its size first and the
    probability resampled back. Nodata pixels are ``PROBABILITY_NODATA`` (-1).
    """
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    from lsmap.predict import PROBABILITY_NODATA

    height, width = image.shape[1:]
    pixels = image
    if scale != 1.0:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        invalid = nodata_mask(image, nodata)
        pixels = resize_image_bilinear(image.astype(np.float32), size)
        if invalid is not None:
            pixels[:, resize_label_nearest(invalid.astype(np.uint8), size).astype(bool)] = nodata
    profile = {"driver": "GTiff", "height": pixels.shape[1], "width": pixels.shape[2], "count": pixels.shape[0],
               "dtype": pixels.dtype.name, "crs": "EPSG:3857", "nodata": nodata,
               "transform": from_origin(0.0, float(pixels.shape[1]), 1.0, 1.0)}
    out = np.full(pixels.shape[1:], PROBABILITY_NODATA, np.float32)

    def sink(block, probability: np.ndarray) -> None:
        r0, r1, c0, c1 = block.core
        out[r0:r1, c0:c1] = probability

    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(pixels)
        predict_scene(memory.name, checkpoint.path, sink, options, checkpoint=checkpoint)
    if scale != 1.0:
        valid = out >= 0
        back = resize_image_bilinear(np.where(valid, out, 0.0)[None], (height, width))[0]
        weight = resize_image_bilinear(valid.astype(np.float32)[None], (height, width))[0]
        out = np.where(weight > 1e-3, back / np.maximum(weight, 1e-3), PROBABILITY_NODATA).astype(np.float32)
    return out


def evaluate_chips_mapping(checkpoint: Checkpoint, chips: list[Chip], options: InferenceOptions, *,
                           colour: tuple[int, ...] | None = None, gsd_m: float | None = None,
                           model_gsd_m: float | None = None, threshold: float | None = None,
                           progress: bool = True, on_chip: Callable | None = None, source: str = "",
                           masks_dir: Path | None = None) -> dict:
    """Score ``chips`` through the mapping predictor; metrics plus provenance (see module doc)."""
    import time

    from lsmap.progress import progress_bar

    parse_tta(options.tta)  # a bad --tta fails before any chip is read
    scale = resample_scale(checkpoint, gsd_m, model_gsd_m)
    check_evaluation_chips(checkpoint, chips, colour, masks_dir)
    threshold = float(threshold if threshold is not None else checkpoint.extra.get("threshold", 0.5))
    options = dataclasses.replace(options, progress=False)
    meter = SegmentationMeter()
    started = time.perf_counter()
    with progress_bar(len(chips), f"evaluate {checkpoint.model_name}", "chip", progress) as bar:
        for chip in chips:
            image, label, nodata = load_labelled_chip(chip, colour)
            probability = chip_probability(checkpoint, image, nodata, options, scale)
            prediction = (probability > threshold).astype(np.uint8)
            label[probability < 0] = IGNORE  # nodata in the scene stays out of every metric
            meter.update(prediction, label)
            if on_chip is not None:
                on_chip(chip.name, np.clip(probability, 0, 1), label)
            bar.update()
    device = pick_device(options.device)
    dtype = autocast_dtype(device, options.precision)
    return {"model": checkpoint.model_name, "checkpoint": str(checkpoint.path), "source": source,
            "n_chips": len(chips), "device": str(device), "precision": str(dtype).replace("torch.", "") if dtype else "fp32",
            "epoch": checkpoint.epoch, "predictor": "mapping", "tile_size": options.tile_size,
            "overlap_px": options.overlap_px, "tta": "+".join(parse_tta(options.tta)), "threshold": threshold,
            "mask_colour": list(colour) if colour is not None else None, "gsd_m": gsd_m,
            "model_gsd_m": model_gsd_m if model_gsd_m is not None else checkpoint.extra.get("gsd_m"),
            "resample_scale": scale, "seconds": round(time.perf_counter() - started, 2), **meter.summary()}


# ----------------------------------------------------------------------------------------------
# Outputs


def _pct(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def markdown_table(metrics: dict) -> str:
    """One evaluation as a Markdown table (percent), with what it was run on above it."""
    lines = [f"# Evaluation of {metrics['model']}", "",
             f"- checkpoint: `{metrics['checkpoint']}` (epoch {metrics.get('epoch')})",
             f"- chips: {metrics.get('source') or metrics.get('split')}, {metrics['n_chips']} chips",
             f"- predictor: {metrics.get('predictor')}"
             + (f", tiles {metrics['tile_size']} px, overlap {metrics['overlap_px']} px, TTA {metrics['tta']}, "
                f"threshold {metrics['threshold']}" if metrics.get("predictor") == "mapping"
                else f", TTA {metrics.get('tta', 'identity')}"),
             f"- device: {metrics['device']}" + (f" ({metrics['precision']})" if metrics.get("precision") else "")]
    if metrics.get("resample_scale", 1.0) != 1.0:
        lines.append(f"- resampled: chips at {metrics['gsd_m']} m to the model's {metrics['model_gsd_m']} m "
                     f"(x{metrics['resample_scale']:.3f})")
    lines += ["", "| protocol | mIoU | IoU landslide | precision landslide | recall landslide | F1 landslide | IoU background | PA |",
              "|---|---|---|---|---|---|---|---|"]
    for name, prefix in (("whole set", "global_"), ("per chip (paper)", "perchip_")):
        get = lambda key: metrics.get(prefix + key)  # noqa: E731
        lines.append(f"| {name} | {_pct(get('miou'))} | {_pct(get('iou_landslide'))} | {_pct(get('precision_landslide'))} | "
                     f"{_pct(get('recall_landslide'))} | {_pct(get('f1_landslide'))} | {_pct(get('iou_background'))} | "
                     f"{_pct(get('pa'))} |")
    return "\n".join(lines) + "\n"


def write_outputs(metrics: dict, json_path: Path) -> tuple[Path, Path]:
    """``json_path`` and the Markdown table beside it (same stem, ``.md``), both atomically."""
    json_path = Path(json_path)
    md_path = json_path.with_suffix(".md")
    with atomic_output(json_path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    with atomic_output(md_path) as tmp:
        tmp.write_text(markdown_table(metrics))
    return json_path, md_path


def build_parser(parser: argparse.ArgumentParser) -> None:
    defaults = InferenceOptions()
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, help="dataset folder in the paper layout (with --split)")
    parser.add_argument("--split", choices=("Train", "Valid", "Test"), default="Test")
    parser.add_argument("--images", type=Path, help="folder of image chips (instead of --dataset)")
    parser.add_argument("--masks", type=Path, help="folder of masks with the images' stems (with --images)")
    parser.add_argument("--mask-colour", "--mask-color", dest="mask_colour",
                        help="landslide colour of RGB (or class-index) masks, e.g. 255,0,0 (default: 0/255 or 0/1 masks)")
    parser.add_argument("--predictor", choices=PREDICTORS,
                        help="mapping: lsmap map's tiling and blending (default for --images and --tta); "
                             "chips: whole chips in one pass (default for --dataset)")
    parser.add_argument("--tta", help="test-time augmentation: flip, flips, 8 or lsmap.tta names (quarter turns need "
                        "square inputs: --predictor mapping, or chips of a resize-policy checkpoint)")
    parser.add_argument("--tile-size", type=int, default=defaults.tile_size, help=f"mapping predictor (default {defaults.tile_size})")
    parser.add_argument("--overlap", type=int, dest="overlap_px", default=defaults.overlap_px,
                        help=f"mapping predictor (default {defaults.overlap_px})")
    parser.add_argument("--gsd-m", type=float, help="ground sampling distance of the chips (m): resample them to the model's")
    parser.add_argument("--model-gsd-m", type=float, help="the model's training GSD (m), when the checkpoint records none")
    parser.add_argument("--threshold", type=float, help="probability threshold (default: the checkpoint's, 0.5)")
    parser.add_argument("--model", help="fail unless the checkpoint holds this model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the metrics as JSON here and a Markdown table beside it (.md)")


def run(args: argparse.Namespace) -> int:
    if (args.images is None) != (args.masks is None):
        raise LsmapError("--images and --masks go together (a folder of chips and a folder of their masks)")
    if (args.dataset is None) == (args.images is None):
        raise LsmapError("give either --dataset (paper layout) or --images and --masks")
    predictor = args.predictor or ("chips" if args.dataset is not None and args.tta is None and args.gsd_m is None
                                   else "mapping")
    inference = InferenceOptions(tile_size=args.tile_size, overlap_px=args.overlap_px, device=args.device,
                                 precision=args.precision, batch_size=max(args.batch_size, 1), tta=args.tta,
                                 progress=False)
    common = dict(predictor=predictor, inference=inference, gsd_m=args.gsd_m, model_gsd_m=args.model_gsd_m,
                  threshold=args.threshold, expect_model=args.model, progress=sys.stderr.isatty())
    if args.dataset is not None:
        if args.mask_colour:
            raise LsmapError("--mask-colour applies to --masks folders; a dataset's labels are 0/255 already")
        metrics = evaluate_checkpoint(args.checkpoint, args.dataset, args.split, device=args.device,
                                      precision=args.precision, batch_size=args.batch_size, **common)
    else:
        metrics = evaluate_folder(args.checkpoint, args.images, args.masks, colour=parse_colour(args.mask_colour), **common)
    if args.out:
        write_outputs(metrics, args.out)
    print(json.dumps(metrics, indent=2))
    return 0
