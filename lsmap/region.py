"""The region summary: a region's mapped scenes merged into one set of landslides and statistics.

``summarize_region(region, {scene_id: scene_dir}, out_dir)`` reads what :func:`lsmap.mapping.map_scene`
wrote per scene (landslides.gpkg, mask.tif, scene_stats.json) and writes ``out_dir``/{landslides.gpkg
(+ scene_ids, on the region's area CRS), stats.json, stats.csv, frequency_area.png}. Overlap rule and
area CRS: see :mod:`lsmap.stats`.

Bounded by design: the polygons of a region are never all in memory. Each scene's GeoPackage is read
in batches of ``batch_rows``, twice:

1. *Overlap pass.* A polygon can only overlap a polygon of another scene if it lies inside that
   scene's raster extent. Each scene's *overlap zone* is the union of the other scenes' extents
   (on the area CRS, grown by a margin for the densified reprojection of the outlines); only the
   polygons that touch it are kept (geometry and attributes), and only among those are overlaps
   searched, with an STRtree (never all pairs), and dissolved.
2. *Write pass.* The batches are read again and written in batches to the output: polygons outside
   the zones as they are (on the area CRS, area/perimeter/centroid recomputed there), each dissolved
   landslide in place of its first member. Only per-polygon numbers (area, a group index) and the
   zone polygons are held.

The output is that of the all-in-memory summary (tests/reference_region.py, checked by
tests/test_region.py): same landslides, attributes and statistics. Ids run 1..N in the order of the
scenes as given, then of the rows in each scene's GeoPackage; a dissolved landslide takes the place
of its first member in that order. Memory grows with the polygons in overlap zones (scene overlaps
are a few km wide) and 12 bytes per polygon, not with the region.

The region's observed area is the union of the scenes' valid-data footprints (decimated masks,
:func:`lsmap.stats.valid_footprint`), never full-resolution masks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import rasterio

import lsmap
from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output
from lsmap.provenance import provenance_tags, utc_now

log = logging.getLogger("lsmap.region")

BATCH_ROWS = 20_000  # polygons per read/write batch (~16 vertices each: tens of MB)
REGION_COLUMNS = ["id", "scene_id", "scene_ids", "acquired", "area_m2", "perimeter_m", "prob_mean", "prob_max",
                  "centroid_lon", "centroid_lat"]
DEM_COLUMNS = ("slope_mean_deg", "elevation_mean_m")
OUTSIDE, ABSORBED = -1, -2  # group codes of a polygon: outside every zone; dissolved into an earlier one


def summarize_region(region: str, scene_dirs: Mapping[str, Path], out_dir: Path, *, bins_per_decade: int = 5,
                     batch_rows: int = BATCH_ROWS, progress: bool = True) -> dict[str, Path]:
    """Merge the mapped scenes of a region (``{scene_id: directory written by map_scene}``) into
    ``out_dir``/{landslides.gpkg, stats.json, stats.csv, frequency_area.png} (see the module doc).
    Every file is written under a temporary name and renamed when complete."""
    from lsmap.stats import frequency_area, plot_frequency_area, summarize, valid_footprint

    out_dir = Path(out_dir)
    if not scene_dirs:
        raise LsmapError(f"region '{region}': no scenes to summarise")
    scenes = {scene_id: Path(directory) for scene_id, directory in scene_dirs.items()}
    scene_stats = {scene_id: read_scene_stats(directory) for scene_id, directory in scenes.items()}
    gpkgs = {scene_id: directory / "landslides.gpkg" for scene_id, directory in scenes.items()}
    counts = {scene_id: landslide_count(path) for scene_id, path in gpkgs.items()}
    area_crs = region_area_crs(scenes, scene_stats)
    footprints, extents = [], []
    for directory in scenes.values():
        mask = directory / "mask.tif"
        footprints.append(valid_footprint(mask, area_crs))
        extents.append(raster_extent(mask, area_crs))
    observed, unobserved = region_observed_m2(footprints, extents, scene_stats)

    zones = overlap_zones(extents)
    total = sum(counts.values())
    with _bar(2 * total, f"{region} region summary", progress) as bar:
        zone_frame, dem_columns = zone_polygons(gpkgs, counts, zones, area_crs, batch_rows, bar)
        group_of, dissolved = dissolve_zone_polygons(zone_frame, total, area_crs)
        log.info("%s: %d polygons from %d scenes, %d in scene overlaps, dissolved into %d", region, total, len(scenes),
                 len(zone_frame), len(dissolved))
        provenance = region_provenance(scene_stats)
        outputs = {name: out_dir / name for name in ("landslides.gpkg", "stats.json", "stats.csv", "frequency_area.png")}
        areas = write_region_gpkg(region_batches(gpkgs, counts, group_of, dissolved, area_crs, dem_columns, batch_rows, bar),
                                  outputs["landslides.gpkg"], provenance)
    summary = summarize(areas, observed, unobserved)
    edges, bins = frequency_area(areas, bins_per_decade)
    stats = {
        "region": region,
        "provenance": provenance,
        "area_crs": area_crs.to_string(),
        "overlap_rule": "intersecting polygons from different scenes are dissolved into one landslide",
        "summary": summary,
        "scenes": {scene_id: s["summary"] for scene_id, s in scene_stats.items()},
        "frequency_area": {"bin_edges_m2": edges, "counts": bins},
    }
    with atomic_output(outputs["stats.json"]) as tmp:
        tmp.write_text(json.dumps(stats, indent=2))
    write_stats_csv(outputs["stats.csv"], region, stats)
    plot_frequency_area(edges, bins, outputs["frequency_area.png"],
                        f"{region}: {summary['landslide_count']} landslides, {summary['landslide_area_km2']:.3f} km²")
    return outputs


def _bar(total: int, desc: str, enabled: bool):
    from lsmap.progress import progress_bar

    return progress_bar(total, desc, "polygon", enabled)


# ---------------------------------------------------------------------------------------- inputs


def read_scene_stats(directory: Path) -> dict:
    stats_path = directory / "scene_stats.json"
    try:
        return json.loads(stats_path.read_text())
    except (OSError, ValueError) as exc:
        raise LsmapError(f"{stats_path}: cannot read scene statistics ({exc})") from exc


def landslide_count(gpkg: Path) -> int:
    """Rows of the "landslides" layer (from the GeoPackage's own count: nothing is read)."""
    import pyogrio

    try:
        return int(pyogrio.read_info(gpkg, layer="landslides")["features"])
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        raise LsmapError(f"{gpkg}: cannot read the landslides layer ({exc})") from exc


def scene_batches(gpkg: Path, count: int, area_crs, batch_rows: int, columns: list[str] | None = None) -> Iterator:
    """The scene's landslides on ``area_crs``, ``batch_rows`` at a time, in file order."""
    import pyogrio

    for start in range(0, count, batch_rows):
        frame = pyogrio.read_dataframe(gpkg, layer="landslides", skip_features=start, max_features=batch_rows,
                                       columns=columns)
        yield start, frame.to_crs(area_crs)


def region_area_crs(scene_dirs: Mapping[str, Path], scene_stats: Mapping[str, dict]):
    """The scenes' common area CRS when they share one, else the UTM zone of the region centre."""
    from pyproj import CRS, Transformer

    from lsmap.stats import utm_crs_at

    crss = {s["area_crs"] for s in scene_stats.values()}
    if len(crss) == 1:
        return CRS.from_user_input(crss.pop())
    lons, lats = [], []
    for directory in scene_dirs.values():
        with rasterio.open(Path(directory) / "mask.tif") as src:
            b = src.bounds
            lon, lat = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True).transform((b.left + b.right) / 2, (b.bottom + b.top) / 2)
        lons.append(lon)
        lats.append(lat)
    return utm_crs_at(float(np.mean(lons)), float(np.mean(lats)))


