"""Blockwise polygonisation: merged across block borders, areas in metres, attributes."""

from __future__ import annotations

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
