"""Training a segmentation model on a dataset in the paper's layout: ``lsmap train``.

Defaults are the paper's (Zhao et al. 2024, section 4.1): 256 px input, batch 8, 100 epochs,
Adam, lr 1e-4 held constant, IoU loss. One optimiser for the whole run; AMP (bf16, else fp16 with
loss scaling) on CUDA, bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX), else fp32; weights
and activations in ``channels_last`` wherever autocast runs; seeded, and deterministic where the
backend allows.

Writes into ``out_dir``: ``last.pt`` after every epoch (weights, optimiser and scheduler state,
history; a killed run resumes from it and continues the epoch count), ``best.pt`` (best
whole-split validation mIoU so far), ``history.csv`` and ``curves.png``. Every file is written
atomically. ``.best-keep.pt`` is a hard link to ``best.pt``: Snakemake deletes a rule's declared
outputs before re-running an interrupted job, and the link lets the resumed run restore the best
weights it had already found.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lsmap.checkpoint import Checkpoint, InputSpec, load_checkpoint, save_checkpoint
from lsmap.data import (SIZE_POLICIES, ChipDataset, band_names, check_chips, dataset_hash, list_chips,
                        make_loader, normalisation_stats, read_metadata, rgb_channels)
from lsmap.device import cpu_supports_bf16, pick_device
from lsmap.errors import LsmapError
from lsmap.evaluate import autocast_context, predict_loader
from lsmap.fileio import atomic_output
from lsmap.losses import LOSSES, build_loss

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_miou", "val_iou_landslide", "val_precision_landslide",
                   "val_recall_landslide", "val_f1_landslide", "val_pa", "val_miou_perchip", "lr", "seconds")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Everything a training run depends on; mirrors ``training:`` and ``model:`` of config.yaml.

    ``steps_per_epoch`` (None = one pass over Train) and ``val_max_chips`` (None = all of Valid;
    else a fixed seeded subset) exist to size short CPU runs; ``size_policy`` is explained in
    :mod:`lsmap.data`.
    """

    model_name: str = "improved_deeplabv3plus"
    backbone: str = "resnet50"
    pretrained: str = "none"  # paper: imagenet (needs the weights locally; nothing is downloaded)
    fusion: str = "gated"  # improved_deeplabv3plus only
    input_size: int = 256
    size_policy: str = "crop"
    batch_size: int = 8
    epochs: int = 100
    optimizer: str = "adam"
    lr: float = 1.0e-4
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    loss: str = "iou"
    seed: int = 42
    num_workers: int = 2
    device: str = "auto"
    amp: bool = True  # bf16/fp16 autocast where the device runs it natively (see training_precision)
    channels_last: bool = True  # NHWC weights/activations when autocast is on (faster bf16 kernels)
    deterministic: bool = True
    steps_per_epoch: int | None = None
    val_max_chips: int | None = None
    eval_batch_size: int = 1
    save_every: int = 1  # write last.pt every N epochs (and after the last); a resume restarts after it
    gsd_m: float | None = None  # ground sampling distance of the chips (None: dataset.json's gsd_m, if any)
    progress: bool = True

    def __post_init__(self) -> None:
        from lsmap.models import MODEL_NAMES

        checks = [
            (self.model_name in MODEL_NAMES, f"unknown model {self.model_name!r}: use one of {', '.join(MODEL_NAMES)}"),
            (self.loss in LOSSES, f"unknown loss {self.loss!r}: use one of {', '.join(LOSSES)}"),
            (self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}"),
            (self.lr_schedule in LR_SCHEDULES, f"unknown lr_schedule {self.lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}"),
            (self.size_policy in SIZE_POLICIES, f"unknown size_policy {self.size_policy!r}: use one of {', '.join(SIZE_POLICIES)}"),
            (self.epochs >= 1 and self.batch_size >= 1 and self.input_size >= 32, "epochs, batch_size >= 1 and input_size >= 32 required"),
        ]
        for ok, message in checks:
            if not ok:
                raise LsmapError(f"training config: {message}")

    @classmethod
    def from_workflow_config(cls, config: dict, model_name: str, **overrides) -> TrainConfig:
        """From the validated workflow config: ``training:`` plus the ``model:`` backbone/pretrained/fusion."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in config.get("training", {}).items() if k in fields}
        model = config.get("model", {})
        values.update({k: model[k] for k in ("backbone", "pretrained", "fusion") if k in model})
        values.update(overrides)
        return cls(model_name=model_name, **values)


# ----------------------------------------------------------------------------------------------
# Set-up


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; ask for deterministic kernels (warn only where none exists)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)
        # an op without a deterministic kernel (e.g. SegNet's max-unpooling) warns on every call
        warnings.filterwarnings("once", message=".*does not have a deterministic implementation.*")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def model_kwargs_for(config: TrainConfig, bands: list[str]) -> dict:
    """What ``build_model`` is given besides ``pretrained`` (stored in the checkpoint)."""
    kwargs = {"in_channels": len(bands), "num_classes": 1, "backbone": config.backbone,
              "rgb_channels": list(rgb_channels(bands))}
    if config.model_name == "improved_deeplabv3plus":
        kwargs["fusion"] = config.fusion
    return kwargs


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    """Stepped once per epoch; ``constant`` keeps the paper's fixed learning rate."""
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.lr * 0.01)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def training_precision(device: torch.device, enabled: bool) -> torch.dtype | None:
    """AMP dtype: on CUDA bf16 where supported, else fp16 (with loss scaling); on CPU bf16 where the
    CPU has native bf16 instructions, else None (fp32: emulated bf16 is slower than fp32).

    Autocast keeps the weights, the optimiser state and the loss in fp32; only the convolutions and
    matrix products run in bf16 (measured on Bijie, benchmarks/bench_training.py).
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_supports_bf16() else None


def uses_channels_last(config: TrainConfig, amp_dtype: torch.dtype | None) -> bool:
    """NHWC pays off with low-precision kernels (oneDNN bf16 on CPU, tensor cores on CUDA)."""
    return config.channels_last and amp_dtype is not None


def to_model_input(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def training_gsd_m(config: TrainConfig, dataset_dir: Path) -> float | None:
    """Metres per pixel of the training chips: the config's, else dataset.json's, else unknown (None).

    Recorded in the checkpoint so that ``lsmap evaluate --resample-to-model`` can bring chips of
    another resolution to the one the model learnt.
    """
    value = config.gsd_m if config.gsd_m is not None else read_metadata(dataset_dir).get("gsd_m")
    if value is None:
        return None
    if not (isinstance(value, (int, float)) and value > 0):
        raise LsmapError(f"{dataset_dir}: ground sampling distance must be a positive number of metres, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------------------------
# Resume


def _resume_state(out_dir: Path, config: TrainConfig, model_kwargs: dict, data_hash: str) -> Checkpoint | None:
    """``last.pt`` of an interrupted run of the same model on the same data, else None."""
    last = out_dir / "last.pt"
    if not last.exists():
        return None
    checkpoint = load_checkpoint(last)
    if checkpoint.model_name != config.model_name:
        raise LsmapError(f"{last}: checkpoint from another model ('{checkpoint.model_name}', this run trains "
                         f"'{config.model_name}'); use another --out")
    if checkpoint.model_kwargs != model_kwargs:
        raise LsmapError(f"{last}: checkpoint was built with {checkpoint.model_kwargs}, this run asks for "
                         f"{model_kwargs}; use another --out")
    if checkpoint.dataset_hash != data_hash:
        raise LsmapError(f"{last}: checkpoint was trained on another dataset (hash {checkpoint.dataset_hash[:12]}); "
                         "use another --out")
    if checkpoint.optimizer_state is None:
        raise LsmapError(f"{last}: checkpoint has no optimiser state, cannot resume")
    return checkpoint


def _restore_best(out_dir: Path) -> None:
    best, keep = out_dir / "best.pt", out_dir / ".best-keep.pt"
    if not best.exists() and keep.exists():
        os.link(keep, best)


def _save_best(checkpoint: Checkpoint, out_dir: Path) -> None:
    best, keep = out_dir / "best.pt", out_dir / ".best-keep.pt"
    save_checkpoint(checkpoint, best)
    keep_tmp = keep.with_name(f".best-keep.partial-{os.getpid()}.pt")
    keep_tmp.unlink(missing_ok=True)
    try:  # link beside, then rename over: there is always a keep link to some best
        os.link(best, keep_tmp)
        os.replace(keep_tmp, keep)
    except OSError:  # file systems without hard links: no protection, but training goes on
        keep_tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# Logs


def write_history(rows: list[dict], path: Path) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(rows: list[dict], path: Path, title: str) -> None:
    """Loss (train, validation) and validation mIoU / landslide IoU per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    epochs = [row["epoch"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    left.plot(epochs, [row["train_loss"] for row in rows], "o-", label="train")
    left.plot(epochs, [row["val_loss"] for row in rows], "s-", label="validation")
    left.set(xlabel="epoch", ylabel="loss", title="loss")
    right.plot(epochs, [row["val_miou"] for row in rows], "o-", label="mIoU (whole split)")
    right.plot(epochs, [row["val_iou_landslide"] for row in rows], "s-", label="IoU landslide")
    right.set(xlabel="epoch", ylabel="fraction", title="validation", ylim=(0, 1))
    for axis in (left, right):
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(title)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# The loop


def train_one_epoch(model, loader, optimizer, loss_fn, device, amp_dtype, scaler, steps: int | None,
                    progress: bool, desc: str, channels_last: bool = False) -> float:
    """One epoch (or ``steps`` batches); returns the mean training loss."""
    from tqdm import tqdm

    model.train()
    total = count = 0.0
    limit = min(len(loader), steps) if steps else len(loader)
    bar = tqdm(total=limit, desc=desc, unit="batch", disable=not progress, mininterval=10, leave=False)
    for step, batch in enumerate(loader):
        if step >= limit:
            break
        images = to_model_input(batch["image"], device, channels_last)
        labels = batch["label"].to(device, non_blocking=True)
        with autocast_context(device, amp_dtype):
            logits = model(images)
        loss = loss_fn(logits.float(), labels)
        if not torch.isfinite(loss):
            raise LsmapError(f"training diverged at {desc}, step {step}: loss is {float(loss)}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += float(loss.detach()) * len(images)
        count += len(images)
        bar.update(1)
        bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
    bar.close()
    return total / max(count, 1)


def _val_subset(chips: list, max_chips: int | None, seed: int) -> list:
    if not max_chips or max_chips >= len(chips):
        return chips
    keep = np.sort(np.random.default_rng(seed).choice(len(chips), size=max_chips, replace=False))
    return [chips[i] for i in keep]


def _score(value: float) -> float:
    return -1.0 if value is None or math.isnan(value) else float(value)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train(config: TrainConfig, dataset_dir: Path, out_dir: Path) -> Path:
    """Train ``config.model_name`` on ``dataset_dir`` (paper layout); returns the path of best.pt.

    Resumes from ``out_dir/last.pt`` when it exists (same model, arguments and dataset).
    """
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed, config.deterministic)
    device = pick_device(config.device)
    amp_dtype = training_precision(device, config.amp)

    train_chips, val_chips = list_chips(dataset_dir, "Train"), list_chips(dataset_dir, "Valid")
    n_bands = check_chips(train_chips)
    if (val_bands := check_chips(val_chips)) != n_bands:
        raise LsmapError(f"{dataset_dir / 'Valid'}: chips have {val_bands} bands but Train chips have {n_bands}")
    bands = band_names(dataset_dir, n_bands)
    data_hash = dataset_hash(dataset_dir)
    gsd_m = training_gsd_m(config, dataset_dir)
    model_kwargs = model_kwargs_for(config, bands)
    resume = _resume_state(out_dir, config, model_kwargs, data_hash)

    from lsmap.models import build_model

    if resume is not None:
        mean, std = resume.input.mean, resume.input.std
        model = build_model(config.model_name, pretrained="none", **model_kwargs)
        model.load_state_dict(resume.state_dict)
    else:
        mean, std = normalisation_stats(train_chips)
        model = build_model(config.model_name, pretrained=config.pretrained, **model_kwargs)
    channels_last = uses_channels_last(config, amp_dtype)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    optimizer = make_optimizer(config, model)  # created once: Adam's moments persist across epochs
    scheduler = make_scheduler(config, optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    history: list[dict] = []
    best = {"epoch": 0, "val_miou": -1.0}
    start_epoch = 1
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer_state)
        if resume.scheduler_state:
            scheduler.load_state_dict(resume.scheduler_state)
        if "torch_rng_state" in resume.extra:
            torch.set_rng_state(resume.extra["torch_rng_state"])
        history = [row for row in resume.extra.get("history", []) if row["epoch"] <= resume.epoch]
        best = dict(resume.extra.get("best", best))
        start_epoch = resume.epoch + 1
        _restore_best(out_dir)
        _log(f"resuming {config.model_name} from {out_dir / 'last.pt'} after epoch {resume.epoch}")

    input_spec = InputSpec(bands=bands, mean=list(mean), std=list(std), tile_size=config.input_size)
    train_set = ChipDataset(train_chips, mean, std, input_size=config.input_size, size_policy=config.size_policy,
                            train=True, seed=config.seed)
    val_set = ChipDataset(_val_subset(val_chips, config.val_max_chips, config.seed), mean, std,
                          input_size=config.input_size, size_policy=config.size_policy, train=False)
    val_loader = make_loader(val_set, batch_size=config.eval_batch_size, num_workers=config.num_workers)
    loss_fn = build_loss(config.loss)
    precision = str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32"
    _log(f"training {config.model_name} ({config.backbone}) on {device} in {precision}"
         f"{' channels_last' if channels_last else ''}: {len(train_set)} train / {len(val_set)} "
         f"validation chips, bands {bands}, epochs {start_epoch}..{config.epochs}")

    for epoch in range(start_epoch, config.epochs + 1):
        started = time.perf_counter()
        train_set.set_epoch(epoch)
        # a fresh, epoch-seeded loader: the same shuffle and augmentations after a resume
        train_loader = make_loader(train_set, batch_size=config.batch_size, num_workers=config.num_workers,
                                   shuffle_seed=config.seed * 1000 + epoch)
        lr = optimizer.param_groups[0]["lr"]
        train_loss = train_one_epoch(model, train_loader, optimizer, loss_fn, device, amp_dtype, scaler,
                                     config.steps_per_epoch, config.progress, f"epoch {epoch}/{config.epochs}",
                                     channels_last)
        val_loss, meter = predict_loader(model, val_loader, device, amp_dtype=amp_dtype, loss_fn=loss_fn,
                                         progress=config.progress, desc="validation")
        scheduler.step()
        val = meter.summary()
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_miou": val["global_miou"],
               "val_iou_landslide": val["global_iou_landslide"],
               "val_precision_landslide": val["global_precision_landslide"],
               "val_recall_landslide": val["global_recall_landslide"], "val_f1_landslide": val["global_f1_landslide"],
               "val_pa": val["global_pa"], "val_miou_perchip": val.get("perchip_miou", math.nan), "lr": lr,
               "seconds": round(time.perf_counter() - started, 2)}
        history.append(row)
        is_best = _score(row["val_miou"]) > best["val_miou"] or best["epoch"] == 0
        if is_best:
            best = {"epoch": epoch, "val_miou": _score(row["val_miou"])}
        checkpoint = Checkpoint(
            model_name=config.model_name, model_kwargs=model_kwargs,
            state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()}, input=input_spec, epoch=epoch,
            metrics={f"val_{k}": float(v) for k, v in val.items()}, training=dataclasses.asdict(config),
            dataset_hash=data_hash, optimizer_state=optimizer.state_dict(), scheduler_state=scheduler.state_dict(),
            extra={"size_policy": config.size_policy, "threshold": 0.5, "history": history, "best": best,
                   "torch_rng_state": torch.get_rng_state(), "dataset": str(dataset_dir),
                   "n_train_chips": len(train_set), "n_val_chips": len(val_set), "gsd_m": gsd_m},
        )
        if is_best:  # before last.pt records this epoch as best: a kill in between must not lose it
            _save_best(dataclasses.replace(checkpoint, optimizer_state=None, scheduler_state=None,
                                           extra={**checkpoint.extra, "torch_rng_state": None}), out_dir)
        if epoch % max(config.save_every, 1) == 0 or epoch == config.epochs:
            save_checkpoint(checkpoint, out_dir / "last.pt")  # ~3x the weights with Adam's moments: not free
        write_history(history, out_dir / "history.csv")
        plot_curves(history, out_dir / "curves.png", f"{config.model_name} ({config.backbone}, {config.loss} loss)")
        _log(f"epoch {epoch}/{config.epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
             f"val mIoU {row['val_miou']:.4f}, IoU landslide {row['val_iou_landslide']:.4f}"
             f"{' (best)' if is_best else ''}, {row['seconds']:.0f} s")

    if not (out_dir / "best.pt").exists():  # finished earlier; Snakemake may have removed it since
        _restore_best(out_dir)
    if not (out_dir / "history.csv").exists() and history:
        write_history(history, out_dir / "history.csv")
        plot_curves(history, out_dir / "curves.png", f"{config.model_name} ({config.backbone}, {config.loss} loss)")
    if not (out_dir / "best.pt").exists():
        raise LsmapError(f"{out_dir}: no best.pt after training (last.pt says epoch {resume.epoch if resume else 0})")
    return out_dir / "best.pt"


