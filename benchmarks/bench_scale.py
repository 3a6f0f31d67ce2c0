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
3. The region: six scenes of ``--region-scene-px``² at 2 m in a 3 x 2 grid overlapping by 1/12
   of a side (5 km at 30,000 px; mask.tif with overviews, scene_stats.json, landslides.gpkg with
   its footprint layer, as map_scene writes them; ``--region-polygons`` landslide centres, those
   in an overlap seen by each scene there, a few metres shifted), and a 4-band image of the first
   scene for its quicklook. Then each region step in a fresh process, its seconds and peak RSS:
   ``summarize_region``, ``export_region`` (GeoJSON + KML), the cumulative inventory (six
   ``add_scene`` passes), the first scene's quicklook and the region report.

    nice .venv/bin/python benchmarks/bench_scale.py --size 16384 --map fragmented
    nice .venv/bin/python benchmarks/bench_scale.py --size 32768 --map blobs --region
    nice .venv/bin/python benchmarks/bench_scale.py --size 0 --region            # the region only

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

# RSS helpers of every child; the map child adds the zero-cost model (CHILD_SETUP).
CHILD_RSS = '''
import json, os, sys, time

def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass
'''

CHILD_SETUP = CHILD_RSS + '''
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

def cpu_seconds():
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return usage.ru_utime + usage.ru_stime
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

# One step per fresh child process (CHILD_RSS only: the region needs no torch, whose import alone is
# 0.4 GB of RSS), so that each peak RSS is that step's own (the order of the
# pipeline: summary, exports, quicklook, report; the inventory as six scheduled passes add scenes).
CHILD_REGION = CHILD_RSS + '''
from pathlib import Path
step, root = sys.argv[1], Path(sys.argv[2])
dirs = {{p.name: p for p in sorted(root.iterdir()) if p.is_dir() and p.name.startswith("scene")}}
region = root / "region"
reset_peak()
started = time.perf_counter()
extra = {{}}
if step == "summarize_region":
    from lsmap.region import summarize_region
    summarize_region("quake", dirs, region)
    stats = json.loads((region / "stats.json").read_text())["summary"]
    extra = {{"landslides": stats["landslide_count"], "observed_km2": stats["observed_area_km2"]}}
elif step == "summarize_region (before, all in memory)":
    sys.path.insert(0, str(Path(os.environ["PYTHONPATH"]) / "tests"))
    from reference_region import reference_summarize_region
    reference_summarize_region("quake", dirs, root / "region_before")
    stats = json.loads((root / "region_before" / "stats.json").read_text())["summary"]
    extra = {{"landslides": stats["landslide_count"]}}
elif step == "export_region":
    from lsmap.export import export_region
    extra = {{"landslides": export_region(region / "landslides.gpkg", region / "landslides.geojson", region / "landslides.kml")}}
elif step == "inventory":
    import geopandas as gpd
    from lsmap.inventory import add_scene
    for scene_id, directory in dirs.items():
        update = add_scene(region / "inventory.gpkg", scene_id=scene_id, acquired="2022-09-05T04:52:00Z",
                           polygons=gpd.read_file(directory / "landslides.gpkg", layer="landslides"),
                           footprint=gpd.read_file(directory / "landslides.gpkg", layer="footprint"))
    extra = {{"landslides": update.landslides_after}}
elif step == "quicklook":
    from lsmap.quicklook import make_quicklook
    first = next(iter(dirs.values()))
    drawn = make_quicklook(first / "image.tif", first / "landslides.gpkg", first / "quicklook.png", first / "quicklook.tif",
                           scene_id=first.name)
    extra = {{"landslides": drawn["landslides"]}}
elif step == "report":
    from lsmap.report import build_region_report
    quicklooks = {{s: d / "quicklook.png" for s, d in dirs.items() if (d / "quicklook.png").exists()}}
    build_region_report(region / "stats.json", region / "report.html", frequency_area_png=region / "frequency_area.png",
                        landslides_geojson=region / "landslides.geojson", quicklooks=quicklooks,
                        scene_rasters={{s: d / "mask.tif" for s, d in dirs.items()}},
                        backgrounds={{s: q.with_suffix(".tif") for s, q in quicklooks.items()}})
    extra = {{"html_mb": (region / "report.html").stat().st_size / 1e6}}
