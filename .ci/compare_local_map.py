"""Map a workflow run's demo scene again in this process (no SLURM, no Snakemake) and check that
the run's probability.tif and landslides.gpkg equal the local map's (.ci/slurm_demo.sh).

    python .ci/compare_local_map.py RESULTS/demo OUT_DIR [--workers 2]

Same scene, checkpoint, DEM and config.yaml `mapping` settings as rule map_scene. Prints the
largest probability difference and the polygon counts; exits 1 naming what differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import torch
import yaml

from lsmap.mapping import MappingOptions, map_scene

PROBABILITY_ATOL = 1e-4  # README: maps made on a cluster compare to 1e-4
AREA_RTOL = 1e-6


def compare_probability(cluster: Path, local: Path) -> list[str]:
    with rasterio.open(cluster) as a, rasterio.open(local) as b:
        if (a.crs, a.transform, a.shape, a.nodata) != (b.crs, b.transform, b.shape, b.nodata):
            return [f"{cluster}: grid {a.crs} {a.transform} {a.shape} nodata {a.nodata} != local {b.crs} "
                    f"{b.transform} {b.shape} nodata {b.nodata}"]
        pa, pb = a.read(1), b.read(1)
    if not np.array_equal(pa == a.nodata, pb == b.nodata):
        return [f"{cluster}: nodata pixels differ from the local map"]
    diff = float(np.abs(pa - pb).max())
    print(f"probability.tif: {pa.shape[0]}x{pa.shape[1]} px, max |cluster - local| = {diff:.3g}")
    return [] if diff <= PROBABILITY_ATOL else [f"{cluster}: max probability difference {diff:.3g} > {PROBABILITY_ATOL}"]


def compare_polygons(cluster: Path, local: Path) -> list[str]:
    a = gpd.read_file(cluster, layer="landslides").sort_values("area_m2", ignore_index=True)
    b = gpd.read_file(local, layer="landslides").sort_values("area_m2", ignore_index=True)
    print(f"landslides.gpkg: {len(a)} polygons on the cluster, {len(b)} locally, "
          f"{a.area_m2.sum():.1f} m2 vs {b.area_m2.sum():.1f} m2")
    if len(a) == 0:
        return [f"{cluster}: no landslide polygons (the demo scene has scars)"]
    if len(a) != len(b):
        return [f"{cluster}: {len(a)} polygons, the local map has {len(b)}"]
    if not np.allclose(a.area_m2, b.area_m2, rtol=AREA_RTOL):
        return [f"{cluster}: polygon areas differ from the local map's"]
    mismatch = a.geometry.union_all().symmetric_difference(b.geometry.union_all()).area
    return [] if mismatch <= AREA_RTOL * a.area_m2.sum() else [f"{cluster}: polygons differ by {mismatch:.1f} m2"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("region_dir", type=Path, help="results/demo of the workflow run")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    config = yaml.safe_load(Path("config.yaml").read_text())
    scene = args.region_dir / "demo_scene"
    torch.set_num_threads(args.workers)
    options = MappingOptions.from_config(config["mapping"], workers=args.workers, progress=False)
    map_scene(scene / "ard" / "reflectance.tif", args.region_dir / "model" / "best.pt", args.out_dir,
              options=options, dem=args.region_dir / "inbox" / "dem.tif", scene_id="demo_scene")
    problems = compare_probability(scene / "probability.tif", args.out_dir / "probability.tif")
    problems += compare_polygons(scene / "landslides.gpkg", args.out_dir / "landslides.gpkg")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
