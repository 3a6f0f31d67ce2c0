"""Blockwise polygonisation: merged across block borders, areas in metres, attributes."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.transform import from_origin

from lsmap.vectorize import landslide_polygons, polygonize_mask


def write_mask(path, mask, transform, crs="EPSG:32648", probability=None):
    profile = dict(driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1, crs=crs, transform=transform,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(path, "w", dtype="uint8", nodata=255, **profile) as dst:
        dst.write(mask.astype(np.uint8), 1)
    if probability is not None:
        with rasterio.open(path.with_name("probability.tif"), "w", dtype="float32", nodata=-1, **profile) as dst:
            dst.write(probability.astype(np.float32), 1)
    return path


@pytest.fixture
def blob_mask(tmp_path):
    """Blobs of every shape placed across the lines of a 64-px block grid (rings, U shapes, diagonals)."""
    rng = np.random.default_rng(3)
    mask = np.zeros((300, 260), np.uint8)
    rr, cc = np.mgrid[0:300, 0:260]
    for _ in range(40):
        r, c, a, b = rng.integers(0, 300), rng.integers(0, 260), rng.integers(3, 25), rng.integers(3, 25)
        mask[((rr - r) / a) ** 2 + ((cc - c) / b) ** 2 < 1] = 1
    mask[100:140, 40:90] = 1
    mask[110:130, 55:75] = 0  # a ring (hole) centred on the block corner (128, 64)
    mask[200:260, 120:124] = 1
    mask[200:260, 136:140] = 1
    mask[256:260, 120:140] = 1  # a U whose arms only join below the block line at row 256
    mask[10, 10] = mask[11, 11] = 1  # diagonal neighbours: two landslides under 4-connectivity
    mask[0:5, 250:260] = 255  # nodata
    probability = np.where(mask == 1, 0.9, 0.1) * (1 - 0.01 * rng.random(mask.shape))
    return write_mask(tmp_path / "mask.tif", mask, from_origin(500000, 3000000, 2, 2), probability=probability), mask


def as_union(geometries):
    return shapely.union_all(geometries)


def test_polygons_crossing_block_borders_are_merged(blob_mask):
    path, mask = blob_mask
    whole, whole_sums, _, _ = polygonize_mask(path, path.with_name("probability.tif"), block_px=4096)
    blocked, blocked_sums, _, _ = polygonize_mask(path, path.with_name("probability.tif"), block_px=64, workers=2)
    from scipy import ndimage

    assert len(blocked) == len(whole) == ndimage.label(mask == 1)[1]  # one polygon per 4-connected landslide
    assert sorted(g.area for g in blocked) == sorted(g.area for g in whole)
    assert as_union(blocked).symmetric_difference(as_union(whole)).area == 0
    # no straight cut survives: each merged polygon is exactly one valid polygon of the whole-scene run
    assert all(g.geom_type == "Polygon" and g.is_valid for g in blocked)
    np.testing.assert_allclose(sorted(blocked_sums["prob_sum"]), sorted(whole_sums["prob_sum"]), rtol=1e-9)
    assert sum(len(g.interiors) for g in blocked) == sum(len(g.interiors) for g in whole) >= 1


def test_min_area_holes_and_attributes(blob_mask):
    path, mask = blob_mask
    frame = landslide_polygons(path, path.with_name("probability.tif"), scene_id="s1", acquired="2022-09-10",
                               min_area_m2=50.0, fill_holes_=True, block_px=64)
    assert (frame["area_m2"] >= 50).all()
    assert all(len(g.interiors) == 0 for g in frame.geometry)
    assert list(frame["id"]) == list(range(1, len(frame) + 1))
    assert (frame["scene_id"] == "s1").all() and (frame["acquired"] == "2022-09-10").all()
    assert frame["prob_mean"].between(0.85, 0.9).all() and frame["prob_max"].le(0.9 + 1e-6).all()
    # a 2 m pixel is 4 m2: without hole filling the area is exactly 4 m2 per landslide pixel
    unfilled = landslide_polygons(path, None, min_area_m2=0.0, fill_holes_=False, block_px=64)
    assert unfilled["area_m2"].sum() == pytest.approx(4.0 * (mask == 1).sum())
    assert 104.0 <= frame.centroid_lon.min() and frame.centroid_lon.max() <= 106.0


def test_dem_attributes_match_a_known_plane(tmp_path):
    """A plane rising 1 m per 2 m eastwards has a slope of atan(0.5) = 26.57 degrees everywhere."""
    transform = from_origin(500000, 3000000, 2, 2)
    mask = np.zeros((128, 128), np.uint8)
    mask[40:80, 40:90] = 1
    path = write_mask(tmp_path / "mask.tif", mask, transform)
    dem_transform = from_origin(500000, 3000000, 10, 10)  # a coarser DEM, as in practice
    cols = np.arange(40)[None, :] * 10 + 5
    dem = np.repeat(1000 + 0.5 * cols, 40, axis=0).astype(np.float32)
    with rasterio.open(tmp_path / "dem.tif", "w", driver="GTiff", width=40, height=40, count=1, dtype="float32",
                       crs="EPSG:32648", transform=dem_transform, nodata=-9999) as dst:
        dst.write(dem, 1)
    frame = landslide_polygons(path, None, tmp_path / "dem.tif", block_px=64)
    assert len(frame) == 1
    assert frame.slope_mean_deg[0] == pytest.approx(np.degrees(np.arctan(0.5)), abs=0.2)
    assert frame.elevation_mean_m[0] == pytest.approx(1000 + 0.5 * (65 * 2), abs=1.0)  # x centre 65 px = 130 m


def test_storm_alex_areas_survive_rasterising_and_repolygonising(tmp_path, shared_data):
    """Rasterise the published polygons at 1 m, polygonise them back blockwise: areas match their
    `Area_km2` within the discretisation error. Polygons are moved side by side onto a compact grid
    (areas do not change under translation) so the raster stays small and many cross block lines."""
    alex = gpd.read_file(shared_data / "inventory" / "storm_alex_predicted.shp")
    bounds = alex.geometry.bounds
    fits = (alex.area > 1500) & (bounds.maxx - bounds.minx < 240) & (bounds.maxy - bounds.miny < 240)
    alex = alex[fits].iloc[:150].reset_index(drop=True)
    cell, per_row = 250.0, 12
    moved = [shapely.affinity.translate(g, 5 + (i % per_row) * cell - g.bounds[0], -5 - (i // per_row) * cell - g.bounds[3])
             for i, g in enumerate(alex.geometry)]
    shape_hw = (int(np.ceil(len(moved) / per_row)) * int(cell), per_row * int(cell))
    transform = from_origin(0, 0, 1.0, 1.0)
    burned = rasterize(((g, 1) for g in moved), out_shape=shape_hw, transform=from_origin(0, 0, 1.0, 1.0), dtype="uint8")
    transform = from_origin(400000, 4870000, 1.0, 1.0)  # the same pixels placed back in UTM 32N
    path = write_mask(tmp_path / "mask.tif", burned, transform, crs=alex.crs)
    frame = landslide_polygons(path, None, min_area_m2=0, fill_holes_=False, block_px=512)
    # each cell's published polygon may come back in several 4-connected pieces: sum them per cell
    cx = (frame.geometry.representative_point().x - 400000) // cell
    cy = (4870000 - frame.geometry.representative_point().y) // cell
    measured = frame.groupby((cy * per_row + cx).astype(int))["area_m2"].sum()
    published = alex["Area_km2"] * 1e6
    ratio = measured.reindex(published.index).to_numpy() / published.to_numpy()
    assert len(alex) >= 100 and np.isfinite(ratio).all()
    assert np.median(np.abs(ratio - 1)) < 0.02 and np.abs(ratio - 1).max() < 0.08
    assert measured.sum() == pytest.approx(published.sum(), rel=0.005)


# ------------------------------------------------------------------ streaming = the previous output


def fragmented_mask(tmp_path, seed=0, shape_hw=(300, 280), crs="EPSG:32648", transform=None):
    """Speckle around the threshold (smoothed noise > 0.5: thousands of components, many cut by a
    64-px block grid) plus a ring and a U that only joins below a block line; nodata rows on top."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    probability = ndimage.uniform_filter(rng.random(shape_hw).astype(np.float32), 3)
    mask = (probability > 0.5).astype(np.uint8)
    mask[100:140, 40:90] = 1
    mask[110:130, 55:75] = 0  # a ring (hole) around the block corner (128, 64)
    mask[200:260, 120:124] = mask[200:260, 136:140] = mask[256:260, 120:140] = 1
    mask[:6, :] = 255
    transform = transform or from_origin(500000, 3000000, 2, 2)
    return write_mask(tmp_path / "mask.tif", mask, transform, crs=crs, probability=probability), mask