def raster_extent(path: Path, area_crs):
    """The raster's full extent as a polygon on ``area_crs`` (edges densified before reprojecting)."""
    import geopandas as gpd
    import shapely

    with rasterio.open(path) as src:
        box = shapely.segmentize(shapely.box(*src.bounds), max(src.bounds.right - src.bounds.left, src.bounds.top - src.bounds.bottom) / 64)
        return gpd.GeoSeries([box], crs=src.crs).to_crs(area_crs).iloc[0]


def region_observed_m2(footprints: list, extents: list, scene_stats: Mapping[str, dict]) -> tuple[float, float]:
    """(observed, unobserved) m2 of the region: the scenes' observed areas less the overlaps of their
    valid-data footprints; unobserved = the union of the extents less the observed area."""
    import shapely

    observed_sum = sum(s["summary"]["observed_area_km2"] for s in scene_stats.values()) * 1e6
    overlap = sum(f.area for f in footprints) - shapely.union_all(footprints).area
    observed = observed_sum - overlap
    if len(extents) > 1:
        return observed, max(0.0, shapely.union_all(extents).area - observed)
    return observed, next(iter(scene_stats.values()))["summary"]["unobserved_area_km2"] * 1e6


# ------------------------------------------------------------------------------------- overlaps


def overlap_zones(extents: list) -> list:
    """Per scene, the area where its polygons may meet another scene's: the union of the other
    scenes' extents, grown by 10 m + 0.1 % of their size (the densified outline of a reprojected
    extent departs from the true edge by far less). Prepared for fast ``intersects``."""
    import shapely

    grown = [shapely.buffer(e, 10.0 + 1e-3 * np.sqrt(e.area), quad_segs=2) for e in extents]
    zones = []
    for i in range(len(extents)):
        others = [g for j, g in enumerate(grown) if j != i]
        zone = shapely.union_all(others) if others else shapely.Polygon()
        shapely.prepare(zone)
        zones.append(zone)
    return zones


