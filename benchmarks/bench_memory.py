"""Peak RSS of `lsmap map` on 10,000^2 and 20,000^2 4-band uint16 scenes (issue 4, benchmark 2).

Target: <= 2.5 GB, and the larger scene no more than 10 % above the smaller. Each size runs in a
fresh process (peak RSS = ru_maxrss of that process: reading, batches, blending, assembly, COG
writing, polygonising, statistics). Running a real model over 2,800 tiles takes hours on a CPU, so
the real model (default improved_deeplabv3plus/resnet50, batch 8, 512 px) runs only the first
``--real-batches`` batches, at the start when the prefetch queue and the first block are in
memory, so its activations count in the peak; later batches use a cheap stand-in with the same
output shape and blob-like landslides on ~1 % of the scene. Memory that scales with the scene lives in the pipeline, not in the model.

    .venv/bin/python benchmarks/bench_memory.py [--sizes 10000 20000] [--backbone resnet50]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


ZSTD = {"compress": "zstd", "zstd_level": 1}


def write_scene(path: Path, size: int, compression: dict = ZSTD) -> None:
    """A 4-band uint16 scene (tiled 512, UTM 2 m) with texture and a nodata corner, written block by
    block; ``compression``: its GTiff compression creation options (bench_feed uses DEFLATE)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(0)
    profile = dict(driver="GTiff", width=size, height=size, count=4, dtype="uint16", nodata=0, crs="EPSG:32648",
                   transform=from_origin(400000, 3500000, 2, 2), tiled=True, blockxsize=512, blockysize=512,
                   bigtiff="yes", **compression)
    base = np.array([500, 800, 700, 2800], np.uint16)[:, None, None]
    step = 2048
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size, step):
            for c in range(0, size, step):
                h, w = min(step, size - r), min(step, size - c)
                data = base + rng.integers(0, 400, (4, h, w), dtype=np.uint16)
                rr, cc = np.mgrid[r:r + h, c:c + w]
                data[:, rr + cc < size // 8] = 0  # a nodata corner, as after orthorectification
                dst.write(data, window=Window(c, r, w, h))


def child(scene: Path, out: Path, model_name: str, backbone: str, real_batches: int, batch_size: int, precision: str) -> None:
    import torch

    import lsmap.predict as predict
    from lsmap.checkpoint import Checkpoint, InputSpec, save_checkpoint
    from lsmap.mapping import MappingOptions, map_scene
    from lsmap.models import build_model

    torch.manual_seed(0)
    kwargs = dict(in_channels=4, num_classes=1, backbone=backbone)
    spec = InputSpec(["blue", "green", "red", "nir"], [700.0, 1000.0, 900.0, 3000.0], [120.0] * 4, 512)
    checkpoint = save_checkpoint(Checkpoint(model_name, kwargs, build_model(model_name, **kwargs).state_dict(), spec), out / "model.pt")
    real_call = predict.TileModel.probabilities  # the engine's forward (device tensors)
    calls = {"n": 0}

    def first_batches_real(self, x):
        calls["n"] += 1
        if calls["n"] <= real_batches:
            return real_call(self, x)
        # cheap stand-in with the same (B, H, W) float32 output and a realistic map: blobs of ~15 px
        # covering ~1 % of the scene (local means of the NIR noise far above average)
        pooled = torch.nn.functional.avg_pool2d(x[:, 3:4], 15, stride=1, padding=7)[:, 0]
        spread = pooled.std()
        return torch.sigmoid((pooled - 2.3 * spread) / (0.1 * spread))

    predict.TileModel.probabilities = first_batches_real
    started = time.perf_counter()
    outputs = map_scene(scene, checkpoint, out / "map", options=MappingOptions(progress=False, precision=precision, batch_size=batch_size), scene_id="mem")
    stats = json.loads(outputs["stats"].read_text())
    print(json.dumps({"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                      "seconds": time.perf_counter() - started, "tiles": stats["inference"]["tiles_run"],
                      "landslides": stats["summary"]["landslide_count"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000])
    parser.add_argument("--model", default="improved_deeplabv3plus")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--real-batches", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.model, args.backbone, args.real_batches, args.batch_size,
              args.precision)
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lsmap-bench-memory-"))
    peaks = {}
    for size in args.sizes:
        scene = work / f"scene_{size}.tif"
        if not scene.exists():
            write_scene(scene, size)
        out = work / f"run_{size}"
        out.mkdir(exist_ok=True)
        result = subprocess.run([sys.executable, __file__, "--child", str(scene), str(out), "--model", args.model,
                                 "--backbone", args.backbone, "--real-batches", str(args.real_batches),
                                 "--batch-size", str(args.batch_size), "--precision", args.precision],
                                capture_output=True, text=True, check=True)
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        peaks[size] = figures["peak_rss_gb"]
        print(f"{size:>6}^2 px 4-band uint16: peak RSS {figures['peak_rss_gb']:.2f} GB "
              f"({figures['tiles']} tiles, {figures['seconds']:.0f} s, {args.model}/{args.backbone} batch {args.batch_size} "
              f"precision {args.precision} for the first {args.real_batches} batches)")
    if len(peaks) >= 2:
        small, large = min(peaks), max(peaks)
        print(f"growth {small}^2 -> {large}^2: {100 * (peaks[large] / peaks[small] - 1):+.1f} % (target <= +10 %, both <= 2.5 GB)")


if __name__ == "__main__":
    main()
