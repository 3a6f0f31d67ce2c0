"""Quicklook of a 20,000 x 20,000 px scene: peak memory (RSS) and time, with and without overviews.

The mapping step's memory bound is 2.5 GB peak RSS; the full-resolution scene alone is 3.2 GB
(4 bands x uint16), so a quicklook that stayed under the bound cannot have held it.

    .venv/bin/python benchmarks/bench_quicklook.py [--size 20000] [--keep]

Writes the scene under benchmarks/results/quicklook/ (git-ignored; 3.2 GB + 1.1 GB of overviews
on disk, uncompressed so that generating it costs disk time, not CPU; removed at the end unless --keep). Each measurement runs in a fresh process, so ru_maxrss is its own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "quicklook"
MEMORY_BOUND_MB = 2500

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from lsmap.quicklook import make_quicklook
drawn = make_quicklook(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], scene_id="bench_20000")
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "display_shape": drawn["display_shape"], "landslides": drawn["landslides"]}))
"""


def write_scene(path: Path, size: int, strip_rows: int = 1024) -> None:
    """A 4-band uint16 scene written strip by strip (never whole in memory): smooth terrain-like
    gradients plus noise, a nodata margin, no overviews (added separately as a .ovr file)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(0)
    profile = dict(driver="GTiff", width=size, height=size, count=4, dtype="uint16", crs="EPSG:32648",
                   transform=from_origin(420000, 3720000, 2.0, 2.0), nodata=0, tiled=True, blockxsize=512,
                   blockysize=512, BIGTIFF="YES")  # uncompressed: generation is disk-bound, not CPU-bound
    cols = np.arange(size, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as dst:
        for row0 in range(0, size, strip_rows):
            rows = min(strip_rows, size - row0)
            r = np.arange(row0, row0 + rows, dtype=np.float32)[:, None]
            base = 900 + 400 * np.sin(r / 1700.0) * np.cos(cols / 2300.0)
            noise = rng.integers(0, 60, (rows, size), dtype=np.int16)
            strip = np.stack([base * f + noise for f in (0.6, 0.8, 0.7, 2.2)]).astype(np.uint16)
            strip[:, :, : size // 40] = 0  # a nodata margin on the west edge
            dst.write(strip, window=Window(0, row0, size, rows))


def write_polygons(path: Path, size: int, count: int = 5000) -> None:
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(1)
    x = 420000 + rng.uniform(0.05, 0.95, count) * size * 2.0
    y = 3720000 - rng.uniform(0.05, 0.95, count) * size * 2.0
    radius = rng.lognormal(3.0, 0.8, count).clip(5, 400)  # 5-400 m, mostly ~20 m: many are dots
    geoms = shapely.buffer(shapely.points(x, y), radius, quad_segs=4)
    gpd.GeoDataFrame({"id": np.arange(1, count + 1), "acquired": "2022-09-10", "area_m2": shapely.area(geoms)},
                     geometry=geoms, crs="EPSG:32648").to_file(path, layer="landslides", driver="GPKG")


def measure(scene: Path, polygons: Path, label: str) -> dict:
    run = subprocess.run([sys.executable, "-c", CHILD, str(scene), str(polygons), str(OUT / f"{label}.png"),
                          str(OUT / f"{label}.tif")], capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--keep", action="store_true", help="keep the generated scene")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    scene, polygons, ovr = OUT / "scene.tif", OUT / "landslides.gpkg", OUT / "scene.tif.ovr"
    if not scene.exists() or not ovr.exists():
        import rasterio
        from rasterio.enums import Resampling

        t0 = time.perf_counter()
        if not scene.exists():
            write_scene(scene, args.size)
        # TIFF_USE_OVR: overviews in an external .ovr, so the run without them only moves a file.
        with rasterio.Env(GDAL_CACHEMAX=512, TIFF_USE_OVR=True), rasterio.open(scene, "r+") as src:
            src.build_overviews([2, 4, 8, 16, 32], Resampling.average)
        write_polygons(polygons, args.size)
        print(f"generated {args.size}^2 scene + overviews + 5000 polygons in {time.perf_counter() - t0:.0f} s "
              f"({scene.stat().st_size / 1e6:.0f} MB + {ovr.stat().st_size / 1e6:.0f} MB .ovr)")
    full_mb = 4 * 2 * args.size**2 / 1e6
    print(f"scene: {args.size} x {args.size} px, 4 x uint16 = {full_mb:.0f} MB at full resolution; "
          f"bound {MEMORY_BOUND_MB} MB peak RSS")
    with_ovr = measure(scene, polygons, "with_overviews")
    print(f"with overviews:    {with_ovr['seconds']:6.1f} s  peak RSS {with_ovr['peak_rss_mb']:6.0f} MB  "
          f"display {with_ovr['display_shape']}  {with_ovr['landslides']} landslides")
    aside = OUT / "scene.tif.ovr.aside"
    shutil.move(ovr, aside)
    try:
        without = measure(scene, polygons, "without_overviews")
    finally:
        shutil.move(aside, ovr)
    print(f"without overviews: {without['seconds']:6.1f} s  peak RSS {without['peak_rss_mb']:6.0f} MB")
    if not args.keep:
        for path in (scene, ovr, polygons):
            path.unlink(missing_ok=True)
    ok = max(with_ovr["peak_rss_mb"], without["peak_rss_mb"]) <= MEMORY_BOUND_MB
    print("within the mapping memory bound" if ok else "OVER the mapping memory bound")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