def assert_same_landslides(expected, actual):
    """Same rows in the same order: geometry equal (areas to 1e-9), every attribute equal."""
    assert len(actual) == len(expected) and list(actual.columns) == list(expected.columns)
    assert shapely.equals(expected.geometry.values, actual.geometry.values).all()
    np.testing.assert_allclose(actual.geometry.area, expected.geometry.area, rtol=1e-9)
    for column in expected.columns.drop("geometry"):
        if expected[column].dtype.kind == "f":
            np.testing.assert_allclose(actual[column], expected[column], rtol=1e-12, err_msg=column)
        else:
            assert (actual[column].to_numpy() == expected[column].to_numpy()).all(), column


@pytest.mark.parametrize("options", [dict(min_area_m2=100.0, fill_holes_=True), dict(min_area_m2=100.0, fill_holes_=False),
                                     dict(min_area_m2=0.0, fill_holes_=False), dict(min_area_m2=60.0, simplify_m=2.0)])
def test_streaming_polygons_equal_the_previous_whole_scene_implementation(tmp_path, options):
    import reference_vectorize

    path, mask = fragmented_mask(tmp_path)
    probability = path.with_name("probability.tif")
    expected = reference_vectorize.landslide_polygons(path, probability, scene_id="s", acquired="2024-01-02", block_px=64, **options)
    actual = landslide_polygons(path, probability, scene_id="s", acquired="2024-01-02", block_px=64, **options)
    assert len(expected) > 100  # enough landslides, many merged across block lines
    assert_same_landslides(expected, actual)
    from lsmap.vectorize import label_block, size_rule

    if options["min_area_m2"] > 0:  # and most components were never vectorised
        rule = size_rule(str(path), options["min_area_m2"], options.get("fill_holes_", True), options.get("simplify_m", 0))
        pieces = label_block(str(path), None, None, rasterio.windows.Window(0, 0, 280, 300), 0, rule)
        from scipy import ndimage

        assert len(pieces.geometries) < ndimage.label(mask == 1)[1] / 1.5


