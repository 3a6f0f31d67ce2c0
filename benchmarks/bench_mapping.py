"""End-to-end `lsmap map` throughput against pure model forward on the same tiles (issue 4, benchmark 1).

One run, same device, precision, model and tiles: (a) pure forward: the scene's tiles already
normalised in memory, batches straight into the model; (b) end to end: map_scene (reading,
normalising, inference, blending, COG writing, polygonising, statistics). Forward is measured
before and after the end-to-end run and averaged, because the machine may be shared.
Prints tiles/s of both and their ratio (target >= 0.85 on the 2-core CPU), and the implied time
for 21,547 km2 at 2 m (the paper's six GF-6 scenes).

    .venv/bin/python benchmarks/bench_mapping.py [--size 2048] [--backbone resnet18] [--device auto]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch

from lsmap.checkpoint import Checkpoint, InputSpec, load_checkpoint, save_checkpoint
from lsmap.mapping import MappingOptions, map_scene
from lsmap.models import build_model
from lsmap.predict import TileModel, read_block
from lsmap.synthetic import generate_landscape
from lsmap.tiling import TileGrid

PAPER_AREA_KM2 = 21_547


def make_checkpoint(path: Path, model_name: str, backbone: str) -> Path:
    torch.manual_seed(0)
    kwargs = dict(in_channels=4, num_classes=1, backbone=backbone)
    model = build_model(model_name, **kwargs)
    spec = InputSpec(["blue", "green", "red", "nir"], [500.0, 800.0, 700.0, 2800.0], [300.0, 300.0, 350.0, 800.0], 512)
    return save_checkpoint(Checkpoint(model_name, kwargs, model.state_dict(), spec), path)


def pure_forward_tiles_per_s(scene: Path, checkpoint: Path, options: MappingOptions) -> tuple[float, int]:
    """Tiles/s of the model alone on the scene's (non-nodata) tiles, inputs prepared beforehand."""
    from lsmap.predict import inspect_scene

    ckpt = load_checkpoint(checkpoint)
    model = TileModel(ckpt, options.device, options.precision)
    info = inspect_scene(scene, ckpt)
    grid = TileGrid(info.height, info.width, options.tile_size, options.overlap_px, 10**9)
    block = grid.blocks[0]
    with rasterio.open(scene) as src:
        pixels, valid = read_block(src, info, block, options.tile_size)
    t = options.tile_size
    tiles = [model.normalise(pixels[:, k.row:k.row + t, k.col:k.col + t], valid[k.row:k.row + t, k.col:k.col + t])
             for k in block.tiles if valid[k.row:k.row + t, k.col:k.col + t].any()]
    batches = [model.as_input(np.stack(tiles[i:i + options.batch_size])) for i in range(0, len(tiles), options.batch_size)]
    model(batches[0])  # warm-up (allocator, oneDNN/cuDNN kernel choice)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for batch in batches:
        model(batch)
    return len(tiles) / (time.perf_counter() - started), len(tiles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="scene side in px (2 m pixels)")
    parser.add_argument("--model", default="improved_deeplabv3plus")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="lsmap-bench-mapping-"))
    landscape = generate_landscape(work / "scene", seed=7, size_px=args.size)
    checkpoint = make_checkpoint(work / "model.pt", args.model, args.backbone)
    options = MappingOptions(batch_size=args.batch_size, device=args.device, precision=args.precision, progress=False)

    forward_before, n_tiles = pure_forward_tiles_per_s(landscape.reflectance, checkpoint, options)
    started = time.perf_counter()
    outputs = map_scene(landscape.reflectance, checkpoint, work / "out", options=options, dem=landscape.dem, scene_id="bench")
    e2e_seconds = time.perf_counter() - started
    forward_after, _ = pure_forward_tiles_per_s(landscape.reflectance, checkpoint, options)

    import json

    run = json.loads(outputs["stats"].read_text())["inference"]
    forward = (forward_before + forward_after) / 2
    e2e = run["tiles_run"] / e2e_seconds
    inference_only = run["tiles_per_s"]
    stride_km = (options.tile_size - options.overlap_px) * 2 / 1000
    tiles_paper = PAPER_AREA_KM2 / stride_km**2
    print(f"scene {args.size}x{args.size} px, {run['tiles_run']} tiles of {options.tile_size} px (overlap {options.overlap_px}), "
          f"{args.model}/{args.backbone}, device {run['device']}, precision {run['precision']}, batch {args.batch_size}")
    print(f"pure forward      : {forward:7.3f} tiles/s  (before {forward_before:.3f}, after {forward_after:.3f}; {n_tiles} tiles)")
    print(f"blended inference : {inference_only:7.3f} tiles/s  (read + normalise + forward + blend + write)")
    print(f"end to end (map)  : {e2e:7.3f} tiles/s  ({e2e_seconds:.1f} s incl. COGs, polygons, statistics)")
    print(f"ratio e2e/forward : {e2e / forward:7.3f}   (inference-only/forward {inference_only / forward:.3f}; target >= 0.85)")
    print(f"implied time for {PAPER_AREA_KM2} km2 at 2 m ({tiles_paper:,.0f} tiles): {tiles_paper / e2e / 3600:.1f} h end to end")


if __name__ == "__main__":
    main()
