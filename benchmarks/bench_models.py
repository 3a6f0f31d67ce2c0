"""Parameter count and CPU forward time per 512x512 tile for each of the five models.

    nice -n 10 .venv/bin/python benchmarks/bench_models.py [--backbone resnet50] [--repeats 3]

Batch 1, fp32, eval mode, torch.no_grad, one warm-up forward then the mean of ``--repeats``
timed forwards; then the same under bf16 autocast when lsmap.device.autocast_dtype picks bf16 for
this CPU (native AVX512-BF16/AMX). segnet always uses its VGG16-BN encoder.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from lsmap.device import autocast_dtype
from lsmap.models import MODEL_NAMES, build_model, count_parameters, encoder_name


def mean_forward_seconds(model: torch.nn.Module, x: torch.Tensor, repeats: int, dtype: torch.dtype | None) -> float:
    context = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with torch.no_grad(), context:
        model(x)  # warm-up: oneDNN primitive creation, allocator growth
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
        return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--tile", type=int, default=512, help="tile side in pixels (default 512)")
    parser.add_argument("--in-channels", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    args = parser.parse_args()

    low_precision = autocast_dtype(torch.device("cpu"), "auto")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"tile {args.in_channels}x{args.tile}x{args.tile}, batch 1, {args.repeats} repeats after 1 warm-up; "
          f"autocast picks {low_precision or 'fp32 only'}")
    columns = ["model", "encoder", "params_M", "fp32_s_per_tile"] + (["bf16_s_per_tile"] if low_precision else [])
    print("\t".join(columns))
    torch.manual_seed(0)
    x = torch.randn(1, args.in_channels, args.tile, args.tile)
    for name in args.models:
        model = build_model(name, args.in_channels, backbone=args.backbone).eval()
        row = [name, encoder_name(name, args.backbone), f"{count_parameters(model) / 1e6:.2f}",
               f"{mean_forward_seconds(model, x, args.repeats, None):.3f}"]
        if low_precision:
            row.append(f"{mean_forward_seconds(model, x, args.repeats, low_precision):.3f}")
        print("\t".join(row), flush=True)


if __name__ == "__main__":
    main()