def test_a_block_keeps_only_complete_components_whose_hole_filled_polygon_can_pass(tmp_path):
    """Once a complete component is polygonised its hole-filled area is known exactly: with the whole
    mask as one block (no border to wait on) the block hands on exactly the landslides that survive."""
    from lsmap.vectorize import fill_holes_array, label_block, size_rule

    path, _ = fragmented_mask(tmp_path)
    rule = size_rule(str(path), 100.0, True, 0.0)  # 2 m pixels: 25 px
    pieces = label_block(str(path), None, None, rasterio.windows.Window(0, 0, 280, 300), 0, rule)
    filled_px = shapely.area(fill_holes_array(np.array(pieces.geometries, dtype=object)))
    survivors = landslide_polygons(path, min_area_m2=100.0, fill_holes_=True, block_px=512)
    assert not pieces.on_border.any() and (filled_px >= 25).all()
    assert len(pieces.geometries) == len(survivors) > 100


def test_streaming_polygons_with_a_dem_and_on_a_geographic_grid_equal_the_previous(tmp_path):
    """Pixel area varies with latitude on EPSG:4326 (60 deg N: ~1.9 x 3.1 m pixels): min_area_m2 in
    pixels must follow, or components at the threshold are lost or kept wrongly."""
    import reference_vectorize

    transform = from_origin(10.0, 60.01, 3.0e-5, 3.0e-5 / 1.8)
    path, _ = fragmented_mask(tmp_path, seed=2, crs="EPSG:4326", transform=transform)
    with rasterio.open(tmp_path / "dem.tif", "w", driver="GTiff", width=40, height=40, count=1, dtype="float32",
                       crs="EPSG:4326", transform=from_origin(10.0, 60.01, 3e-4, 2e-4), nodata=-9999) as dst:
        dst.write((1000 + np.add.outer(np.arange(40) * 3.0, np.arange(40) * 1.5)).astype(np.float32), 1)
    probability = path.with_name("probability.tif")
    for min_area in (0.0, 40.0):
        expected = reference_vectorize.landslide_polygons(path, probability, tmp_path / "dem.tif", min_area_m2=min_area,
                                                          fill_holes_=False, block_px=64)
        actual = landslide_polygons(path, probability, tmp_path / "dem.tif", min_area_m2=min_area, fill_holes_=False, block_px=64)
        assert len(expected) > 50 and "slope_mean_deg" in actual
        assert_same_landslides(expected, actual)


