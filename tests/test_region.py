"""The streaming region summary (lsmap.region) writes what the all-in-memory one wrote
(tests/reference_region.py): same landslides in the same order, areas to 1e-9, same stats.json."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.transform import from_bounds, from_origin

from lsmap.region import OUTSIDE, dissolve_zone_polygons, overlap_zones, raster_extent, summarize_region, zone_polygons
from reference_region import reference_summarize_region

X0, Y0, PIXEL_M, SIDE_PX, MARGIN_PX = 400_000.0, 3_500_000.0, 2.0, 200, 10
STEP_M = 300.0  # scenes 400 m wide, 300 m apart: 100 m overlaps
UTM = "EPSG:32648"


def scene_polygons(rng, x0: float, y0: float, count: int) -> np.ndarray:
    """Disc centres anywhere in the scene's valid area (so some fall in the overlaps)."""
    lo, hi = (MARGIN_PX + 8) * PIXEL_M, (SIDE_PX - MARGIN_PX - 8) * PIXEL_M
    return np.column_stack([x0 + rng.uniform(lo, hi, count), y0 - rng.uniform(lo, hi, count)])


def write_scene(directory, scene_id: str, x0: float, y0: float, geometries, rng, crs: str = UTM, dem: bool = False):
    """mask.tif, landslides.gpkg (layers landslides + footprint) and scene_stats.json as map_scene
    writes them; the mask and the polygons on ``crs`` (the polygons are made on UTM)."""
    directory.mkdir(parents=True)
    side_m = SIDE_PX * PIXEL_M
    if crs == UTM:
        transform = from_origin(x0, y0, PIXEL_M, PIXEL_M)
    else:
        bounds = gpd.GeoSeries([shapely.box(x0, y0 - side_m, x0 + side_m, y0)], crs=UTM).to_crs(crs).total_bounds
        transform = from_bounds(*bounds, SIDE_PX, SIDE_PX)
    mask = np.zeros((SIDE_PX, SIDE_PX), np.uint8)
    mask[:MARGIN_PX], mask[-MARGIN_PX:], mask[:, :MARGIN_PX], mask[:, -MARGIN_PX:] = 255, 255, 255, 255
    with rasterio.open(directory / "mask.tif", "w", driver="GTiff", width=SIDE_PX, height=SIDE_PX, count=1, dtype="uint8",
                       nodata=255, crs=crs, transform=transform) as dst:
        dst.write(mask, 1)
    n = len(geometries)
    frame = gpd.GeoDataFrame({"id": np.arange(1, n + 1), "scene_id": scene_id, "acquired": f"2022-09-0{len(scene_id) % 7 + 1}",
                              "area_m2": shapely.area(geometries), "perimeter_m": shapely.length(geometries),
                              "prob_mean": rng.uniform(0.5, 1, n), "prob_max": rng.uniform(0.9, 1, n),
                              "centroid_lon": 103.0, "centroid_lat": 31.6, "pixel_count": np.arange(n) + 10},
                             geometry=geometries, crs=UTM)
    if dem:
        frame["slope_mean_deg"] = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(10, 40, n))
        frame["elevation_mean_m"] = rng.uniform(1000, 3000, n)
    frame = frame.to_crs(crs)
    frame.to_file(directory / "landslides.gpkg", layer="landslides", driver="GPKG", engine="pyogrio")
    footprint = gpd.GeoDataFrame({"kind": ["valid_data"]}, geometry=[shapely.box(*frame.total_bounds)], crs=crs)
    footprint.to_crs(UTM).to_file(directory / "landslides.gpkg", layer="footprint", driver="GPKG", engine="pyogrio")
    valid_km2 = ((SIDE_PX - 2 * MARGIN_PX) * PIXEL_M) ** 2 / 1e6
    stats = {"scene_id": scene_id, "area_crs": UTM,
             "summary": {"landslide_count": n, "landslide_area_km2": float(frame["area_m2"].sum() / 1e6),
                         "observed_area_km2": valid_km2, "unobserved_area_km2": (side_m ** 2) / 1e6 - valid_km2,
                         "areal_density_pct": 0.0, "count_density_per_km2": 0.0},
             "provenance": {"lsmap_version": "test", "checkpoint": "model.pt", "checkpoint_sha256": "0" * 64,
                            "config_sha256": "1" * 64, "created_utc": "2022-09-06T00:00:00+00:00",
                            "scenes": [{"scene_id": scene_id, "image": f"{scene_id}.tif", "acquired": "2022-09-05"}]}}
    (directory / "scene_stats.json").write_text(json.dumps(stats))
    return directory


