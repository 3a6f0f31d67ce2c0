"""Cost of refreshing a region's products after a scheduled pass; prints its figures.

Builds a cumulative inventory of S scenes (20 x 20 km, P landslide polygons each, every scene
overlapping the previous one by half: the bench_operations.py layout) with each scene's mask.tif
(20 m pixels: extent and footprint) and quicklook.tif (1600 x 1600 RGB, a smooth random texture
that compresses like imagery), then, each in a fresh process (peak RSS = its VmHWM):

1. ``refresh_region_products``: stats.json/csv, frequency-area plot, GeoJSON/KML, passes.json and
   report.html with every scene's picture under the map;
2. the page alone, with and without the pictures (``build_region_report``), from the staged files:
   what the imagery costs in time and page size.

    .venv/bin/python benchmarks/bench_refresh.py [--scenes 6] [--polygons 2000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from bench_operations import SCENE_M, UTM, X0, Y0, scene  # noqa: E402

from lsmap.inventory import add_scene  # noqa: E402

MEASURE = """
import json, resource, sys, time
from pathlib import Path
from lsmap.scheduled import OperationsSettings, refresh_region_products
from lsmap.report import build_region_report
def peak_rss_mb():
    # VmHWM of this process's own memory: ru_maxrss would carry the parent's peak across fork + exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

root, what = Path(sys.argv[1]), sys.argv[2]
region = root / "results" / "quake"
settings = OperationsSettings(region="quake", inbox=root, ledger=root / "ledger.sqlite", quarantine_dir=root, runs_dir=root,
                              work_dir=root, results_dir=root / "results", checkpoint=root / "model.pt", dem=None)
scenes = sorted(p.name for p in region.iterdir() if p.is_dir() and not p.name.startswith("."))
start = time.perf_counter()
if what == "refresh":
    passes = [{"run_id": "r1", "started": "2022-09-10T06:00:00Z", "deliveries": scenes, "new_landslide_ids": []}]
    refresh_region_products(settings, passes, "bench")
    out = region / "report.html"
else:
    out = root / f"report-{what}.html"
    pictures = {s: region / s / "quicklook.tif" for s in scenes} if what == "page+imagery" else None
    build_region_report(region / "stats.json", out, frequency_area_png=region / "frequency_area.png",
                        landslides_geojson=region / "landslides.geojson", scene_rasters={s: region / s / "mask.tif" for s in scenes},
                        backgrounds=pictures)
print(json.dumps({"what": what, "seconds": time.perf_counter() - start, "page_mb": out.stat().st_size / 1e6,
                  "peak_rss_mb": peak_rss_mb()}))
"""


def write_scene_rasters(folder: Path, index: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    x_off = index * SCENE_M / 2
    px = int(SCENE_M / 20)
    with rasterio.open(folder / "mask.tif", "w", driver="GTiff", width=px, height=px, count=1, dtype="uint8", crs=UTM,
                       transform=from_origin(X0 + x_off, Y0 + SCENE_M, 20, 20), nodata=255, compress="deflate") as dst:
        dst.write(np.zeros((1, px, px), np.uint8))
    side = 1600
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (3, side, side)), (0, 6, 6))
    rgb = np.clip(128 + texture / texture.std() * 40, 1, 255).astype(np.uint8)
    with rasterio.open(folder / "quicklook.tif", "w", driver="COG", width=side, height=side, count=3, dtype="uint8", crs=UTM,
                       transform=from_origin(X0 + x_off, Y0 + SCENE_M, SCENE_M / side, SCENE_M / side), nodata=0,
                       compress="DEFLATE") as dst:
        dst.write(rgb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--polygons", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        region = root / "results" / "quake"
        for i in range(args.scenes):
            frame, footprint = scene(rng, i, args.polygons)
            add_scene(region / "inventory.gpkg", scene_id=f"S{i:02d}", acquired=f"2022-09-{i + 1:02d}", polygons=frame,
                      footprint=footprint)
            write_scene_rasters(region / f"S{i:02d}", i, rng)
        print(f"region: {args.scenes} scenes x {args.polygons} polygons (20 x 20 km each, half overlapping)")
        for what in ("refresh", "page", "page+imagery"):
            run = subprocess.run([sys.executable, "-c", MEASURE, str(root), what], capture_output=True, text=True, check=True)
            figures = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"{figures['what']:<13} {figures['seconds']:7.1f} s  peak RSS {figures['peak_rss_mb']:6.0f} MB  "
                  f"page {figures['page_mb']:5.1f} MB")
        stats = json.loads((region / "stats.json").read_text())["summary"]
        print(f"inventory: {stats['landslide_count']} standing landslides, observed {stats['observed_area_km2']:.0f} km²")


if __name__ == "__main__":
    main()