# ----------------------------------------------------------------------------------------------
# CLI


def build_parser(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--dataset", type=Path, required=True, help="dataset folder in the paper layout")
    parser.add_argument("--model", required=True, help="fcn, unet, segnet, deeplabv3plus or improved_deeplabv3plus")
    parser.add_argument("--out", type=Path, required=True, help="output folder (resumes from its last.pt)")
    parser.add_argument("--config", type=Path, nargs="+",
                        help="workflow config.yaml to take training:/model: defaults from; profiles after it "
                             "(e.g. config.yaml configs/cpu_bijie.yaml) override it key by key, as snakemake --configfile")
    for name, kind in (("epochs", int), ("batch_size", int), ("input_size", int), ("lr", float),
                       ("weight_decay", float), ("gsd_m", float), ("seed", int), ("num_workers", int), ("steps_per_epoch", int),
                       ("val_max_chips", int), ("eval_batch_size", int), ("save_every", int)):
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                            help=f"default {getattr(defaults, name)}")
    parser.add_argument("--loss", choices=list(LOSSES), default=None, help=f"default {defaults.loss}")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help=f"default {defaults.optimizer}")
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=None, help="default constant")
    parser.add_argument("--size-policy", choices=SIZE_POLICIES, default=None, help="default crop")
    parser.add_argument("--backbone", default=None, help=f"default {defaults.backbone}")
    parser.add_argument("--pretrained", default=None, help="none (default), imagenet or a local state-dict path")
    parser.add_argument("--fusion", choices=("gated", "se"), default=None, help="improved_deeplabv3plus only")
    parser.add_argument("--device", default=None, help="auto (default), cpu or cuda[:N]")
    parser.add_argument("--no-amp", action="store_true", help="train in fp32 (default: bf16 autocast on CUDA and on CPUs with native bf16)")
    parser.add_argument("--no-channels-last", action="store_true", help="keep NCHW memory layout under autocast")
    parser.add_argument("--no-progress", action="store_true")