def overlapping_region(tmp_path, per_scene: int = 120, empty: bool = False) -> dict:
    """Four scenes in a 2 x 2 grid with 100 m overlaps (the last one on EPSG:4326, the first with
    DEM columns): the same landslides seen by two to four scenes a few metres apart (so they
    overlap across scene borders and chain), others touching only, most in one scene alone."""
    rng = np.random.default_rng(7)
    origins = [(X0, Y0), (X0 + STEP_M, Y0), (X0, Y0 - STEP_M), (X0 + STEP_M, Y0 - STEP_M)]
    centres = np.concatenate([scene_polygons(rng, x0, y0, per_scene) for x0, y0 in origins])
    radii = rng.uniform(3, 12, len(centres))
    # a few long landslides laid across the overlap lines (seen in pieces by both scenes)
    strips = [shapely.box(X0 + 250, Y0 - 150 - k * 30, X0 + 480, Y0 - 140 - k * 30) for k in range(4)]
    dirs = {}
    for k, (x0, y0) in enumerate(origins):
        side_m = SIDE_PX * PIXEL_M
        lo, hi = MARGIN_PX * PIXEL_M + 1, (SIDE_PX - MARGIN_PX) * PIXEL_M - 1
        inside = ((centres[:, 0] - radii > x0 + lo) & (centres[:, 0] + radii < x0 + hi)
                  & (centres[:, 1] + radii < y0 - lo) & (centres[:, 1] - radii > y0 - hi))
        chosen = np.flatnonzero(inside)
        shift = 1.5 * k  # another scene's outline of the same landslide
        geometries = shapely.buffer(shapely.points(centres[chosen] + shift), radii[chosen], quad_segs=4)
        window = shapely.box(x0 + lo, y0 - hi, x0 + hi, y0 - lo)
        pieces = [shapely.intersection(s, window) for s in strips]
        geometries = np.concatenate([geometries, [p for p in pieces if p.area > 0]])
        if empty:
            geometries = geometries[:0]
        crs = "EPSG:4326" if k == 3 else UTM
        dirs[f"s{k + 1}"] = write_scene(tmp_path / f"s{k + 1}", f"s{k + 1}", x0, y0, geometries, rng, crs=crs, dem=k == 0)
        assert side_m > STEP_M
    return dirs


def read_layer(path):
    return pyogrio.read_dataframe(path, layer="landslides")


def assert_same_region(new_dir, old_dir):
    new, old = read_layer(new_dir / "landslides.gpkg"), read_layer(old_dir / "landslides.gpkg")
    assert list(new.columns) == list(old.columns)
    assert len(new) == len(old)
    assert new.crs == old.crs
    if len(old):
        np.testing.assert_array_equal(new["id"], np.arange(1, len(new) + 1))
        for column in ("scene_id", "scene_ids", "acquired"):
            assert new[column].tolist() == old[column].tolist(), column
        for column in new.columns:
            if column not in ("id", "scene_id", "scene_ids", "acquired", "geometry"):
                np.testing.assert_allclose(new[column].to_numpy(float), old[column].to_numpy(float), rtol=1e-9, atol=0,
                                           equal_nan=True, err_msg=column)
        np.testing.assert_allclose(shapely.area(new.geometry.values), shapely.area(old.geometry.values), rtol=1e-9)
        difference = shapely.area(shapely.symmetric_difference(new.geometry.values, old.geometry.values))
        assert difference.max() <= 1e-9 * shapely.area(old.geometry.values).max()
    tags = [pyogrio.read_info(d / "landslides.gpkg", layer="landslides")["layer_metadata"] for d in (new_dir, old_dir)]
    for t in tags:
        t.pop("LSMAP_CREATED_UTC")
    assert tags[0] == tags[1] and tags[0]["LSMAP_SCENE_IDS"]
    new_stats = json.loads((new_dir / "stats.json").read_text())
    old_stats = json.loads((old_dir / "stats.json").read_text())
    for stats in (new_stats, old_stats):
        stats["provenance"].pop("created_utc")
    assert new_stats["summary"] == pytest.approx(old_stats["summary"], rel=1e-9)
    assert new_stats["frequency_area"]["counts"] == old_stats["frequency_area"]["counts"]
    np.testing.assert_allclose(new_stats["frequency_area"]["bin_edges_m2"], old_stats["frequency_area"]["bin_edges_m2"], rtol=1e-12)
    for key in ("region", "provenance", "area_crs", "overlap_rule", "scenes"):
        assert new_stats[key] == old_stats[key], key
    assert (new_dir / "stats.csv").read_text() == (old_dir / "stats.csv").read_text()
    assert (new_dir / "frequency_area.png").stat().st_size > 1000


