"""Polygonisation throughput (Mpx/s) on a large mask with tens of thousands of blobs (issue 4, benchmark 3).

The mask is thresholded smooth noise (irregular blobs of 10 to 10^4 pixels, many crossing block
lines), with a probability raster for prob_mean/prob_max. Times landslide_polygons (blockwise
labelling + polygonising, border merging, attributes, areas) with 1 and 2 worker threads.

    .venv/bin/python benchmarks/bench_polygonize.py [--size 8192] [--block-px 4096]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

from lsmap.vectorize import landslide_polygons


def write_blob_mask(work: Path, size: int) -> tuple[Path, Path, int]:
    rng = np.random.default_rng(1)
    noise = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 3)
    noise /= noise.std()
    mask = (noise > 1.6).astype(np.uint8)
    probability = np.clip(0.5 + 0.2 * noise, 0, 1).astype(np.float32)
    profile = dict(driver="GTiff", width=size, height=size, count=1, crs="EPSG:32648", tiled=True, blockxsize=512,
                   blockysize=512, compress="deflate", transform=from_origin(400000, 3500000, 2, 2))
    with rasterio.open(work / "mask.tif", "w", dtype="uint8", nodata=255, **profile) as dst:
        dst.write(mask, 1)
    with rasterio.open(work / "probability.tif", "w", dtype="float32", nodata=-1, **profile) as dst:
        dst.write(probability, 1)
    return work / "mask.tif", work / "probability.tif", ndimage.label(mask)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--block-px", type=int, default=4096)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lsmap-bench-polygonize-"))
    mask, probability, blobs = write_blob_mask(work, args.size)
    mpx = args.size**2 / 1e6
    print(f"mask {args.size}x{args.size} px ({mpx:.0f} Mpx), {blobs} blobs (8-connected count), blocks of {args.block_px} px")
    for workers in (1, 2):
        started = time.perf_counter()
        frame = landslide_polygons(mask, probability, min_area_m2=0, fill_holes_=False, block_px=args.block_px, workers=workers)
        seconds = time.perf_counter() - started
        print(f"workers {workers}: {len(frame)} polygons in {seconds:.1f} s -> {mpx / seconds:.1f} Mpx/s, "
              f"{len(frame) / seconds:,.0f} polygons/s")


if __name__ == "__main__":
    main()
