"""Scheduled-run costs that grow with a deployment's history; prints its figures.

1. Inventory update: seconds of ``lsmap.inventory.add_scene`` per scene as the inventory grows
   (the current layer is recomputed from all observations each time). Scenes are 20 x 20 km
   with 2,000 landslide polygons each, every scene overlapping the previous one by half.
2. A pass with nothing new: wall time of ``run_scheduled`` over an inbox of N deliveries that are
   all in the ledger already (what cron pays every 15 minutes between acquisitions).

    .venv/bin/python benchmarks/bench_operations.py [--scenes 8] [--polygons 2000] [--deliveries 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
from shapely.geometry import box

from lsmap.inventory import LAYER_CURRENT, add_scene, read_inventory

UTM = "EPSG:32648"
X0, Y0 = 400_000.0, 3_300_000.0
SCENE_M = 20_000.0


def scene(rng: np.random.Generator, index: int, polygons: int) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Polygons and footprint of scene ``index`` (shifted by half a scene per index)."""
    x_off = index * SCENE_M / 2
    # Half of the scars re-observed from the previous scene (co-registration jitter), half new.
    shared_rng = np.random.default_rng(1000 + index)  # the overlap with scene index-1 uses its seed
    xs = np.concatenate([shared_rng.uniform(0, SCENE_M / 2, polygons // 2) + x_off,
                         rng.uniform(SCENE_M / 2, SCENE_M, polygons - polygons // 2) + x_off])
    ys = rng.uniform(0, SCENE_M, polygons)
    sizes = rng.lognormal(np.log(30), 0.6, polygons)
    geoms = [box(X0 + x, Y0 + y, X0 + x + s, Y0 + y + 2 * s) for x, y, s in zip(xs + rng.normal(0, 3, polygons), ys, sizes)]
    frame = gpd.GeoDataFrame({"id": np.arange(1, polygons + 1), "area_m2": [g.area for g in geoms],
                              "prob_mean": 0.8, "prob_max": 0.9}, geometry=geoms, crs=UTM)
    footprint = gpd.GeoDataFrame(geometry=[box(X0 + x_off, Y0, X0 + x_off + SCENE_M, Y0 + SCENE_M)], crs=UTM)
    return frame, footprint


def bench_inventory(scenes: int, polygons: int) -> None:
    rng = np.random.default_rng(0)
    print(f"inventory: {scenes} scenes x {polygons} polygons, each overlapping the previous by half")
    print(f"{'scene':>5} {'observations':>12} {'current':>8} {'add_scene s':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inventory.gpkg"
        for i in range(scenes):
            frame, footprint = scene(rng, i, polygons)
            start = time.perf_counter()
            add_scene(path, scene_id=f"S{i:02d}", acquired=f"2022-09-{i + 1:02d}", polygons=frame, footprint=footprint)
            seconds = time.perf_counter() - start
            current = len(read_inventory(path)[LAYER_CURRENT])
            print(f"{i + 1:>5} {(i + 1) * polygons:>12} {current:>8} {seconds:>11.2f}")


def bench_noop_pass(deliveries: int) -> None:
    from lsmap.config import validate_config
    from lsmap.ledger import Ledger
    from lsmap.scheduled import OperationsSettings, delivery_checksum, run_scheduled, scan_inbox

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inbox = tmp / "inbox"
        for i in range(deliveries):
            folder = inbox / f"GF6_PMS_BENCH_L1A{i:06d}"
            folder.mkdir(parents=True)
            for part in ("PAN.tiff", "PAN.rpb", "PAN.xml", "MUX.tiff", "MUX.rpb", "MUX.xml"):
                (folder / f"{folder.name}-{part}").write_bytes(b"x" * 4096)
        config = validate_config({
            "results_dir": str(tmp / "results"), "regions": {"r": {"scenes": {"s": {}}}},
            "mapping": {"checkpoint": "none.pt"}, "model": {"name": "fcn"}, "training": {"dataset": "none"},
            "operations": {"region": "r", "inbox": str(inbox), "settle_seconds": 0},
        })
        settings = OperationsSettings.from_config(config)
        with Ledger(settings.ledger) as ledger:  # every delivery already done
            for entry in scan_inbox(inbox, settle_seconds=0, require_done_marker=False):
                ledger.record_discovered(entry.name, entry.path, delivery_checksum(entry.path), entry.signature, entry.size_bytes, "seed")
                ledger.mark_done(entry.name, "seed", outputs={})
        times = []
        for _ in range(5):
            start = time.perf_counter()
            summary = run_scheduled(config, settings=settings, echo=lambda _l: None)
            times.append(time.perf_counter() - start)
            assert summary.nothing_to_do
        print(f"pass with nothing new over {deliveries} known deliveries (6 files each): median {np.median(times) * 1000:.0f} ms (5 runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--polygons", type=int, default=2000)
    parser.add_argument("--deliveries", type=int, default=300)
    args = parser.parse_args()
    bench_inventory(args.scenes, args.polygons)
    bench_noop_pass(args.deliveries)


if __name__ == "__main__":
    main()
