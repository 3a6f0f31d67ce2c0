"""Exports: RFC 7946 GeoJSON and KML keep positions, orientation, areas and attributes."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from pyproj import Geod, Transformer

from lsmap.cli import main
from lsmap.errors import LsmapError
from lsmap.export import export_region

UTM48 = "EPSG:32648"
KML = "{http://www.opengis.net/kml/2.2}"
GEOD = Geod(ellps="WGS84")


def clockwise(polygon):
    """The same polygon with every ring reversed: exterior clockwise, holes anticlockwise."""
    return shapely.orient_polygons(polygon, exterior_cw=True)


@pytest.fixture
def region_gpkg(tmp_path):
    """Three landslides in UTM 48N, written against the right-hand rule on purpose: a square
    with a hole, a triangle and a two-part multipolygon."""
    x0, y0 = 420000.0, 3700000.0
    holed = shapely.Polygon(
        [(x0, y0), (x0 + 200, y0), (x0 + 200, y0 + 150), (x0, y0 + 150)],
        [[(x0 + 50, y0 + 50), (x0 + 100, y0 + 50), (x0 + 100, y0 + 100), (x0 + 50, y0 + 100)]])
    triangle = shapely.Polygon([(x0 + 500, y0), (x0 + 560, y0), (x0 + 530, y0 + 40)])
    multi = shapely.MultiPolygon([shapely.box(x0 + 900, y0, x0 + 920, y0 + 20),
                                  shapely.box(x0 + 940, y0, x0 + 960, y0 + 30)])
    geoms = [clockwise(g) for g in (holed, triangle, multi)]
    frame = gpd.GeoDataFrame({
        "id": [1, 2, 3], "scene_id": ["S1", "S1", "S2"], "scene_ids": ["S1", "S1", "S2,S3"],
        "acquired": ["2022-09-10", "2022-09-10", "2022-09-12"],
        "area_m2": [g.area for g in geoms], "perimeter_m": [g.length for g in geoms],
        "prob_mean": [0.812345678, 0.7, 0.66], "prob_max": [0.97, 0.9, 0.8],
    }, geometry=geoms, crs=UTM48)
    path = tmp_path / "landslides.gpkg"
    frame.to_file(path, layer="landslides", driver="GPKG")
    return path, frame


def ring_is_ccw(coords) -> bool:
    return shapely.LinearRing(coords).is_ccw


def test_geojson_is_rfc7946(tmp_path, region_gpkg):
    path, frame = region_gpkg
    assert export_region(path, out_geojson=tmp_path / "ls.geojson") == 3
    text = (tmp_path / "ls.geojson").read_text()
    doc = json.loads(text)
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    assert len(doc["features"]) == 3
    # At most 7 decimals anywhere in the coordinates.
    decimals = [len(m) for m in re.findall(r"-?\d+\.(\d+)", json.dumps([f["geometry"] for f in doc["features"]]))]
    assert max(decimals) <= 7
    to_lonlat = Transformer.from_crs(UTM48, "EPSG:4326", always_xy=True)
    for feature, (_, row) in zip(doc["features"], frame.iterrows()):
        geometry = shapely.geometry.shape(feature["geometry"])
        # Longitude first, at the right place (within 1e-6 degree ~ 0.1 m).
        lon, lat = to_lonlat.transform(*row.geometry.centroid.coords[0])
        assert geometry.centroid.x == pytest.approx(lon, abs=1e-6)
        assert geometry.centroid.y == pytest.approx(lat, abs=1e-6)
        # Right-hand rule: exteriors anticlockwise, holes clockwise.
        for part in shapely.get_parts(geometry):
            assert ring_is_ccw(part.exterior.coords)
            assert all(not ring_is_ccw(hole.coords) for hole in part.interiors)
        # The ellipsoidal area of the exported shape matches the UTM area (UTM's k0^2 = 0.9992 aside).
        geodesic_area = abs(GEOD.geometry_area_perimeter(geometry)[0])
        assert geodesic_area == pytest.approx(row["area_m2"], rel=2e-3)
    props = doc["features"][0]["properties"]
    assert props["acquired"] == "2022-09-10" and props["prob_mean"] == 0.8123
    assert props["area_m2"] == round(frame.area_m2[0], 1)
    assert len(shapely.geometry.shape(doc["features"][0]["geometry"]).interiors) == 1
    assert doc["features"][2]["geometry"]["type"] == "MultiPolygon"


def test_kml_has_placemarks_with_area_date_probability(tmp_path, region_gpkg):
    path, frame = region_gpkg
    export_region(path, out_kml=tmp_path / "ls.kml", name="test region")
    root = ET.parse(tmp_path / "ls.kml").getroot()
    placemarks = root.findall(f"{KML}Document/{KML}Placemark")
    assert [p.find(f"{KML}name").text for p in placemarks] == ["Landslide 1", "Landslide 2", "Landslide 3"]
    first = placemarks[0]
    data = {d.get("name"): d.find(f"{KML}value").text for d in first.iter(f"{KML}Data")}
    assert float(data["area_m2"]) == pytest.approx(frame.area_m2[0], abs=0.05)
    assert data["acquired"] == "2022-09-10" and float(data["prob_mean"]) == pytest.approx(0.8123)
    assert first.find(f"{KML}TimeStamp/{KML}when").text == "2022-09-10"
    assert "Area: 27,500 m² (2.75 ha)" in first.find(f"{KML}description").text
    outer = first.find(f".//{KML}outerBoundaryIs//{KML}coordinates").text.split()
    inner = first.find(f".//{KML}innerBoundaryIs//{KML}coordinates").text.split()
    ring = [tuple(map(float, c.split(","))) for c in outer]
    # lon,lat order: the south-west corner is UTM 48N (420 km E, 3700 km N).
    lon, lat = Transformer.from_crs(UTM48, "EPSG:4326", always_xy=True).transform(420000.0, 3700000.0)
    assert min(ring, key=lambda c: c[0] + c[1]) == pytest.approx((lon, lat), abs=2e-7)
    assert ring_is_ccw(ring) and not ring_is_ccw([tuple(map(float, c.split(","))) for c in inner])
    assert all(len(c.split(",")[0].split(".")[1]) == 7 for c in outer)
    assert len(placemarks[2].findall(f"{KML}MultiGeometry/{KML}Polygon")) == 2


def test_kml_reads_back_in_gdal_with_the_same_shapes(tmp_path, region_gpkg):
    path, frame = region_gpkg
    export_region(path, out_kml=tmp_path / "ls.kml")
    back = pyogrio.read_dataframe(tmp_path / "ls.kml")
    assert len(back) == 3
    original = frame.to_crs("EPSG:4326").geometry.values
    for a, b in zip(back.geometry.values, original):
        assert shapely.equals_exact(shapely.force_2d(a).normalize(), b.normalize(), tolerance=1e-6)


def test_empty_region_exports_valid_empty_files(tmp_path):
    empty = gpd.GeoDataFrame({"id": np.array([], dtype=int), "area_m2": np.array([], dtype=float)},
                             geometry=gpd.GeoSeries([], crs=UTM48))
    empty.to_file(tmp_path / "empty.gpkg", layer="landslides", driver="GPKG")
    assert export_region(tmp_path / "empty.gpkg", tmp_path / "e.geojson", tmp_path / "e.kml") == 0
    assert json.loads((tmp_path / "e.geojson").read_text())["features"] == []
    assert ET.parse(tmp_path / "e.kml").getroot().findall(f"{KML}Document/{KML}Placemark") == []


def test_bad_input_names_the_file_and_leaves_nothing(tmp_path):
    with pytest.raises(LsmapError, match="nope.gpkg: landslide polygons not found"):
        export_region(tmp_path / "nope.gpkg", tmp_path / "x.geojson")
    other = tmp_path / "other.gpkg"
    gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs=UTM48).to_file(other, layer="roads")
    with pytest.raises(LsmapError, match="other.gpkg: cannot read layer 'landslides'"):
        export_region(other, tmp_path / "x.geojson")
    assert list(tmp_path.glob("x*")) == []


def test_cli_export_verb(tmp_path, region_gpkg, capsys):
    path, _ = region_gpkg
    assert main(["export", str(path), "--geojson", str(tmp_path / "a.geojson"), "--kml", str(tmp_path / "a.kml")]) == 0
    assert "3 polygons exported" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "missing.gpkg"), "--kml", str(tmp_path / "b.kml")]) == 2


@pytest.mark.shared_data
def test_real_inventory_areas_survive_the_export(tmp_path, shared_data):
    """Storm Alex (UTM 32N): 1,249 CNN polygons with areas computed by the authors' GIS; the
    exported lon/lat shapes must have the same ellipsoidal areas."""
    source = gpd.read_file(shared_data / "inventory" / "storm_alex_predicted.shp")
    frame = source.rename(columns={"Area": "area_m2"})
    frame["id"] = np.arange(1, len(frame) + 1)
    frame.to_file(tmp_path / "alex.gpkg", layer="landslides", driver="GPKG")
    assert export_region(tmp_path / "alex.gpkg", tmp_path / "alex.geojson") == len(source) == 1249
    doc = json.loads((tmp_path / "alex.geojson").read_text())
    exported = np.array([abs(GEOD.geometry_area_perimeter(shapely.geometry.shape(f["geometry"]))[0])
                         for f in doc["features"]])
    published = source["Area"].to_numpy(dtype=float)
    # Their areas are planar UTM areas: within the UTM scale distortion (< 0.1 %) plus rounding.
    assert np.median(np.abs(exported / published - 1)) < 2e-3
    assert np.all(np.abs(exported / published - 1) < 1e-2)


def inventory_like_gpkg(tmp_path):
    """An inventory's current layer: first_acquired says when each landslide was first imaged
    (date only, UTC date-time, and another zone), acquired when it was last."""
    x0, y0 = 420000.0, 3700000.0
    geoms = [shapely.box(x0 + 100 * i, y0, x0 + 100 * i + 50, y0 + 50) for i in range(4)]
    frame = gpd.GeoDataFrame({
        "landslide_id": ["A/1", "A/2", "B/1", "C/1"], "scene_id": ["B", "A", "B", "C"],
        "first_acquired": ["2022-09-07", "2022-09-09T23:59:59", "2022-09-10T03:30:00", "2022-09-10T09:00:00+08:00"],
        "acquired": ["2022-09-12", "2022-09-12", "2022-09-12", "2022-09-12"],
        "area_m2": [g.area for g in geoms],
    }, geometry=geoms, crs=UTM48)
    path = tmp_path / "inventory.gpkg"
    frame.to_file(path, layer="landslides", driver="GPKG")
    return path


def test_export_since_keeps_only_landslides_first_seen_on_or_after_the_date(tmp_path):
    path = inventory_like_gpkg(tmp_path)
    # first_acquired decides, not acquired (every landslide was re-imaged on the 12th);
    # 09:00+08:00 on the 10th is 01:00 UTC on the 10th: kept.
    assert export_region(path, out_geojson=tmp_path / "new.geojson", out_kml=tmp_path / "new.kml", since="2022-09-10") == 2
    features = json.loads((tmp_path / "new.geojson").read_text())["features"]
    assert sorted(f["properties"]["landslide_id"] for f in features) == ["B/1", "C/1"]
    names = [e.text for e in ET.parse(tmp_path / "new.kml").getroot().iter(f"{KML}name")][1:]
    assert sorted(names) == ["Landslide B/1", "Landslide C/1"]
    # a date-time bound: 2022-09-10T02:00Z keeps B/1 (03:30Z) only
    assert export_region(path, out_geojson=tmp_path / "later.geojson", since="2022-09-10T02:00:00Z") == 1
    assert export_region(path, out_geojson=tmp_path / "all.geojson", since="2022-09-01") == 4
    assert export_region(path, out_geojson=tmp_path / "none.geojson", since="2023-01-01") == 0
    assert json.loads((tmp_path / "none.geojson").read_text())["features"] == []


def test_export_since_falls_back_to_acquired_and_names_bad_dates(tmp_path, region_gpkg, capsys):
    path, _ = region_gpkg  # a region layer: acquired only (2022-09-10, -10, -12)
    assert export_region(path, out_geojson=tmp_path / "x.geojson", since="2022-09-11") == 1
    assert main(["export", str(path), "--geojson", str(tmp_path / "y.geojson"), "--since", "last tuesday"]) == 2
    assert "--since 'last tuesday': not a date" in capsys.readouterr().err
    assert not (tmp_path / "y.geojson").exists()


def test_kml_timestamps_are_utc(tmp_path):
    path = inventory_like_gpkg(tmp_path)  # acquired: 2022-09-12 (a date stays a date)
    frame = gpd.read_file(path, layer="landslides")
    frame["acquired"] = ["2022-09-12", "2022-09-12T03:30:00", "2022-09-12T03:30:00Z", "2022-09-12T11:30:00+08:00"]
    frame.to_file(path, layer="landslides", driver="GPKG")
    export_region(path, out_kml=tmp_path / "t.kml")
    whens = [e.text for e in ET.parse(tmp_path / "t.kml").getroot().iter(f"{KML}when")]
    assert whens == ["2022-09-12", "2022-09-12T03:30:00Z", "2022-09-12T03:30:00Z", "2022-09-12T11:30:00+08:00"]
