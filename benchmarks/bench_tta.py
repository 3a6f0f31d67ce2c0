"""Cost of test-time augmentation: tiles/s of the mapping model with and without ``--tta``.

    .venv/bin/python benchmarks/bench_tta.py [--checkpoint best.pt] [--tile-size 512] [--batch-size 2]
        [--batches 2] [--rounds 2] [--tta none flip flips 8]

Times :class:`lsmap.predict.TileModel` (what ``lsmap map`` runs per batch: autocast at the
mapping precision, sigmoid, copy to host) on random normalised tiles, one variant after the other
in ``rounds`` so that load from other processes hits every variant alike; prints the median
tiles/s per variant and its ratio to no TTA. Without ``--checkpoint`` a random improved
DeepLabV3+/ResNet18 is used (the cost does not depend on the weights). The gain of TTA is
measured with ``lsmap evaluate --tta`` (see the README).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lsmap.checkpoint import Checkpoint, InputSpec, load_checkpoint, save_checkpoint
from lsmap.predict import TileModel
from lsmap.tta import parse_tta


def random_checkpoint(path: Path) -> Path:
    from lsmap.models import build_model

    torch.manual_seed(0)
    kwargs = dict(in_channels=3, num_classes=1, backbone="resnet18", fusion="gated", rgb_channels=[0, 1, 2])
    model = build_model("improved_deeplabv3plus", **kwargs)
    spec = InputSpec(["red", "green", "blue"], [100.0] * 3, [50.0] * 3, 256)
    return save_checkpoint(Checkpoint("improved_deeplabv3plus", kwargs, model.state_dict(), spec), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--batches", type=int, default=2, help="timed batches per variant and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tta", nargs="+", default=["none", "flip", "flips", "8"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint or random_checkpoint(Path(tmp) / "model.pt")
        checkpoint = load_checkpoint(path)
        models = {spec: TileModel(checkpoint, args.device, args.precision, tta=spec) for spec in args.tta}
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((args.batch_size, checkpoint.input.in_channels, args.tile_size, args.tile_size),
                                dtype=np.float32)
    any_model = next(iter(models.values()))
    print(f"{checkpoint.model_name}/{checkpoint.model_kwargs.get('backbone')}, {args.tile_size} px tiles, batch "
          f"{args.batch_size}, {any_model.device} ({str(any_model.dtype).replace('torch.', '') if any_model.dtype else 'fp32'}), "
          f"torch threads {torch.get_num_threads()}")
    for model in models.values():
        model(model.as_input(batch))  # warm-up
    rates: dict[str, list[float]] = {spec: [] for spec in models}
    for _ in range(args.rounds):
        for spec, model in models.items():
            for _ in range(args.batches):
                started = time.perf_counter()
                model(model.as_input(batch))
                rates[spec].append(args.batch_size / (time.perf_counter() - started))
    base = statistics.median(rates[args.tta[0]])
    print("| TTA | views | tiles/s (median) | relative to first |")
    print("|---|---|---|---|")
    for spec, values in rates.items():
        median = statistics.median(values)
        print(f"| {spec} | {len(parse_tta(spec))} | {median:.3f} | {median / base:.2f} |")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
