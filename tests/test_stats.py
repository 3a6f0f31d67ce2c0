"""Areas in metres (never degrees), observed area, overlap rule, frequency-area histogram."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from pyproj import CRS, Geod
from rasterio.transform import from_origin
from shapely.geometry import box

from lsmap.stats import (area_crs_for, frequency_area, merge_region_polygons, observed_area_m2, plot_frequency_area,
                         summarize)

GEOD = Geod(ellps="WGS84")


def test_jinsha_kml_areas_are_right_in_metres(shared_data):
    """WGS84 polygons measured on their local UTM zone agree with geodesic areas on the ellipsoid."""
    kml = gpd.read_file(shared_data / "inventory" / "jinsha_landslides_87.kml")
    assert kml.crs.to_epsg() == 4326 and len(kml) == 87
    area_crs = area_crs_for(kml.crs, kml.total_bounds)
    assert area_crs.utm_zone is not None and area_crs.utm_zone.startswith("47")  # upper Jinsha, ~99 E
    areas = kml.to_crs(area_crs).area.to_numpy()
    geodesic = np.array([abs(GEOD.geometry_area_perimeter(g)[0]) for g in kml.geometry.force_2d()])
    np.testing.assert_allclose(areas, geodesic, rtol=2e-3)
    assert 0.02e6 < areas.min() and areas.max() < 6e6  # the published 0.03-5.2 km2 range, not square degrees


def test_utm_and_equal_area_scenes_are_measured_on_their_own_crs():
    assert area_crs_for("EPSG:32648") == CRS.from_epsg(32648)
    assert area_crs_for("ESRI:102025") == CRS.from_user_input("ESRI:102025")  # Albers equal area, Asia
    mercator = area_crs_for("EPSG:3857", (11.6e6, 3.3e6, 11.7e6, 3.4e6))
    assert mercator.utm_zone is not None  # Web Mercator distorts areas: measured on local UTM instead


def test_observed_area_of_a_geographic_raster_is_its_ellipsoidal_area(tmp_path):
    """A 0.1 x 0.1 degree raster at 30 N, a quarter nodata: observed = 3/4 of the geodesic area."""
    size = 400
    mask = np.zeros((size, size), np.uint8)
    mask[:, : size // 4] = 255
    path = tmp_path / "mask.tif"
    transform = from_origin(100.0, 30.1, 0.1 / size, 0.1 / size)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8", nodata=255,
                       crs="EPSG:4326", transform=transform) as dst:
        dst.write(mask, 1)
    area_crs = area_crs_for("EPSG:4326", (100.0, 30.0, 100.1, 30.1))
    observed, unobserved = observed_area_m2(path, area_crs, step=64)
    whole = abs(GEOD.geometry_area_perimeter(box(100.0, 30.0, 100.1, 30.1).segmentize(0.001))[0])
    observed_truth = abs(GEOD.geometry_area_perimeter(box(100.025, 30.0, 100.1, 30.1).segmentize(0.001))[0])
    assert observed == pytest.approx(observed_truth, rel=1e-3)
    assert observed + unobserved == pytest.approx(whole, rel=1e-3)


def test_summary_densities():
    summary = summarize([1e4, 3e4], observed_m2=4e6, unobserved_m2=1e6)
    assert summary == pytest.approx({"landslide_count": 2, "landslide_area_km2": 0.04, "observed_area_km2": 4.0,
                                     "unobserved_area_km2": 1.0, "areal_density_pct": 1.0, "count_density_per_km2": 0.5})


def test_frequency_area_bins_are_log_spaced_and_count_everything(tmp_path):
    areas = np.array([120, 150, 900, 1000, 5e4, 2e5])
    edges, counts = frequency_area(areas, bins_per_decade=5)
    assert edges[0] == pytest.approx(100) and edges[-1] == pytest.approx(1e6)
    np.testing.assert_allclose(np.diff(np.log10(edges)), 0.2)
    assert sum(counts) == len(areas) and counts[0] == 2  # 120 and 150 in [100, 158)
    plot_frequency_area(edges, counts, tmp_path / "fa.png", "test")
    assert (tmp_path / "fa.png").stat().st_size > 1000


def test_a_landslide_seen_by_two_overlapping_scenes_is_counted_once():
    utm = CRS.from_epsg(32648)
    common = box(500000, 3000000, 500100, 3000050)
    a = gpd.GeoDataFrame({"scene_id": ["A", "A"], "acquired": ["2022-09-10", "2022-09-10"], "prob_mean": [0.8, 0.7],
                          "prob_max": [0.9, 0.8]}, geometry=[common, box(501000, 3000000, 501020, 3000020)], crs=utm)
    shifted = box(500010, 3000000, 500110, 3000050)  # the same landslide, mapped 10 m off in scene B
    b = gpd.GeoDataFrame({"scene_id": ["B"], "acquired": ["2022-09-12"], "prob_mean": [0.6], "prob_max": [0.95]},
                         geometry=[shifted], crs=utm).to_crs("EPSG:4326")  # scenes may come in other CRSs
    merged = merge_region_polygons([a, b], utm)
    assert len(merged) == 2
    both = merged[merged.scene_ids == "A,B"].iloc[0]
    assert both.area_m2 == pytest.approx(110 * 50, rel=1e-3) and both.acquired == "2022-09-12"
    assert both.prob_max == pytest.approx(0.95) and 0.6 < both.prob_mean < 0.8


def test_touching_landslides_of_one_scene_stay_two():
    """Corner- or edge-touching polygons of one scene are distinct landslides (4-connectivity)."""
    utm = CRS.from_epsg(32648)
    frame = gpd.GeoDataFrame({"scene_id": ["A", "A"], "acquired": ["", ""], "prob_mean": [0.8, 0.7], "prob_max": [0.9, 0.8]},
                             geometry=[box(0, 0, 10, 10), box(10, 10, 20, 20)], crs=utm)
    assert len(merge_region_polygons([frame], utm)) == 2