def test_batches_are_consecutive_and_the_written_files_equal_one_frame_written_whole(tmp_path):
    from lsmap.mapping import write_polygons
    from lsmap.vectorize import landslide_batches

    path, _ = fragmented_mask(tmp_path)
    probability = path.with_name("probability.tif")
    batches = list(landslide_batches(path, probability, min_area_m2=20.0, block_px=64, batch_rows=40))
    assert len(batches) >= 2
    whole = landslide_polygons(path, probability, min_area_m2=20.0, block_px=64)
    provenance = {"lsmap_version": "t", "checkpoint": "c", "checkpoint_sha256": "0", "config_sha256": "1",
                  "scenes": [{"scene_id": "s"}], "created_utc": "2024-01-01T00:00:00+00:00"}
    areas = write_polygons(iter(batches), tmp_path / "batched.gpkg", tmp_path / "batched.parquet", provenance)
    write_polygons(whole, tmp_path / "whole.gpkg", tmp_path / "whole.parquet", provenance)
    np.testing.assert_array_equal(areas, whole["area_m2"])
    for suffix, read in ((".gpkg", gpd.read_file), (".parquet", gpd.read_parquet)):
        batched, single = read(tmp_path / f"batched{suffix}"), read(tmp_path / f"whole{suffix}")
        assert list(batched["id"]) == list(range(1, len(whole) + 1))
        assert_same_landslides(single, batched)
    import pyarrow.parquet as pq

    geo = json.loads(pq.read_metadata(tmp_path / "batched.parquet").metadata[b"geo"])
    np.testing.assert_allclose(geo["columns"]["geometry"]["bbox"], whole.total_bounds)


# ------------------------------------------------------------------------------------- bad input


def test_millions_of_one_pixel_components_are_never_vectorised(tmp_path):
    """A checkerboard: every landslide pixel is its own 4-connected component (half the pixels).
    None can reach 100 m2 (25 px of 4 m2), so only the pieces on block lines are polygonised (to be
    judged whole) and nothing is written."""
    from lsmap.vectorize import complete_components, label_block, size_rule

    rr, cc = np.mgrid[0:512, 0:512]
    path = write_mask(tmp_path / "mask.tif", ((rr + cc) % 2 == 0).astype(np.uint8), from_origin(500000, 3000000, 2, 2))
    rule = size_rule(str(path), 100.0, True, 0.0)
    pieces = label_block(str(path), None, None, rasterio.windows.Window(128, 128, 128, 128), 5, rule)
    assert len(pieces.geometries) == int(pieces.on_border.sum()) <= 4 * 128 / 2 + 2
    assert sum(len(r) for r in complete_components(path, rule=rule, block_px=128)) == 0
    assert len(landslide_polygons(path, None, min_area_m2=100.0, block_px=128)) == 0


KILLED_WRITER = """
import os, signal, sys
sys.path.insert(0, {root!r})
from lsmap.mapping import write_polygons
from lsmap.vectorize import landslide_batches

def batches():
    for i, frame in enumerate(landslide_batches({mask!r}, None, min_area_m2=8.0, block_px=64, batch_rows=30)):
        yield frame
        if i == 1 and {kill}:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-polygonisation, batches already in the partial files

provenance = {{"lsmap_version": "t", "checkpoint": "c", "checkpoint_sha256": "0", "config_sha256": "1",
              "scenes": [{{"scene_id": "s"}}], "created_utc": "2024-01-01T00:00:00+00:00"}}
write_polygons(batches(), {out!r} + "/landslides.gpkg", {out!r} + "/landslides.parquet", provenance)
"""


def test_killed_mid_polygonisation_leaves_no_final_output_and_a_rerun_gives_identical_files(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    path, _ = fragmented_mask(tmp_path)
    root = str(Path(__file__).resolve().parents[1])
    runs = {}
    for name, kill in (("killed", True), ("first", False), ("again", False)):
        out = tmp_path / name
        out.mkdir()
        script = KILLED_WRITER.format(root=root, mask=str(path), out=str(out), kill=kill)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        runs[name] = (out, result.returncode)
    out, code = runs["killed"]
    assert code == -9 and not (out / "landslides.gpkg").exists() and not (out / "landslides.parquet").exists()
    assert runs["first"][1] == 0 and runs["again"][1] == 0
    first, again = runs["first"][0], runs["again"][0]
    assert (first / "landslides.parquet").read_bytes() == (again / "landslides.parquet").read_bytes()
    a, b = gpd.read_file(first / "landslides.gpkg"), gpd.read_file(again / "landslides.gpkg")
    assert len(a) > 30  # a batch of 30 was written before the kill
    assert_same_landslides(a, b)
