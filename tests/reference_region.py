"""The region summary as it was before it streamed (session 20): every scene's polygons read at
once and dissolved in one frame. Kept only as the oracle of tests/test_region.py, which checks
that lsmap.region.summarize_region writes the same landslides and statistics."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

import lsmap
from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output
from lsmap.mapping import utc_now, write_polygons
from lsmap.region import raster_extent, region_area_crs  # unchanged by the streamed rewrite: not copied


def reference_summarize_region(region: str, scene_dirs: Mapping[str, Path], out_dir: Path, *, bins_per_decade: int = 5) -> dict[str, Path]:
    """Merge the mapped scenes of a region (``{scene_id: directory written by map_scene}``) into
    ``out_dir``/{landslides.gpkg, stats.json, stats.csv, frequency_area.png}.

    Overlap rule and area CRS: see :mod:`lsmap.stats`.
    """
    import geopandas as gpd
    import shapely

    from lsmap.stats import SUMMARY_KEYS, frequency_area, plot_frequency_area, summarize, valid_footprint

    out_dir = Path(out_dir)
    if not scene_dirs:
        raise LsmapError(f"region '{region}': no scenes to summarise")
    scene_stats, frames = {}, []
    for scene_id, directory in scene_dirs.items():
        stats_path = Path(directory) / "scene_stats.json"
        try:
            scene_stats[scene_id] = json.loads(stats_path.read_text())
        except (OSError, ValueError) as exc:
            raise LsmapError(f"{stats_path}: cannot read scene statistics ({exc})") from exc
        frames.append(gpd.read_file(Path(directory) / "landslides.gpkg", layer="landslides"))
    area_crs = region_area_crs(scene_dirs, scene_stats)
    footprints, extents = [], []
    for scene_id, directory in scene_dirs.items():
        mask = Path(directory) / "mask.tif"
        footprints.append(valid_footprint(mask, area_crs))
        extents.append(raster_extent(mask, area_crs))
    observed_sum = sum(s["summary"]["observed_area_km2"] for s in scene_stats.values()) * 1e6
    overlap = sum(f.area for f in footprints) - shapely.union_all(footprints).area
    observed = observed_sum - overlap
    unobserved = max(0.0, shapely.union_all(extents).area - observed) if len(extents) > 1 else \
        next(iter(scene_stats.values()))["summary"]["unobserved_area_km2"] * 1e6
    merged = reference_merge_region_polygons(frames, area_crs)
    summary = summarize(merged["area_m2"].to_numpy() if len(merged) else [], observed, unobserved)
    edges, counts = frequency_area(merged["area_m2"].to_numpy() if len(merged) else [], bins_per_decade)
    first = next(iter(scene_stats.values()))["provenance"]
    provenance = {
        "lsmap_version": lsmap.__version__,
        "checkpoint": first["checkpoint"],
        "checkpoint_sha256": first["checkpoint_sha256"],
        "config_sha256": first["config_sha256"],
        "scenes": [s["provenance"]["scenes"][0] for s in scene_stats.values()],
        "created_utc": utc_now(),
    }
    distinct = {s["provenance"]["checkpoint_sha256"] for s in scene_stats.values()}
    if len(distinct) > 1:
        provenance["checkpoint_sha256_all"] = sorted(distinct)
    stats = {
        "region": region,
        "provenance": provenance,
        "area_crs": area_crs.to_string(),
        "overlap_rule": "intersecting polygons from different scenes are dissolved into one landslide",
        "summary": summary,
        "scenes": {scene_id: s["summary"] for scene_id, s in scene_stats.items()},
        "frequency_area": {"bin_edges_m2": edges, "counts": counts},
    }
    outputs = {name: out_dir / name for name in ("landslides.gpkg", "stats.json", "stats.csv", "frequency_area.png")}
    columns = ["id", "scene_id", "scene_ids", "acquired", "area_m2", "perimeter_m", "prob_mean", "prob_max",
               "centroid_lon", "centroid_lat"] + [c for c in ("slope_mean_deg", "elevation_mean_m") if c in merged]
    write_polygons(merged[columns + ["geometry"]], outputs["landslides.gpkg"], None, provenance)
    with atomic_output(outputs["stats.json"]) as tmp:
        tmp.write_text(json.dumps(stats, indent=2))
    with atomic_output(outputs["stats.csv"]) as tmp:
        lines = [",".join(["level", "id"] + SUMMARY_KEYS)]
        for level, key, values in [("scene", k, v) for k, v in stats["scenes"].items()] + [("region", region, summary)]:
            lines.append(",".join([level, key] + [f"{values[k]:.6g}" for k in SUMMARY_KEYS]))
        tmp.write_text("\n".join(lines) + "\n")
    plot_frequency_area(edges, counts, outputs["frequency_area.png"],
                        f"{region}: {summary['landslide_count']} landslides, {summary['landslide_area_km2']:.3f} km²")
    return outputs


def reference_merge_region_polygons(frames, area_crs: CRS):
    """One GeoDataFrame on ``area_crs`` from the scenes' landslides, overlaps dissolved (see module doc)."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    frames = [f.to_crs(area_crs) for f in frames if len(f)]
    if not frames:
        columns = ["id", "scene_id", "scene_ids", "acquired", "area_m2", "perimeter_m", "prob_mean", "prob_max",
                   "centroid_lon", "centroid_lat"]
        return gpd.GeoDataFrame({c: [] for c in columns}, geometry=[], crs=area_crs)
    allp = pd.concat(frames, ignore_index=True)
    allp["_weight"] = allp.geometry.area
    # connected groups of intersecting polygons (only polygons from different scenes can intersect)
    tree = shapely.STRtree(allp.geometry.values)
    left, right = tree.query(allp.geometry.values, predicate="intersects")
    scenes = allp["scene_id"].to_numpy()
    pairs = (left < right) & (scenes[left] != scenes[right])  # within a scene, polygons are distinct by construction
    left, right = left[pairs], right[pairs]
    shared = shapely.area(shapely.intersection(allp.geometry.values[left], allp.geometry.values[right]))
    left, right = left[shared > 0], right[shared > 0]  # touching outlines only: two landslides side by side
    parent = np.arange(len(allp))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(left, right):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    allp["_group"] = [find(i) for i in range(len(allp))]
    rows = []
    for _, group in allp.groupby("_group", sort=True):
        weight = group["_weight"].to_numpy()
        geometry = group.geometry.iloc[0] if len(group) == 1 else shapely.union_all(group.geometry.values)
        row = {
            "scene_id": group["scene_id"].iloc[int(np.argmax(weight))],
            "scene_ids": ",".join(sorted(set(group["scene_id"]))),
            "acquired": max(group["acquired"].fillna("")),
            "prob_mean": float(np.average(group["prob_mean"], weights=weight)),
            "prob_max": float(group["prob_max"].max()),
            "geometry": geometry,
        }
        for column in ("slope_mean_deg", "elevation_mean_m"):
            if column in group and group[column].notna().any():
                ok = group[column].notna().to_numpy()
                row[column] = float(np.average(group[column][ok], weights=weight[ok]))
        rows.append(row)
    merged = gpd.GeoDataFrame(rows, geometry="geometry", crs=area_crs)
    merged["area_m2"] = merged.geometry.area
    merged["perimeter_m"] = merged.geometry.length
    centroids = merged.geometry.centroid.to_crs("EPSG:4326")
    merged["centroid_lon"], merged["centroid_lat"] = centroids.x, centroids.y
    merged.insert(0, "id", np.arange(1, len(merged) + 1, dtype=np.int64))
    return merged