seconds = time.perf_counter() - started
print(json.dumps({{"stage": step, "seconds": seconds, "peak_rss_mb": peak_rss_mb(), **extra}}))
'''
REGION_STEPS = ("summarize_region", "export_region", "inventory", "quicklook", "report")


def write_quicklook_image(path: Path, mask_profile: dict) -> None:
    """A 4-band uint16 scene on the mask's grid for the quicklook (smooth ramps: cheap to make and
    to compress), with overviews as the ARD COG has them."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    size = mask_profile["width"]
    profile = {**mask_profile, "count": 4, "dtype": "uint16", "nodata": 0, "compress": "zstd", "zstd_level": 1}
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size, BLOCK):
            for c in range(0, size, BLOCK):
                h, w = min(BLOCK, size - r), min(BLOCK, size - c)
                rows, cols = np.ogrid[r:r + h, c:c + w]
                ramp = ((rows * 7 + cols * 3) % 1024).astype(np.uint16)
                dst.write(np.stack([500 + ramp, 800 + ramp // 2, 700 + ramp // 3, 1400 + ramp]), window=Window(c, r, w, h))
        dst.build_overviews([2, 4, 8, 16, 32, 64], Resampling.average)


def write_region(root: Path, scene_px: int, polygons: int) -> float:
    """Six scene folders as map_scene writes them (mask.tif with overviews, scene_stats.json,
    landslides.gpkg with its layers "landslides" and "footprint"), and image.tif for the first
    scene's quicklook."""
    import geopandas as gpd
    import rasterio
    import shapely
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    started = time.perf_counter()
    rng = np.random.default_rng(1)
    side_m = scene_px * PIXEL_M
    # overlaps of 1/12 of a side (5 km at 30,000 px), at least 1 km: wider than the two nodata
    # margins (1/64 of a side each), so that the scenes' valid areas do overlap
    step_m = side_m - max(1000.0, side_m / 12)
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
        valid_box = shapely.box(x0 + margin_m, y0 - side_m + margin_m, x0 + side_m - margin_m, y0 - margin_m)
        gpd.GeoDataFrame({"kind": ["valid_data"]}, geometry=[valid_box], crs="EPSG:32648").to_file(
            directory / "landslides.gpkg", layer="footprint", driver="GPKG", engine="pyogrio")  # as map_scene writes it
        if k == 0:
            write_quicklook_image(directory / "image.tif", profile)
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


def print_region_steps(scene_px: int, centres: int, steps: list[dict]) -> None:
    summary = next((s for s in steps if s["stage"] == "summarize_region"), None)
    merged = (f": {summary['landslides']} landslides after the dissolve, {summary['observed_km2']:.0f} km² observed"
              if summary else "")
    print(f"\nregion, six {scene_px}² scenes, {centres} landslide centres{merged} (each step a fresh process)")
    print(f"{'step':<42} {'s':>8} {'peak RSS GB':>12}  notes")
    for step in steps:
        notes = ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in step.items()
                          if k not in ("stage", "seconds", "peak_rss_mb"))
        print(f"{step['stage']:<42} {step['seconds']:8.1f} {step['peak_rss_mb'] / 1024:12.2f}  {notes}")


# -------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32_768, help="scene side in px (0: skip the scene)")
    parser.add_argument("--map", choices=["blobs", "fragmented"], default="blobs")
    parser.add_argument("--region", action="store_true", help="also the six-scene region summary")
    parser.add_argument("--region-scene-px", type=int, default=30_000)
    parser.add_argument("--region-polygons", type=int, default=200_000)
    parser.add_argument("--region-steps", help=f"comma-separated, in this order (default all; export_region and report "
                        f"read what summarize_region wrote in the same run): {','.join(REGION_STEPS)}")
    parser.add_argument("--region-baseline", action="store_true",
                        help="also the summary as it was before it streamed (tests/reference_region.py), same inputs")
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
            figures = {"stages": []}
            steps = args.region_steps.split(",") if args.region_steps else list(REGION_STEPS)
            unknown = set(steps) - set(REGION_STEPS)
            if unknown:
                raise SystemExit(f"--region-steps: unknown {sorted(unknown)}; choose from {', '.join(REGION_STEPS)}")
            for step in (["summarize_region (before, all in memory)"] if args.region_baseline else []) + steps:
                figures["stages"].append(run_child(CHILD_REGION.format(), [step, str(root)], work / f"region_{step}.log"))
            print_region_steps(args.region_scene_px, args.region_polygons, figures["stages"])
        load = os.getloadavg()
        print(f"\nload average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end (other processes share the 2 cores)")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