@pytest.mark.parametrize("batch_rows", [7, 100_000])
def test_streaming_summary_equals_the_all_in_memory_one(tmp_path, batch_rows):
    """Polygons crossing scene overlaps, chains over up to four scenes, a geographic scene, DEM
    columns in one scene only, batches smaller than a scene: the same output as before."""
    dirs = overlapping_region(tmp_path / "in")
    reference_summarize_region("quake", dirs, tmp_path / "old")
    summarize_region("quake", dirs, tmp_path / "new", batch_rows=batch_rows, progress=False)
    assert_same_region(tmp_path / "new", tmp_path / "old")
    merged = read_layer(tmp_path / "new" / "landslides.gpkg")
    seen_by = merged["scene_ids"].str.count(",") + 1
    assert (seen_by >= 2).sum() >= 10 and seen_by.max() >= 3  # the test does exercise the dissolve
    assert merged["slope_mean_deg"].notna().any() and merged["slope_mean_deg"].isna().any()
    total = sum(len(read_layer(d / "landslides.gpkg")) for d in dirs.values())
    assert len(merged) < total


def test_region_without_landslides_is_an_empty_valid_layer_like_before(tmp_path):
    dirs = overlapping_region(tmp_path / "in", empty=True)
    reference_summarize_region("quake", dirs, tmp_path / "old")
    summarize_region("quake", dirs, tmp_path / "new", progress=False)
    assert_same_region(tmp_path / "new", tmp_path / "old")
    assert json.loads((tmp_path / "new" / "stats.json").read_text())["summary"]["landslide_count"] == 0


def test_only_polygons_in_scene_overlaps_are_held_for_the_dissolve(tmp_path):
    """The overlap pass keeps the polygons near another scene's extent, not the region."""
    dirs = overlapping_region(tmp_path / "in")
    gpkgs = {k: d / "landslides.gpkg" for k, d in dirs.items()}
    counts = {k: len(read_layer(p)) for k, p in gpkgs.items()}
    extents = [raster_extent(d / "mask.tif", UTM) for d in dirs.values()]

    class NoBar:
        def update(self, n):
            pass

    zone, _ = zone_polygons(gpkgs, counts, overlap_zones(extents), UTM, 10, NoBar())
    total = sum(counts.values())
    assert 0 < len(zone) < 0.6 * total
    # every polygon that overlaps another scene's polygon is in the zone set
    everything = pd.concat([read_layer(p).to_crs(UTM) for p in gpkgs.values()], ignore_index=True)
    left, right = shapely.STRtree(everything.geometry.values).query(everything.geometry.values, predicate="intersects")
    cross = everything["scene_id"].to_numpy()[left] != everything["scene_id"].to_numpy()[right]
    assert set(np.unique(left[cross])) <= set(zone["_index"])
    group_of, dissolved = dissolve_zone_polygons(zone, total, UTM)
    assert len(dissolved) > 0 and (group_of != OUTSIDE).sum() <= len(zone)


def test_unreadable_scene_landslides_name_the_file(tmp_path):
    from lsmap.errors import LsmapError

    dirs = overlapping_region(tmp_path / "in")
    (dirs["s2"] / "landslides.gpkg").write_bytes(b"not a geopackage")
    with pytest.raises(LsmapError, match="s2/landslides.gpkg"):
        summarize_region("quake", dirs, tmp_path / "new", progress=False)
    assert not (tmp_path / "new" / "landslides.gpkg").exists()


def test_in_memory_merge_follows_the_same_rule(tmp_path):
    """lsmap.stats.merge_region_polygons (the rule on frames in memory) equals the old one too."""
    from reference_region import reference_merge_region_polygons

    from lsmap.stats import merge_region_polygons

    dirs = overlapping_region(tmp_path / "in", per_scene=60)
    frames = [read_layer(d / "landslides.gpkg") for d in dirs.values()]
    new, old = merge_region_polygons(frames, UTM), reference_merge_region_polygons(frames, UTM)
    assert len(new) == len(old) and (old["scene_ids"].str.contains(",")).sum() >= 5
    assert new["scene_ids"].tolist() == old["scene_ids"].tolist()
    for column in ("area_m2", "perimeter_m", "prob_mean", "prob_max", "centroid_lon", "slope_mean_deg"):
        np.testing.assert_allclose(new[column].to_numpy(float), old[column].to_numpy(float), rtol=1e-9, equal_nan=True)


def test_the_summary_shows_progress_over_both_passes(tmp_path, caplog):
    """Without a terminal (as in a Snakemake log, INFO shown) lsmap.progress writes log lines; the last
    one counts both passes over every polygon."""
    import logging

    dirs = overlapping_region(tmp_path / "in", per_scene=20)
    with caplog.at_level(logging.INFO, logger="lsmap"):
        summarize_region("quake", dirs, tmp_path / "new", batch_rows=5)
    total = sum(len(read_layer(d / "landslides.gpkg")) for d in dirs.values())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("quake region summary:")]
    assert lines and lines[-1].startswith(f"quake region summary: {2 * total} of {2 * total} polygons (100%)")
