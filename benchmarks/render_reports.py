"""Render the HTML reports in headless Chromium: load time, errors, network requests, screenshots.

    .venv/bin/python benchmarks/render_reports.py                 # every results/<region>/report.html
                                                                  # and results/benchmark/report.html
    .venv/bin/python benchmarks/render_reports.py --sample        # a generated sample region instead
    .venv/bin/python benchmarks/render_reports.py --stress 20000  # a region of 20,000 polygons (map speed)

Screenshots (full page, 1400 px wide) go to benchmarks/results/render/. Exit status 1 when any
page has a script error or makes a network request. Needs /usr/bin/chromium (apt-get install chromium).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "render"


def make_sample_region(root: Path, size_px: int = 2048) -> Path:
    """A region from lsmap.synthetic's landscape: its true scars play the mapped landslides, with
    summary statistics computed here (areas on the scene's UTM grid)."""
    import numpy as np
    import rasterio

    from lsmap.export import export_region
    from lsmap.quicklook import make_quicklook
    from lsmap.synthetic import generate_landscape

    region, scene_id = root / "sample", "GF6_PMS_SAMPLE_20220910"
    scene = region / scene_id
    land = generate_landscape(scene / "ard", seed=7, size_px=size_px)
    import geopandas as gpd

    polygons = gpd.read_file(land.truth_polygons, layer="landslides")
    polygons = polygons[polygons.area >= 100].reset_index(drop=True)
    rng = np.random.default_rng(0)
    polygons = polygons.assign(id=np.arange(1, len(polygons) + 1), scene_id=scene_id, acquired="2022-09-10",
                               area_m2=polygons.area, perimeter_m=polygons.length,
                               prob_mean=rng.uniform(0.55, 0.95, len(polygons)).round(3))
    polygons["prob_max"] = (polygons.prob_mean + 0.04).clip(upper=1.0)
    polygons.to_file(scene / "landslides.gpkg", layer="landslides", driver="GPKG")
    polygons.assign(scene_ids=scene_id).to_file(region / "landslides.gpkg", layer="landslides", driver="GPKG")
    with rasterio.open(land.truth_mask) as src:
        truth = src.read(1)
        pixel_km2 = abs(src.res[0] * src.res[1]) / 1e6
        profile = src.profile
    with rasterio.open(scene / "mask.tif", "w", **profile) as dst:
        dst.write(truth[None])
    observed = float((truth != 255).sum() * pixel_km2)
    unobserved = float((truth == 255).sum() * pixel_km2)
    area = float(polygons.area_m2.sum() / 1e6)
    summary = {"landslide_count": len(polygons), "landslide_area_km2": area, "observed_area_km2": observed,
               "unobserved_area_km2": unobserved, "areal_density_pct": 100 * area / observed,
               "count_density_per_km2": len(polygons) / observed}
    edges = np.logspace(2, 5, 13)
    counts, _ = np.histogram(polygons.area_m2, bins=edges)
    stats = {"region": "sample", "area_crs": "EPSG:32648", "summary": summary, "scenes": {scene_id: summary},
             "provenance": {"lsmap_version": "0.1.0", "checkpoint": "(sample: true scars, no model)",
                            "checkpoint_sha256": "-", "config_sha256": "-",
                            "scenes": [{"scene_id": scene_id, "image": str(land.reflectance), "acquired": "2022-09-10"}],
                            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
             "frequency_area": {"bin_edges_m2": edges.tolist(), "counts": counts.tolist()}}
    (region / "stats.json").write_text(json.dumps(stats, indent=1))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    centres = np.sqrt(edges[:-1] * edges[1:])
    ax.loglog(centres, counts / np.diff(edges), "o-")
    ax.set_xlabel("landslide area (m²)")
    ax.set_ylabel("frequency density (1/m²)")
    fig.savefig(region / "frequency_area.png")
    make_quicklook(land.reflectance, scene / "landslides.gpkg", scene / "quicklook.png", scene / "quicklook.tif",
                   scene_id=scene_id)
    export_region(region / "landslides.gpkg", region / "landslides.geojson", region / "landslides.kml")
    return region


def make_stress_region(root: Path, count: int) -> Path:
    """``count`` random landslides (5-400 m radius) over 40 x 40 km: how the map copes with a big event."""
    import numpy as np
    import geopandas as gpd
    import shapely

    region = root / "stress"
    region.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    x = 420000 + rng.uniform(0, 40000, count)
    y = 3680000 + rng.uniform(0, 40000, count)
    geoms = shapely.buffer(shapely.points(x, y), rng.lognormal(3.0, 0.8, count).clip(5, 400), quad_segs=6)
    frame = gpd.GeoDataFrame({"id": np.arange(1, count + 1), "scene_id": "STRESS", "acquired": "2022-09-10",
                              "area_m2": shapely.area(geoms), "prob_mean": rng.uniform(0.5, 1, count).round(3)},
                             geometry=geoms, crs="EPSG:32648")
    frame.to_file(region / "landslides.gpkg", layer="landslides", driver="GPKG")
    area_km2 = float(frame.area_m2.sum() / 1e6)
    summary = {"landslide_count": count, "landslide_area_km2": area_km2, "observed_area_km2": 1600.0,
               "unobserved_area_km2": 0.0, "areal_density_pct": area_km2 / 16, "count_density_per_km2": count / 1600}
    stats = {"region": "stress", "area_crs": "EPSG:32648", "summary": summary, "scenes": {"STRESS": summary},
             "provenance": {"lsmap_version": "0.1.0", "checkpoint": "-", "checkpoint_sha256": "-", "config_sha256": "-",
                            "scenes": [{"scene_id": "STRESS", "image": "-", "acquired": "2022-09-10"}],
                            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
    (region / "stats.json").write_text(json.dumps(stats))
    from lsmap.export import export_region

    export_region(region / "landslides.gpkg", region / "landslides.geojson")
    return region


def check(page: Path, name: str) -> bool:
    from lsmap.report import check_in_chromium

    t0 = time.perf_counter()
    result = check_in_chromium(page, screenshot=OUT / f"{name}.png")
    total = time.perf_counter() - t0
    size_mb = page.stat().st_size / 1e6
    print(f"{name}: {page} ({size_mb:.1f} MB): ready {result.load_seconds:.2f} s after navigation "
          f"({total:.1f} s with browser start and screenshot); map polygons {result.attributes.get('map-polygons')}; "
          f"{len(result.errors)} error(s), {len(result.requests)} request(s); screenshot {result.screenshot}")
    for line in result.errors + [f"request: {u}" for u in result.requests]:
        print("   ", line)
    return not (result.errors or result.requests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "results"))
    parser.add_argument("--sample", action="store_true", help="render a generated sample region")
    parser.add_argument("--stress", type=int, metavar="N", help="render a region of N random polygons")
    args = parser.parse_args()
    from lsmap.report import build_region_report_from_dir, find_chromium

    if find_chromium() is None:
        print("no Chromium: apt-get install -y chromium (or set LSMAP_CHROMIUM)")
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    pages = []
    if args.sample:
        region = make_sample_region(OUT / "results")
        t0 = time.perf_counter()
        build_region_report_from_dir(region)
        print(f"sample region report built in {time.perf_counter() - t0:.2f} s")
        pages.append((region / "report.html", "region_sample"))
    elif args.stress:
        region = make_stress_region(OUT / "results", args.stress)
        t0 = time.perf_counter()
        build_region_report_from_dir(region)
        print(f"stress region report ({args.stress} polygons) built in {time.perf_counter() - t0:.2f} s")
        pages.append((region / "report.html", f"region_stress_{args.stress}"))
    else:
        results = Path(args.results)
        pages += [(p, f"region_{p.parent.name}") for p in sorted(results.glob("*/report.html"))
                  if (p.parent / "stats.json").exists()]
        if (results / "benchmark" / "report.html").exists():
            pages.append((results / "benchmark" / "report.html", "benchmark"))
    if not pages:
        print(f"no reports under {args.results} (run `snakemake report_<region>` or use --sample)")
        return 1
    return 0 if all([check(page, name) for page, name in pages]) else 1


if __name__ == "__main__":
    sys.exit(main())