def _merge_into(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge_into(base[key], value)
        else:
            base[key] = value
    return base


def merged_workflow_config(paths: list[Path]) -> dict:
    """The YAML files merged in order (later ones win, nested keys one by one), then validated."""
    import yaml

    from lsmap.config import validate_config

    merged: dict = {}
    for path in paths:
        try:
            part = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise LsmapError(f"{path}: cannot read configuration ({str(exc).splitlines()[0]})") from exc
        if not isinstance(part, dict):
            raise LsmapError(f"{path}: configuration must be a YAML mapping")
        _merge_into(merged, part)
    return validate_config(merged, " + ".join(str(path) for path in paths))


def run(args: argparse.Namespace) -> int:
    overrides = {name: getattr(args, name) for name in (
        "epochs", "batch_size", "input_size", "lr", "weight_decay", "seed", "num_workers", "steps_per_epoch",
        "val_max_chips", "eval_batch_size", "save_every", "gsd_m", "loss", "optimizer", "lr_schedule", "size_policy", "backbone",
        "pretrained", "fusion", "device") if getattr(args, name) is not None}
    if args.no_amp:
        overrides["amp"] = False
    if args.no_channels_last:
        overrides["channels_last"] = False
    overrides["progress"] = not args.no_progress
    if args.config:
        config = TrainConfig.from_workflow_config(merged_workflow_config(args.config), args.model, **overrides)
    else:
        config = TrainConfig(model_name=args.model, **overrides)
    best = train(config, args.dataset, args.out)
    print(best)
    return 0
