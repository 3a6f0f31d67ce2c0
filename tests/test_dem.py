"""DEM alignment and terrain: Horn slope against the authors' slope of a real DEM, geographic DEMs in
true ground metres, no-data handling, coverage errors, aspect directions, hillshade."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import calculate_default_transform

from lsmap.dem import (check_dem_overlaps, ground_pixel_size_m, hillshade, read_dem_window, reproject_to_grid, slope_aspect_deg,
                       terrain_dask, warp_heights)
from lsmap.errors import LsmapError


@pytest.fixture(scope="module")
def jiuzhaigou(shared_data):
    path = shared_data / "dem" / "jiuzhaigou_dem_30m.tif"
    with rasterio.open(path) as src:
        bounds, crs = tuple(src.bounds), src.crs
    heights, transform, dem_crs = read_dem_window(path, crs, bounds, extra_nodata=[0], margin_px=0)
    with rasterio.open(shared_data / "dem" / "jiuzhaigou_slope_30m.tif") as src:
        reference = src.read(1, masked=True).filled(np.nan)
    return heights, transform, dem_crs, reference


@pytest.mark.shared_data
def test_slope_matches_the_authors_slope_inside_the_area_of_interest(jiuzhaigou):
    heights, transform, crs, reference = jiuzhaigou
    slope, _ = slope_aspect_deg(heights, *ground_pixel_size_m(transform, crs, heights.shape[0]))
    both = np.isfinite(slope) & np.isfinite(reference)
    mad = float(np.abs(slope[both] - reference[both]).mean())
    print(f"\nJiuzhaigou slope vs the authors' slope: mean |difference| {mad:.4f}° over {both.sum()} pixels")
    assert both.sum() > 200_000 and mad < 0.05
    # The zeros outside the AOI are no data here, so the cliff the authors' slope shows along the AOI
    # edge (zeros taken as heights: > 80°) is no data in ours instead of a false steep slope.
    edge = np.isnan(slope) & np.isfinite(heights) & (reference > 80)
    assert edge.sum() > 500
    assert np.nanmax(slope) < np.nanmax(reference)


@pytest.mark.shared_data
def test_geographic_dem_gives_the_same_slopes_in_true_ground_metres(jiuzhaigou):
    heights, transform, crs, _ = jiuzhaigou
    slope_utm, _ = slope_aspect_deg(heights, *ground_pixel_size_m(transform, crs, heights.shape[0]))
    geo = CRS.from_epsg(4326)
    h, w = heights.shape
    left, top = transform.c, transform.f
    dst_transform, dw, dh = calculate_default_transform(crs, geo, w, h, left, top + h * transform.e,
                                                        left + w * transform.a, top)
    on_geo = reproject_to_grid(heights, transform, crs, dst_transform, geo, (dh, dw))
    dx, dy = ground_pixel_size_m(dst_transform, geo, dh)
    assert 20 < dx.mean() < 35 and 20 < dy.mean() < 35  # ~30 m pixels, not 0.0003 "metres"
    slope_geo, _ = slope_aspect_deg(on_geo, dx, dy)
    print(f"\nmean slope: UTM {np.nanmean(slope_utm):.2f}°, geographic {np.nanmean(slope_geo):.2f}°")
    assert abs(np.nanmean(slope_geo) - np.nanmean(slope_utm)) < 1.0


def test_rasterio_warp_of_orthorectification_gives_rioxarrays_pixels(jiuzhaigou):
    """Step 1 warps heights with rasterio alone (no xarray import); the heights must be rio.reproject's."""
    from rasterio.enums import Resampling

    heights, transform, crs, _ = jiuzhaigou
    part = heights[:300, :400].copy()
    part[:20, :30] = np.nan  # no data must travel the same way
    geo = CRS.from_epsg(4326)
    dst_transform, dw, dh = calculate_default_transform(crs, geo, 400, 300, *rasterio.transform.array_bounds(300, 400, transform))
    for resampling in (Resampling.bilinear, Resampling.cubic):
        expected = reproject_to_grid(part, transform, crs, dst_transform, geo, (dh, dw), resampling)
        got = warp_heights(part, transform, crs, dst_transform, geo, (dh, dw), resampling)
        assert np.isfinite(expected).mean() > 0.5 and np.isnan(expected).any()
        assert np.array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)  # metres; 1 float32 ulp seen at ~70 m


def test_no_data_spreads_to_the_3x3_neighbourhood_only():
    z = np.tile(np.arange(20.0), (20, 1))
    z[10, 10] = np.nan
    slope, aspect = slope_aspect_deg(z, 1.0, 1.0)
    assert np.isnan(slope[9:12, 9:12]).all() and np.isfinite(slope[8, 8]) and np.isfinite(slope[12, 12])
    assert np.isnan(slope[0]).all() and np.isnan(slope[:, -1]).all()  # raster border


