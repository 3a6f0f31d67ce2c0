"""Training speed: chip loading, optimiser steps per precision, epoch time and accuracy, five models.

    .venv/bin/python benchmarks/bench_training.py steps  [--model improved_deeplabv3plus] [--backbone resnet18]
        [--input-size 160] [--batch-size 8] [--steps 4] [--rounds 2]
    .venv/bin/python benchmarks/bench_training.py epochs [--epochs 3] [--steps-per-epoch 8] [--input-size 128]
        [--val-max-chips 24] [--size-policy crop] [--optimizer adam] [--weight-decay 0] [--seeds 42 43] [--out DIR]
    .venv/bin/python benchmarks/bench_training.py recipe --config configs/cpu_bijie_recipe.yaml [--steps 20]
    .venv/bin/python benchmarks/bench_training.py models [--input-size 160] [--batch-size 8] [--steps 2]
    .venv/bin/python benchmarks/bench_training.py loading [--input-size 160] [--batch-size 8]

``steps``: seconds per forward + backward + Adam step on random input in fp32 (the path before
bf16 training), bf16 autocast, and bf16 + channels_last, interleaved in ``rounds`` so that load
from other processes hits all three alike; median per variant. ``epochs``: two real training
runs on the Bijie chips (../shared/data/bijie, imported into a temporary dataset), identical but
for the precision (``amp`` off = fp32, on = what ``lsmap train`` does), at equal epochs; prints
the mean epoch time and the final whole-split validation IoU/mIoU of each, per seed (``--seeds``),
then the mean over seeds. ``recipe``: the idle-equivalent time of a training profile (a YAML with a
``training:``/``model:`` section, e.g. configs/cpu_bijie_recipe.yaml) without running all of it:
``--steps`` timed training steps with the profile's settings (data loading included) and one
validation pass, extrapolated to the profile's epochs x steps_per_epoch; wall and CPU seconds. ``models``: samples/s
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

PROJECT = Path(__file__).resolve().parents[1]
BIJIE = PROJECT / ".." / "shared" / "data" / "bijie"


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


def bijie_dataset(work: Path) -> Path:
    """The Bijie chips imported (once) under ``work``."""
    from lsmap.dataset import import_dataset

    dataset = work / "bijie"
    if not (dataset / "dataset.json").is_file():
        import_dataset(BIJIE / "images", BIJIE / "masks", dataset, splits_dir=BIJIE / "splits")
    return dataset


def compare_epochs(args, device: torch.device) -> None:
    work = Path(args.out or tempfile.mkdtemp(prefix="bench_training_"))
    dataset = bijie_dataset(work)
    base = TrainConfig(model_name=args.model, backbone=args.backbone, input_size=args.input_size,
                       size_policy=args.size_policy, batch_size=args.batch_size, epochs=args.epochs,
                       steps_per_epoch=args.steps_per_epoch, val_max_chips=args.val_max_chips, lr=1e-3,
                       optimizer=args.optimizer, weight_decay=args.weight_decay, lr_schedule="cosine",
                       loss=args.loss, num_workers=0, device=str(device), progress=False, eval_batch_size=8)
    rows = []
    for seed in args.seeds:  # seeds outer, precisions inner: a change of load hits both precisions alike
        for label, amp in (("fp32", False), ("autocast (lsmap train default)", True)):
            out = work / f"{'amp' if amp else 'fp32'}_seed{seed}"
            config = dataclasses.replace(base, amp=amp, seed=seed)
            started, cpu_started = time.perf_counter(), time.process_time()
            train(config, dataset, out)
            seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
            history = torch.load(out / "last.pt", weights_only=True)["extra"]["history"]
            epoch_s = statistics.mean(row["seconds"] for row in history)
            rows.append((label, seed, epoch_s, seconds, cpu_s, history[-1]["val_iou_landslide"], history[-1]["val_miou"]))
    print(f"{args.model}/{args.backbone}: {args.epochs} epochs x {args.steps_per_epoch} steps of {args.batch_size} "
          f"({args.input_size} px, size_policy {args.size_policy}), {args.optimizer} lr 1e-3 cosine, {args.loss}, "
          f"validation on {args.val_max_chips or 'all'} chips, {device}")
    print("| precision | seed | s/epoch (train + validation) | total s | CPU s | val IoU landslide | val mIoU |")
    print("|---|---|---|---|---|---|---|")
    for label, seed, epoch_s, seconds, cpu_s, iou, miou in rows:
        print(f"| {label} | {seed} | {epoch_s:.1f} | {seconds:.0f} | {cpu_s:.0f} | {100 * iou:.1f} | {100 * miou:.1f} |")
    for label in dict.fromkeys(row[0] for row in rows):
        ious = [100 * row[5] for row in rows if row[0] == label]
        mious = [100 * row[6] for row in rows if row[0] == label]
        print(f"| {label} | mean of {len(ious)} | | | | {statistics.mean(ious):.1f} (range {min(ious):.1f}-{max(ious):.1f}) "
              f"| {statistics.mean(mious):.1f} |")


def recipe_config(profiles: list[Path], model_name: str, device: torch.device) -> TrainConfig:
    """TrainConfig of config.yaml with the profile YAMLs merged over it in order (as snakemake --configfile)."""
    from lsmap.train import merged_workflow_config

    config = merged_workflow_config([PROJECT / "config.yaml", *profiles])
    return TrainConfig.from_workflow_config(config, model_name, device=str(device), progress=False, num_workers=0)


def time_recipe(args, device: torch.device) -> None:
    """Idle-equivalent time of a profile: a few of its training steps and one validation pass, extrapolated."""
    from lsmap.data import normalisation_stats
    from lsmap.evaluate import predict_loader
    from lsmap.train import _val_subset, make_optimizer, model_kwargs_for, train_one_epoch, uses_channels_last

    config = recipe_config(args.config, args.model, device)
    dataset = bijie_dataset(Path(args.out or tempfile.mkdtemp(prefix="bench_recipe_")))
    amp_dtype = training_precision(device, config.amp)
    channels_last = uses_channels_last(config, amp_dtype)
    train_chips, val_chips = list_chips(dataset, "Train"), list_chips(dataset, "Valid")
    mean, std = normalisation_stats(train_chips)
    model = build_model(config.model_name, pretrained="none", **model_kwargs_for(config, ["red", "green", "blue"]))
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    optimizer = make_optimizer(config, model)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    loss_fn = build_loss(config.loss)
    train_set = ChipDataset(train_chips, mean, std, input_size=config.input_size, size_policy=config.size_policy,
                            train=True, seed=config.seed)
    val_set = ChipDataset(_val_subset(val_chips, config.val_max_chips, config.seed), mean, std,
                          input_size=config.input_size, size_policy=config.size_policy, train=False)
    steps_per_epoch = config.steps_per_epoch or -(-len(train_set) // config.batch_size)

    def timed(function) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        return time.perf_counter() - wall, time.process_time() - cpu

    def steps(count: int, epoch: int):
        train_set.set_epoch(epoch)
        loader = make_loader(train_set, batch_size=config.batch_size, num_workers=0, shuffle_seed=epoch)
        return lambda: train_one_epoch(model, loader, optimizer, loss_fn, device, amp_dtype, scaler, count,
                                       False, "timing", channels_last)

    timed(steps(2, 0))  # warm-up: oneDNN primitives, allocator
    train_wall, train_cpu = timed(steps(args.steps, 1))
    val_loader = make_loader(val_set, batch_size=config.eval_batch_size, num_workers=0)
    val_wall, val_cpu = timed(lambda: predict_loader(model, val_loader, device, amp_dtype=amp_dtype, loss_fn=loss_fn))
    step_wall, step_cpu = train_wall / args.steps, train_cpu / args.steps
    total_steps = config.epochs * steps_per_epoch
    total_wall = total_steps * step_wall + config.epochs * val_wall
    total_cpu = total_steps * step_cpu + config.epochs * val_cpu
    precision = str(amp_dtype)[6:] if amp_dtype else "fp32"
    print(f"profile {' + '.join(str(p) for p in args.config)}: {config.model_name}/{config.backbone}, "
          f"{config.input_size} px {config.size_policy}, batch {config.batch_size}, {precision}"
          f"{' channels_last' if channels_last else ''}, {config.epochs} epochs x {steps_per_epoch} steps "
          f"= {total_steps} steps, validation on {len(val_set)} chips per epoch")
    print(f"  training: {step_wall:.2f} s/step wall, {step_cpu:.2f} CPU s/step (mean of {args.steps} steps, "
          f"data loading included)")
    print(f"  validation pass: {val_wall:.1f} s wall, {val_cpu:.1f} CPU s")
    print(f"  whole profile extrapolated: {total_wall / 60:.1f} min wall, {total_cpu / 60:.1f} CPU min "
          f"({total_cpu / 120:.1f} min if the process had 2 cores to itself)")


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
    parser.add_argument("what", choices=("steps", "epochs", "models", "loading", "recipe"))
    parser.add_argument("--model", default="improved_deeplabv3plus")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--input-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=8)
    parser.add_argument("--val-max-chips", type=int, default=24)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="epochs: one pair of runs per seed")
    parser.add_argument("--size-policy", default="crop", choices=("crop", "resize"))
    parser.add_argument("--optimizer", default="adam", choices=("adam", "adamw", "sgd"))
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--loss", default="bce_iou")
    parser.add_argument("--config", type=Path, nargs="+", help="recipe: profile YAML(s), merged over config.yaml in order")
    parser.add_argument("--out", type=Path, help="epochs: work folder (default: a new temporary folder)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    if args.what == "steps":
        compare_steps(args, device)
    elif args.what == "epochs":
        compare_epochs(args, device)
    elif args.what == "recipe":
        if not args.config:
            parser.error("recipe needs --config PROFILE.yaml")
        time_recipe(args, device)
    elif args.what == "models":
        model_rates(args, device)
    else:
        print(f"loading: {loading_rate(args.input_size, args.batch_size):.1f} chips/s "
              f"(Bijie PNG, {args.input_size} px crops, flips/rotations/jitter, 1 process)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
