"""Mission scale (issue 11): `lsmap map` on a full GF-6-sized scene with a zero-cost model, then a
six-scene region summary with 200,000 polygons; prints seconds, Mpx/s and peak RSS per stage.

1. A ``--size``² 4-band uint16 scene (UTM 48N, 2 m, nodata 0 in a margin and a corner, as after
   orthorectification) is generated block by block (2048² blocks: bounded memory). Its NIR band
   decides the map: ``--map blobs`` gives discs of 3-15 px radius on ~1 % of the scene (a quake's
   landslides); ``--map fragmented`` gives independent speckle on 31 % of the pixels (a model on
   unfamiliar terrain: at 16,384² about 34 million 4-connected components, 27,000 of them >= 25 px,
   the count of the issue's map; its 4.46 million components were fewer and larger).
2. The model is a 1 x 1 convolution (NIR in, weights chosen so that probability > 0.5 exactly where
   the NIR says landslide) saved with ``save_checkpoint`` as a real lsmap checkpoint; it is
   registered in ``lsmap.models.REGISTRY`` inside the child process only. The child runs
   ``lsmap map`` through ``lsmap.cli.main``; each stage is timed by wrapping the function
   ``lsmap.mapping`` calls, and its peak RSS is the child's VmHWM, reset at the stage start
   (``/proc/self/clear_refs``), so each figure is that stage's own peak. The stages after inference
   overlap (the COGs are written in a thread while the polygons are made), so their summary is the
   wall time from the end of inference to the last stage's end, and the CPU seconds of all threads
   over the same span (which other processes on the cores change far less than the wall time).
   ``LSMAP_BENCH_TREE=/path/to/checkout`` runs the child on another tree: a baseline in the same run.
3. The region: six scenes of ``--region-scene-px``² at 2 m in a 3 x 2 grid overlapping by 1 km
   (mask.tif with overviews, scene_stats.json, landslides.gpkg; 200,000 polygons in all, those in
   an overlap seen by both scenes, slightly shifted), then ``summarize_region`` in a fresh process.

    nice .venv/bin/python benchmarks/bench_scale.py --size 16384 --map fragmented
    nice .venv/bin/python benchmarks/bench_scale.py --size 32768 --map blobs --region

Targets (2 cores): after inference >= 10 Mpx/s on the fragmented 16k²; peak RSS <= 2.5 GB at 16k²
and 32k²; 32k² end to end <= 10 min. Work files go to ``--workdir`` (default a temp folder) and are
removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BLOCK = 2048
X0, Y0, PIXEL_M = 400_000.0, 3_500_000.0, 2.0
NIR_LANDSLIDE, NIR_GROUND, NIR_MEAN, NIR_STD = 2600, 1400, 2000.0, 100.0


# ------------------------------------------------------------------------------------------ scene


def scene_block(size: int, row: int, col: int, h: int, w: int, kind: str, rng) -> np.ndarray:
    """(4, h, w) uint16 of the scene at (row, col): texture, the landslide signal in NIR, nodata 0."""
    data = np.empty((4, h, w), np.uint16)
    for band, base in enumerate((500, 800, 700)):
        data[band] = base + rng.integers(0, 64, (h, w), dtype=np.uint16)
    nir = np.full((h, w), NIR_GROUND, np.uint16) + rng.integers(0, 64, (h, w), dtype=np.uint16)
    if kind == "fragmented":
        nir[rng.random((h, w), dtype=np.float32) < 0.31] = NIR_LANDSLIDE
    else:  # discs covering ~1 % of the block
        count = int(0.01 * h * w / (np.pi * 9 ** 2))
        rr, cc = np.ogrid[0:h, 0:w]
        for r, c, radius in zip(rng.integers(0, h, count), rng.integers(0, w, count), rng.integers(3, 16, count)):
            r0, r1, c0, c1 = max(0, r - radius), min(h, r + radius + 1), max(0, c - radius), min(w, c + radius + 1)
            disc = (rr[r0:r1] - r) ** 2 + (cc[:, c0:c1] - c) ** 2 <= radius ** 2
            nir[r0:r1, c0:c1][disc] = NIR_LANDSLIDE
    data[3] = nir
    rows, cols = np.ogrid[row:row + h, col:col + w]
    margin = size // 32
    nodata = (rows < margin) | (cols < margin) | (rows >= size - margin) | (cols >= size - margin) | (rows + cols < size // 6)
    data[:, nodata] = 0
    return data


def write_scene(path: Path, size: int, kind: str) -> float:
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    profile = dict(driver="GTiff", width=size, height=size, count=4, dtype="uint16", nodata=0, crs="EPSG:32648",
                   transform=from_origin(X0, Y0, PIXEL_M, PIXEL_M), tiled=True, blockxsize=512, blockysize=512,
                   compress="zstd", zstd_level=1, bigtiff="yes", num_threads="all_cpus")
    with rasterio.open(path, "w", **profile) as dst:
        dst.update_tags(ACQUISITION_TIME="2022-09-05T04:52:00Z")
        for r in range(0, size, BLOCK):
            for c in range(0, size, BLOCK):
                h, w = min(BLOCK, size - r), min(BLOCK, size - c)
                dst.write(scene_block(size, r, c, h, w, kind, rng), window=Window(c, r, w, h))
    return time.perf_counter() - started


# ------------------------------------------------------------------------------------ child: map

CHILD_SETUP = '''
import json, os, sys, time
import torch
from torch import nn
from lsmap.models import REGISTRY, ModelSpec

class Pointwise(nn.Module):
    """Zero-cost model: one 1 x 1 convolution."""
    def __init__(self, in_channels=4, num_classes=1, backbone="resnet50", pretrained="none", **_):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size=1)
    def forward(self, x):
        return self.conv(x)

REGISTRY["pointwise"] = ModelSpec(Pointwise, "1 x 1 convolution (benchmarks only)", uses_backbone=False, encoder="none")

def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

def cpu_seconds():
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return usage.ru_utime + usage.ru_stime

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass
'''

CHILD_MAP = CHILD_SETUP + '''
import lsmap.mapping as mapping, lsmap.stats as stats
from lsmap.checkpoint import Checkpoint, InputSpec, save_checkpoint
from lsmap.cli import main

scene, out, model_path = sys.argv[1], sys.argv[2], sys.argv[3]
model = Pointwise(4, 1)
with torch.no_grad():
    model.conv.weight.zero_()
    model.conv.weight[0, 3] = 1.0  # logit = (NIR - mean) / std
    model.conv.bias.zero_()
spec = InputSpec(["blue", "green", "red", "nir"], [600.0, 900.0, 800.0, {nir_mean}], [50.0, 50.0, 50.0, {nir_std}], 512)
save_checkpoint(Checkpoint("pointwise", dict(in_channels=4, num_classes=1), model.state_dict(), spec), model_path)
stages = []
peak_before = peak_rss_mb()
t0 = time.perf_counter()

def timed(name, function):
    def wrapper(*args, **kwargs):
        global peak_before
        peak_before = max(peak_before, peak_rss_mb())
        reset_peak()
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            label = name(args) if callable(name) else name
            stages.append({{"stage": label, "seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb(),
                           "start": started - t0, "end": time.perf_counter() - t0, "cpu_end": cpu_seconds()}})
    return wrapper

mapping.predict_scene = timed("inference", mapping.predict_scene)
mapping.write_cog = timed(lambda args: "COG " + os.path.basename(str(args[1])) + " + overviews", mapping.write_cog)
mapping.write_polygons = timed("polygons (GPKG + GeoParquet)", mapping.write_polygons)
stats.valid_footprint = timed("valid footprint", stats.valid_footprint)
stats.observed_area_m2 = timed("observed area", stats.observed_area_m2)
started = time.perf_counter()
code = main(["map", scene, "--model", model_path, "--out", out])
total = time.perf_counter() - started
summary = json.loads(open(os.path.join(out, "scene_stats.json")).read())["summary"]
print(json.dumps({{"code": code, "stages": stages, "total_seconds": total, "cpu_seconds": cpu_seconds(), "peak_rss_mb": max([peak_before, peak_rss_mb()] + [s["peak_rss_mb"] for s in stages]),
                  "landslides": summary["landslide_count"]}}))
'''


def run_child(script: str, args: list[str], log: Path) -> dict:
    with open(log, "w") as stderr:
        result = subprocess.run([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=stderr, text=True,
                                env={**os.environ, "PYTHONPATH": os.environ.get("LSMAP_BENCH_TREE") or str(Path(__file__).resolve().parents[1])})
    if result.returncode != 0:
        raise SystemExit(f"child failed ({result.returncode}), see {log}:\n" + log.read_text()[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def print_stages(title: str, pixels: float, figures: dict) -> None:
    print(f"\n{title}")
    print(f"{'stage':<34} {'s':>8} {'Mpx/s':>8} {'peak RSS GB':>12}")
    for stage in figures["stages"]:
        print(f"{stage['stage']:<34} {stage['seconds']:8.1f} {pixels / 1e6 / stage['seconds']:8.1f} {stage['peak_rss_mb'] / 1024:12.2f}")
    inference = [s for s in figures["stages"] if s["stage"] == "inference"]
    if inference and "end" in inference[0]:
        # stages after inference overlap (the COGs are written while the polygons are made): wall time
        after = max(s["end"] for s in figures["stages"]) - inference[0]["end"]
        print(f"{'after inference (wall)':<34} {after:8.1f} {pixels / 1e6 / after:8.1f}")
        if "cpu_seconds" in figures:  # robust to other processes on the cores, unlike the wall time
            print(f"{'after inference (CPU s, all threads)':<34} {figures['cpu_seconds'] - inference[0]['cpu_end']:8.1f}")
    print(f"{'end to end (lsmap map)':<34} {figures['total_seconds']:8.1f} {pixels / 1e6 / figures['total_seconds']:8.1f} "
          f"{figures['peak_rss_mb'] / 1024:12.2f}")


# ------------------------------------------------------------------------------------------ region

CHILD_REGION = CHILD_SETUP + '''
from pathlib import Path
from lsmap.mapping import summarize_region
root = Path(sys.argv[1])
dirs = {{p.name: p for p in sorted(root.iterdir()) if p.is_dir() and p.name.startswith("scene")}}
reset_peak()
started = time.perf_counter()
summarize_region("quake", dirs, root / "region")
seconds = time.perf_counter() - started
stats = json.loads((root / "region" / "stats.json").read_text())["summary"]
print(json.dumps({{"stages": [{{"stage": "summarize_region", "seconds": seconds, "peak_rss_mb": peak_rss_mb()}}],
                  "total_seconds": seconds, "peak_rss_mb": peak_rss_mb(), "landslides": stats["landslide_count"],
                  "observed_km2": stats["observed_area_km2"]}}))
'''


def write_region(root: Path, scene_px: int, polygons: int) -> float:
    """Six scene folders as map_scene writes them (mask.tif, scene_stats.json, landslides.gpkg)."""
    import geopandas as gpd
    import rasterio
    import shapely
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    started = time.perf_counter()
    rng = np.random.default_rng(1)
    side_m = scene_px * PIXEL_M
    step_m = side_m - 1000.0  # 1 km overlap
    origins = [(X0 + i * step_m, Y0 - j * step_m) for j in range(2) for i in range(3)]
    ids = [f"scene{k + 1}" for k in range(6)]
    # landslide centres over the region; each belongs to every scene whose valid area holds it
    width_m, height_m = 2 * step_m + side_m, step_m + side_m
    centres = np.column_stack([X0 + rng.random(polygons) * width_m, Y0 - rng.random(polygons) * height_m])
    radii = rng.uniform(6, 30, polygons)
    margin_m = scene_px // 64 * PIXEL_M
    for k, (x0, y0) in enumerate(origins):
        directory = root / ids[k]
        directory.mkdir(parents=True, exist_ok=True)
        profile = dict(driver="GTiff", width=scene_px, height=scene_px, count=1, dtype="uint8", nodata=255, crs="EPSG:32648",
                       transform=from_origin(x0, y0, PIXEL_M, PIXEL_M), tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate", bigtiff="yes")
        margin = scene_px // 64
        with rasterio.open(directory / "mask.tif", "w", **profile) as dst:
            for r in range(0, scene_px, BLOCK):
                for c in range(0, scene_px, BLOCK):
                    h, w = min(BLOCK, scene_px - r), min(BLOCK, scene_px - c)
                    rows, cols = np.ogrid[r:r + h, c:c + w]
                    block = np.zeros((h, w), np.uint8)
                    block[(rows < margin) | (cols < margin) | (rows >= scene_px - margin) | (cols >= scene_px - margin)] = 255
                    dst.write(block, 1, window=Window(c, r, w, h))
            dst.build_overviews([2, 4, 8, 16, 32, 64], Resampling.nearest)
        inside = ((centres[:, 0] > x0 + margin_m + 40) & (centres[:, 0] < x0 + side_m - margin_m - 40)
                  & (centres[:, 1] < y0 - margin_m - 40) & (centres[:, 1] > y0 - side_m + margin_m + 40))
        chosen = np.flatnonzero(inside)
        shift = 0.0 if k == 0 else 2.0 * (k % 3)  # another scene's outline of the same landslide, a few m off
        geometries = shapely.buffer(shapely.points(centres[chosen] + shift), radii[chosen], quad_segs=4)
        frame = gpd.GeoDataFrame({"id": np.arange(1, len(chosen) + 1), "scene_id": ids[k], "acquired": "2022-09-05T04:52:00Z",
                                  "area_m2": shapely.area(geometries), "perimeter_m": shapely.length(geometries),
                                  "prob_mean": rng.uniform(0.5, 1, len(chosen)), "prob_max": 1.0,
                                  "centroid_lon": 103.0, "centroid_lat": 31.0,
                                  "pixel_count": (shapely.area(geometries) / 4).astype(np.int64)},
                                 geometry=geometries, crs="EPSG:32648")
        frame.to_file(directory / "landslides.gpkg", layer="landslides", driver="GPKG", engine="pyogrio")
        valid_km2 = ((scene_px - 2 * margin) * PIXEL_M) ** 2 / 1e6
        stats = {"scene_id": ids[k], "area_crs": "EPSG:32648",
                 "summary": {"landslide_count": len(chosen), "landslide_area_km2": float(frame.area_m2.sum() / 1e6),
                             "observed_area_km2": valid_km2, "unobserved_area_km2": side_m ** 2 / 1e6 - valid_km2,
                             "areal_density_pct": 0.0, "count_density_per_km2": 0.0},
                 "provenance": {"lsmap_version": "bench", "checkpoint": "model.pt", "checkpoint_sha256": "0" * 64,
                                "config_sha256": "1" * 64, "created_utc": "2022-09-06T00:00:00+00:00",
                                "scenes": [{"scene_id": ids[k], "image": f"{ids[k]}.tif", "acquired": "2022-09-05T04:52:00Z"}]}}
        (directory / "scene_stats.json").write_text(json.dumps(stats))
    return time.perf_counter() - started


# -------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32_768, help="scene side in px (0: skip the scene)")
    parser.add_argument("--map", choices=["blobs", "fragmented"], default="blobs")
    parser.add_argument("--region", action="store_true", help="also the six-scene region summary")
    parser.add_argument("--region-scene-px", type=int, default=30_000)
    parser.add_argument("--region-polygons", type=int, default=200_000)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lsmap-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at start; workdir {work}")
    try:
        if args.size:
            scene = work / f"scene_{args.size}_{args.map}.tif"
            seconds = write_scene(scene, args.size, args.map)
            print(f"generated {args.size}² 4-band uint16 ({args.map}) in {seconds:.0f} s, {scene.stat().st_size / 1e9:.1f} GB")
            script = CHILD_MAP.format(nir_mean=NIR_MEAN, nir_std=NIR_STD)
            figures = run_child(script, [str(scene), str(work / "map"), str(work / "model.pt")], work / "map.log")
            print_stages(f"lsmap map {args.size}² ({args.map}), zero-cost 1x1 model: {figures['landslides']} landslides",
                         float(args.size) ** 2, figures)
            scene.unlink()
            shutil.rmtree(work / "map", ignore_errors=True)
        if args.region:
            root = work / "region_inputs"
            seconds = write_region(root, args.region_scene_px, args.region_polygons)
            print(f"\ngenerated six {args.region_scene_px}² scene folders, {args.region_polygons} landslide centres in {seconds:.0f} s")
            figures = run_child(CHILD_REGION.format(), [str(root)], work / "region.log")
            print_stages(f"summarize_region, six {args.region_scene_px}² scenes: {figures['landslides']} landslides, "
                         f"{figures['observed_km2']:.0f} km2 observed", 6 * float(args.region_scene_px) ** 2, figures)
        load = os.getloadavg()
        print(f"\nload average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end (other processes share the 2 cores)")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