def zone_polygons(gpkgs: Mapping[str, Path], counts: Mapping[str, int], zones: list, area_crs, batch_rows: int, bar):
    """The overlap pass: the polygons of every scene that touch its overlap zone (on ``area_crs``,
    with ``_index``, their position in the region's order), and the DEM columns with a value in any
    scene (the output has a DEM column when any input row has one, as the all-in-memory summary)."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    kept, offset, dem_columns = [], 0, set()
    for (scene_id, gpkg), zone in zip(gpkgs.items(), zones):
        for start, frame in scene_batches(gpkg, counts[scene_id], area_crs, batch_rows):
            dem_columns.update(c for c in DEM_COLUMNS if c in frame and frame[c].notna().any())
            inside = shapely.intersects(zone, frame.geometry.values) if not zone.is_empty else np.zeros(len(frame), bool)
            if inside.any():
                part = frame[inside].copy()
                part["_index"] = offset + start + np.flatnonzero(inside)
                kept.append(part)
            bar.update(len(frame))
        offset += counts[scene_id]
    if not kept:
        return gpd.GeoDataFrame({"_index": np.zeros(0, np.int64)}, geometry=[], crs=area_crs), [c for c in DEM_COLUMNS if c in dem_columns]
    return gpd.GeoDataFrame(pd.concat(kept, ignore_index=True), crs=area_crs), [c for c in DEM_COLUMNS if c in dem_columns]


def dissolve_zone_polygons(zone: "gpd.GeoDataFrame", total: int, area_crs):  # noqa: F821
    """Group the zone polygons that overlap across scenes (STRtree query, union-find) and dissolve
    each group. Returns ``group_of`` (int32 per polygon of the region: ``OUTSIDE``, ``ABSORBED``
    or the row of ``dissolved`` that replaces it, set on its first member) and ``dissolved``
    (attributes and geometry of each group of two or more polygons, by the rule of lsmap.stats)."""
    import shapely

    group_of = np.full(total, OUTSIDE, np.int32)
    if not len(zone):
        return group_of, []
    geometries = zone.geometry.values
    tree = shapely.STRtree(geometries)
    left, right = tree.query(geometries, predicate="intersects")
    scenes = zone["scene_id"].to_numpy()
    pairs = (left < right) & (scenes[left] != scenes[right])  # within a scene, polygons are distinct by construction
    left, right = left[pairs], right[pairs]
    shared = shapely.area(shapely.intersection(geometries[left], geometries[right]))
    left, right = left[shared > 0], right[shared > 0]  # touching outlines only: two landslides side by side
    root = union_find_roots(len(zone), left, right)  # the smallest member: the first in the region's order
    indexes = zone["_index"].to_numpy()
    dissolved = []
    members_of = {}
    for member, r in enumerate(root):
        members_of.setdefault(r, []).append(member)
    for r, members in members_of.items():
        if len(members) == 1:
            continue  # in a zone but overlapping nothing: written as it is, like any other polygon
        group_of[indexes[members]] = ABSORBED
        group_of[indexes[r]] = len(dissolved)
        dissolved.append(dissolved_row(zone.iloc[members]))
    return group_of, dissolved


def union_find_roots(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """For each of ``n`` items, the smallest item of its connected group (edges ``left``-``right``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(left), np.int8), (left, right)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    smallest = np.full(labels.max() + 1 if n else 0, n, np.int64)
    np.minimum.at(smallest, labels, np.arange(n))
    return smallest[labels]


def dissolved_row(group) -> dict:
    """One landslide from overlapping polygons of several scenes (the rule in lsmap.stats)."""
    import shapely

    weight = group.geometry.area.to_numpy()
    row = {
        "scene_id": group["scene_id"].iloc[int(np.argmax(weight))],
        "scene_ids": ",".join(sorted(set(group["scene_id"]))),
        "acquired": max(group["acquired"].fillna("")),
        "prob_mean": float(np.average(group["prob_mean"], weights=weight)),
        "prob_max": float(group["prob_max"].max()),
        "geometry": shapely.union_all(group.geometry.values),
    }
    for column in DEM_COLUMNS:
        if column in group and group[column].notna().any():
            ok = group[column].notna().to_numpy()
            row[column] = float(np.average(group[column][ok], weights=weight[ok]))
    return row


# ---------------------------------------------------------------------------------------- output