@pytest.mark.parametrize(("rise_towards", "facing"), [("east", 270.0), ("west", 90.0), ("north", 180.0), ("south", 0.0)])
def test_aspect_is_the_downslope_direction_clockwise_from_north(rise_towards, facing):
    ramp = np.arange(10.0)
    z = {"east": np.tile(ramp, (10, 1)), "west": np.tile(ramp[::-1], (10, 1)),
         "north": np.tile(ramp[::-1, None], (1, 10)), "south": np.tile(ramp[:, None], (1, 10))}[rise_towards]
    slope, aspect = slope_aspect_deg(z, 2.0, 2.0)
    assert slope[5, 5] == pytest.approx(np.degrees(np.arctan(0.5)))
    assert aspect[5, 5] == pytest.approx(facing)


def test_hillshade_of_flat_ground_is_sin_of_sun_altitude():
    flat = np.zeros((5, 5))
    slope, aspect = slope_aspect_deg(flat, 1.0, 1.0)
    assert np.isnan(aspect[2, 2])
    assert hillshade(slope, aspect)[2, 2] == pytest.approx(255 * np.sin(np.radians(45)), abs=0.01)


def test_dem_that_does_not_reach_the_scene_is_an_error(tmp_path):
    path = tmp_path / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=10, height=10, count=1, dtype="float32",
                       crs="EPSG:32648", transform=Affine(30, 0, 400000, 0, -30, 3600000)) as dst:
        dst.write(np.ones((1, 10, 10), np.float32))
    with pytest.raises(LsmapError, match="dem.tif: the DEM does not cover the scene"):
        read_dem_window(path, CRS.from_epsg(32648), (500000, 3500000, 501000, 3501000))
    with pytest.raises(LsmapError, match="dem.tif: the DEM does not cover the scene"):
        check_dem_overlaps(path, CRS.from_epsg(32648), (500000, 3500000, 501000, 3501000))
    check_dem_overlaps(path, CRS.from_epsg(32648), (400100, 3599900, 400200, 3599950))  # inside: no error


def test_chunked_terrain_equals_the_whole_array_computation_across_chunk_borders():
    """Geographic grid (row-dependent pixel sizes), 3 x 3 chunks with a no-data hole on a chunk border."""
    import dask.array as da

    transform = Affine(0.0003, 0, 103.5, 0, -0.0003, 33.4)
    rng = np.random.default_rng(1)
    z = np.cumsum(np.cumsum(rng.normal(0, 1, (90, 75)), axis=0), axis=1).astype(np.float32) + 2000
    z[29:32, 40:44] = np.nan
    geo = CRS.from_epsg(4326)
    slope, aspect = slope_aspect_deg(z, *ground_pixel_size_m(transform, geo, z.shape[0]))
    lazy = [a.compute() for a in terrain_dask(da.from_array(z, chunks=30), transform, geo)]
    np.testing.assert_allclose(lazy[0], slope, atol=1e-4, equal_nan=True)
    np.testing.assert_allclose(lazy[1], aspect, atol=1e-3, equal_nan=True)
    np.testing.assert_allclose(lazy[2], hillshade(slope, aspect), atol=1e-3, equal_nan=True)


def test_chunked_terrain_of_a_large_scene_allocates_nothing_scene_sized_until_computed():
    """12,000² px: building the graph must not copy per-row pixel sizes to the full scene (2 x 576 MB)."""
    import tracemalloc

    import dask.array as da

    dem = da.zeros((12000, 12000), chunks=2048, dtype=np.float32)
    tracemalloc.start()
    try:
        terrain_dask(dem, Affine(0.00002, 0, 103.5, 0, -0.00002, 33.4), CRS.from_epsg(4326))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MB traced while building the terrain graph"


def test_dem_on_a_coarse_grid_is_read_decimated_and_nan_where_the_dem_ends(tmp_path):
    """A 2 m DEM (a plane, 4000² px) onto a 100 m grid reaching 2 km past its east edge."""
    import tracemalloc

    from lsmap.dem import dem_on_grid

    path = tmp_path / "fine.tif"
    y, x = np.mgrid[0:4000, 0:4000].astype(np.float32)
    with rasterio.open(path, "w", driver="GTiff", width=4000, height=4000, count=1, dtype="float32", crs="EPSG:32648",
                       transform=Affine(2.0, 0, 400000, 0, -2.0, 3600000), tiled=True) as dst:
        dst.write(1000 + 0.1 * x - 0.05 * y, 1)  # heights rise 0.05 m/m east and 0.025 m/m south
    del x, y
    tracemalloc.start()
    try:
        grid = dem_on_grid(path, Affine(100.0, 0, 400000, 0, -100.0, 3600000), CRS.from_epsg(32648), (80, 100))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MB traced; the DEM at full resolution is 64 MB"
    assert np.isnan(grid[:, 81:]).all() and np.isfinite(grid[1:-1, 1:79]).all()
    centre_x, centre_y = (np.arange(100) + 0.5) * 100, (np.arange(80) + 0.5) * 100  # metres from the corner
    expected = 1000 + 0.05 * centre_x[None, :] - 0.025 * centre_y[:, None] - 0.05 * 1 + 0.025 * 1  # pixel centres
    np.testing.assert_allclose(grid[1:-1, 1:79], expected[1:-1, 1:79], atol=0.2)
