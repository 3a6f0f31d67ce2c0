"""Training speed: chip loading, optimiser steps per precision, epoch time and accuracy, five models.

    .venv/bin/python benchmarks/bench_training.py steps  [--model improved_deeplabv3plus] [--backbone resnet18]
        [--input-size 160] [--batch-size 8] [--steps 4] [--rounds 2]
    .venv/bin/python benchmarks/bench_training.py epochs [--epochs 3] [--steps-per-epoch 8] [--input-size 128]
        [--val-max-chips 24] [--out DIR]
    .venv/bin/python benchmarks/bench_training.py models [--input-size 160] [--batch-size 8] [--steps 2]
    .venv/bin/python benchmarks/bench_training.py loading [--input-size 160] [--batch-size 8]

``steps``: seconds per forward + backward + Adam step on random input in fp32 (the path before
bf16 training), bf16 autocast, and bf16 + channels_last, interleaved in ``rounds`` so that load
from other processes hits all three alike; median per variant. ``epochs``: two real training
runs on the Bijie chips (../shared/data/bijie, imported into a temporary dataset), identical but
for the precision (``amp`` off = fp32, on = what ``lsmap train`` does), at equal epochs; prints
the mean epoch time and the final whole-split validation IoU/mIoU of each. ``models``: samples/s
of the five models with the training precision of this machine. ``loading``: chips/s of the
training loader (decode + crop + augment, one process). Peak RSS is printed at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lsmap.data import IMAGE_DIR, LABEL_DIR, ChipDataset, list_chips, make_loader
from lsmap.device import pick_device
from lsmap.losses import build_loss
from lsmap.models import MODEL_NAMES, build_model
from lsmap.train import TrainConfig, train, training_precision

BIJIE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bijie"


def loading_rate(input_size: int, batch_size: int, chips: int = 96) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        for sub in (IMAGE_DIR, LABEL_DIR):
            (Path(tmp) / "Train" / sub).mkdir(parents=True)
        for image in sorted((BIJIE / "images").glob("*.png"))[:chips]:
            (Path(tmp) / "Train" / IMAGE_DIR / image.name).symlink_to(image.resolve())
            (Path(tmp) / "Train" / LABEL_DIR / image.name).symlink_to((BIJIE / "masks" / image.name).resolve())
        dataset = ChipDataset(list_chips(Path(tmp), "Train"), [100.0] * 3, [50.0] * 3, input_size=input_size, train=True)
        started = time.perf_counter()
        for _ in make_loader(dataset, batch_size=batch_size, num_workers=0, shuffle_seed=0):
            pass
        return len(dataset) / (time.perf_counter() - started)


class StepTimer:
    """One model + Adam at one precision/layout; ``step()`` returns its wall seconds."""

    def __init__(self, model_name: str, backbone: str, input_size: int, batch_size: int, device: torch.device,
                 dtype: torch.dtype | None, channels_last: bool):
        options = {"fusion": "gated"} if model_name == "improved_deeplabv3plus" else {}
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = build_model(model_name, 3, 1, backbone, "none", **options).to(device, memory_format=fmt).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), 1e-4)
        self.loss_fn = build_loss("iou")
        self.device, self.dtype = device, dtype
        self.images = torch.randn(batch_size, 3, input_size, input_size, device=device).contiguous(memory_format=fmt)
        self.labels = (torch.rand(batch_size, input_size, input_size, device=device) > 0.9).to(torch.uint8)

    def step(self) -> float:
        self.cpu_started = time.process_time()
        started = time.perf_counter()
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            logits = self.model(self.images)
        loss = self.loss_fn(logits.float(), self.labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.last_cpu_s = time.process_time() - self.cpu_started  # all threads of this process
        return time.perf_counter() - started


def compare_steps(args, device: torch.device) -> None:
    low = training_precision(device, True)
    variants = {"fp32": (None, False)}
    if low is not None:
        variants[f"{str(low)[6:]}"] = (low, False)
        variants[f"{str(low)[6:]} + channels_last"] = (low, True)
    timers = {name: StepTimer(args.model, args.backbone, args.input_size, args.batch_size, device, dtype, cl)
              for name, (dtype, cl) in variants.items()}
    for timer in timers.values():
        timer.step()  # warm-up: oneDNN primitive creation
    times = {name: [] for name in timers}
    cpu = {name: [] for name in timers}
    for _ in range(args.rounds):  # interleaved: a burst of load from other processes hits every variant
        for name, timer in timers.items():
            for _ in range(args.steps):
                times[name].append(timer.step())
                cpu[name].append(timer.last_cpu_s)
    base, base_cpu = statistics.median(times["fp32"]), statistics.median(cpu["fp32"])
    print(f"{args.model}/{args.backbone}, batch {args.batch_size}, {args.input_size} px, {device}:")
    print("  (CPU s = seconds of CPU over all threads: what the step costs, whatever share of the cores it got)")
    for name, values in times.items():
        median, median_cpu = statistics.median(values), statistics.median(cpu[name])
        print(f"  {name:<24} {median:6.2f} s/step wall (median of {len(values)}; min {min(values):.2f}), "
              f"{median_cpu:6.2f} CPU s/step  {args.batch_size / median:6.2f} samples/s  "
              f"x{base / median:.2f} wall, x{base_cpu / median_cpu:.2f} CPU vs fp32")


def compare_epochs(args, device: torch.device) -> None:
    from lsmap.dataset import import_dataset

    work = Path(args.out or tempfile.mkdtemp(prefix="bench_training_"))
    dataset = work / "bijie"
    if not (dataset / "dataset.json").is_file():
        import_dataset(BIJIE / "images", BIJIE / "masks", dataset, splits_dir=BIJIE / "splits")
    base = TrainConfig(model_name=args.model, backbone=args.backbone, input_size=args.input_size, size_policy="crop",
                       batch_size=args.batch_size, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                       val_max_chips=args.val_max_chips, lr=1e-3, lr_schedule="cosine", loss="bce_iou",
                       num_workers=0, device=str(device), progress=False, seed=args.seed)
    rows = []
    for label, amp in (("fp32", False), ("autocast (lsmap train default)", True)):
        out = work / ("fp32" if not amp else "amp")
        config = dataclasses.replace(base, amp=amp)
        started = time.perf_counter()
        train(config, dataset, out)
        seconds = time.perf_counter() - started
        history = torch.load(out / "last.pt", weights_only=True)["extra"]["history"]
        epoch_s = statistics.mean(row["seconds"] for row in history)
        rows.append((label, epoch_s, seconds, history[-1]["val_iou_landslide"], history[-1]["val_miou"]))
    print(f"{args.model}/{args.backbone}: {args.epochs} epochs x {args.steps_per_epoch} steps of {args.batch_size} "
          f"({args.input_size} px crops), validation on {args.val_max_chips} chips, seed {args.seed}, {device}")
    print("| precision | s/epoch (train + validation) | total s | val IoU landslide | val mIoU |")
    print("|---|---|---|---|---|")
    for label, epoch_s, seconds, iou, miou in rows:
        print(f"| {label} | {epoch_s:.1f} | {seconds:.0f} | {100 * iou:.1f} | {100 * miou:.1f} |")


def model_rates(args, device: torch.device) -> None:
    dtype = training_precision(device, True)
    print(f"training precision on {device}: {str(dtype)[6:] if dtype else 'fp32'}, channels_last {dtype is not None}; "
          f"batch {args.batch_size}, {args.input_size} px, backbone {args.backbone} (SegNet: its VGG16-BN encoder)")
    print("| model | s/step (median, wall) | CPU s/step | samples/s (wall) | samples/s per 2 cores (CPU time) |")
    print("|---|---|---|---|---|")
    for name in MODEL_NAMES:
        timer = StepTimer(name, args.backbone, args.input_size, args.batch_size, device, dtype, dtype is not None)
        timer.step()
        walls, cpus = [], []
        for _ in range(args.steps):
            walls.append(timer.step())
            cpus.append(timer.last_cpu_s)
        median, median_cpu = statistics.median(walls), statistics.median(cpus)
        print(f"| {name} | {median:.2f} | {median_cpu:.2f} | {args.batch_size / median:.2f} | "
              f"{2 * args.batch_size / median_cpu:.2f} |", flush=True)
        del timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("steps", "epochs", "models", "loading"))
    parser.add_argument("--model", default="improved_deeplabv3plus")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--input-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=8)
    parser.add_argument("--val-max-chips", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="epochs: work folder (default: a new temporary folder)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    if args.what == "steps":
        compare_steps(args, device)
    elif args.what == "epochs":
        compare_epochs(args, device)
    elif args.what == "models":
        model_rates(args, device)
    else:
        print(f"loading: {loading_rate(args.input_size, args.batch_size):.1f} chips/s "
              f"(Bijie PNG, {args.input_size} px crops, flips/rotations/jitter, 1 process)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