def region_batches(gpkgs: Mapping[str, Path], counts: Mapping[str, int], group_of: np.ndarray, dissolved: list,
                   area_crs, dem_columns: list[str], batch_rows: int, bar) -> Iterator:
    """The write pass: the region's landslides as consecutive GeoDataFrames (REGION_COLUMNS + the
    DEM columns, on ``area_crs``), ids 1..N in region order (see the module doc)."""
    offset, next_id = 0, 1
    for scene_id, gpkg in gpkgs.items():
        for start, frame in scene_batches(gpkg, counts[scene_id], area_crs, batch_rows):
            groups = group_of[offset + start: offset + start + len(frame)]
            out = region_frame(frame, groups, dissolved, area_crs, dem_columns, next_id)
            next_id += len(out)
            bar.update(len(frame))
            if len(out):
                yield out
        offset += counts[scene_id]
    if next_id == 1:  # no landslides at all: an empty layer with the columns
        yield empty_region_frame(area_crs)


def region_frame(frame, groups: np.ndarray, dissolved: list, area_crs, dem_columns: list[str], first_id: int):
    """One output batch: the rows of ``frame`` outside any group as they are, each group's first
    member replaced by the dissolved landslide, absorbed members dropped."""
    import geopandas as gpd
    import pandas as pd

    keep = groups != ABSORBED
    frame, groups = frame[keep], groups[keep]
    rows = pd.DataFrame({
        "scene_id": frame["scene_id"].to_numpy(),
        "scene_ids": frame["scene_id"].to_numpy(),
        "acquired": frame["acquired"].fillna("").to_numpy(),
        "prob_mean": frame["prob_mean"].to_numpy(dtype=float),
        "prob_max": frame["prob_max"].to_numpy(dtype=float),
    })
    for column in dem_columns:
        rows[column] = frame[column].to_numpy(dtype=float) if column in frame else np.nan
    geometry = frame.geometry.values.copy()
    for position in np.flatnonzero(groups >= 0):
        row = dissolved[groups[position]]
        for column in ("scene_id", "scene_ids", "acquired", "prob_mean", "prob_max"):
            rows.at[position, column] = row[column]
        for column in dem_columns:
            rows.at[position, column] = row.get(column, np.nan)
        geometry[position] = row["geometry"]
    out = gpd.GeoDataFrame(rows, geometry=geometry, crs=area_crs)
    out["area_m2"] = out.geometry.area
    out["perimeter_m"] = out.geometry.length
    centroids = out.geometry.centroid.to_crs("EPSG:4326")
    out["centroid_lon"], out["centroid_lat"] = centroids.x.to_numpy(), centroids.y.to_numpy()
    out.insert(0, "id", np.arange(first_id, first_id + len(out), dtype=np.int64))
    return out[REGION_COLUMNS + dem_columns + ["geometry"]]


def empty_region_frame(area_crs):
    import geopandas as gpd

    return gpd.GeoDataFrame({c: [] for c in REGION_COLUMNS}, geometry=[], crs=area_crs)


def write_region_gpkg(batches: Iterator, gpkg: Path, provenance: dict) -> np.ndarray:
    """Layer "landslides" of ``gpkg`` from consecutive GeoDataFrames, with the provenance as layer
    metadata (the items lsmap.mapping.write_polygons writes), under a temporary name renamed when
    complete. Returns the area_m2 of every row. Written here rather than through write_polygons:
    lsmap.mapping imports torch (0.4 GB of RSS) for inference, which the region never runs."""
    areas = []
    with atomic_output(gpkg) as tmp:
        for position, frame in enumerate(batches):
            frame.to_file(tmp, layer="landslides", driver="GPKG", engine="pyogrio",
                          **({"metadata": provenance_tags(provenance)} if position == 0 else {"append": True}))
            areas.append(frame["area_m2"].to_numpy(dtype=float))
    return np.concatenate(areas) if areas else np.zeros(0)


def region_provenance(scene_stats: Mapping[str, dict]) -> dict:
    """lsmap version, the first scene's checkpoint and config, every scene, the time (and every
    checkpoint SHA-256 when the scenes were mapped with different ones)."""
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
    return provenance


def write_stats_csv(path: Path, region: str, stats: dict) -> None:
    """stats.csv: one row per scene and one for the region, the summary keys."""
    from lsmap.stats import SUMMARY_KEYS

    with atomic_output(path) as tmp:
        lines = [",".join(["level", "id"] + SUMMARY_KEYS)]
        for level, key, values in [("scene", k, v) for k, v in stats["scenes"].items()] + [("region", region, stats["summary"])]:
            lines.append(",".join([level, key] + [f"{values[k]:.6g}" for k in SUMMARY_KEYS]))
        tmp.write_text("\n".join(lines) + "\n")
