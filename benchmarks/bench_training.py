"""Training throughput: chip loading (decode + crop + augment) and optimiser steps per second.

    .venv/bin/python benchmarks/bench_training.py [--model improved_deeplabv3plus] [--backbone resnet18]
        [--input-size 256] [--batch-size 8] [--steps 3] [--device auto]

Prints chips/s for the training loader on the real Bijie chips (../shared/data/bijie, read in
place through a temporary paper-layout of symlinks) and images/s for forward + backward + Adam
steps of the model on random input. Targets: loading must outrun the model step (else raise
num_workers), and a 100-epoch paper run (703 chips/epoch) should fit a working day on one GPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from lsmap.data import IMAGE_DIR, LABEL_DIR, ChipDataset, list_chips, make_loader
from lsmap.device import pick_device
from lsmap.losses import build_loss
from lsmap.models import build_model
from lsmap.train import training_precision

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


def step_rate(model_name: str, backbone: str, input_size: int, batch_size: int, steps: int, device: torch.device) -> float:
    options = {"fusion": "gated"} if model_name == "improved_deeplabv3plus" else {}
    model = build_model(model_name, 3, 1, backbone, "none", **options).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    loss_fn = build_loss("iou")
    dtype = training_precision(device, True)
    images = torch.randn(batch_size, 3, input_size, input_size, device=device)
    labels = (torch.rand(batch_size, input_size, input_size, device=device) > 0.9).to(torch.uint8)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(images)
        loss = loss_fn(logits.float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="improved_deeplabv3plus")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    print(f"loading: {loading_rate(args.input_size, args.batch_size):.1f} chips/s "
          f"(Bijie PNG, {args.input_size} px crops, flips/rotations/jitter, 1 process)")
    rate = step_rate(args.model, args.backbone, args.input_size, args.batch_size, args.steps, device)
    print(f"training: {rate:.2f} images/s ({args.model}/{args.backbone}, {args.input_size} px, batch {args.batch_size}); "
          f"one paper epoch of 703 chips = {703 / rate / 60:.1f} min")


if __name__ == "__main__":
    main()
