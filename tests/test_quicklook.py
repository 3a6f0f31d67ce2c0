"""Quicklooks: decimated reads, outlines in the right place, true scale bar and north arrow."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from PIL import Image
from pyproj import Transformer
from rasterio.transform import from_origin

from lsmap.errors import LsmapError
from lsmap.quicklook import (
    QUICKLOOK_WIDTH_PX,
    ground_metres_per_pixel,
    make_quicklook,
    nice_scale_length_m,
    read_decimated_bands,
    true_north_angle_deg,
)

UTM48 = "EPSG:32648"
ORIGIN = (500000.0, 3300000.0)  # on the zone's central meridian, ~29.8 N
PIXEL_M = 2.0
SCAR = (300, 400, 500, 650)  # rows 300-400, cols 500-650 of a 900 x 1200 scene


def write_scene(path, height=900, width=1200, crs=UTM48, transform=None, overviews=(2, 4), seed=0):
    """4-band uint16 ARD-like scene (blue, green, red, nir x 1e4), a bright scar at SCAR,
    a nodata (0) corner of 100 x 150 px."""
    rng = np.random.default_rng(seed)
    # One noise field for all bands: the stretched scene is grey, never the outline red.
    grey = rng.normal(800, 60, (height, width)).clip(1, None)
    data = np.repeat(grey[None], 4, axis=0).astype("uint16")
    r0, r1, c0, c1 = SCAR
    data[:, r0:r1, c0:c1] = 3000
    data[:, :100, :150] = 0
    transform = transform or from_origin(*ORIGIN, PIXEL_M, PIXEL_M)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=4, dtype="uint16",
                       crs=crs, transform=transform, nodata=0, tiled=True, blockxsize=256, blockysize=256) as dst:
        dst.write(data)
        if overviews:
            dst.build_overviews(list(overviews), rasterio.enums.Resampling.average)
    return path


def write_landslides(path, crs=UTM48, acquired="2022-09-10"):
    """The scar's outline plus a 5 m-radius landslide (too small to outline at 1600 px)."""
    r0, r1, c0, c1 = SCAR
    x0, y0 = ORIGIN
    scar = shapely.box(x0 + c0 * PIXEL_M, y0 - r1 * PIXEL_M, x0 + c1 * PIXEL_M, y0 - r0 * PIXEL_M)
    small = shapely.Point(x0 + 1000, y0 - 1500).buffer(5)
    frame = gpd.GeoDataFrame({"id": [1, 2], "scene_id": ["GF6_TEST"] * 2, "acquired": [acquired] * 2,
                              "area_m2": [scar.area, small.area], "prob_mean": [0.8, 0.7], "prob_max": [0.95, 0.9]},
                             geometry=[scar, small], crs=UTM48).to_crs(crs)
    frame.to_file(path, layer="landslides", driver="GPKG")
    return path


def is_outline(pixels: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> bool: the outline red (not the scene's greys, whites or the dark background)."""
    r, g, b = (pixels[..., i].astype(int) for i in range(3))
    return (r > 200) & (g < 90) & (b < 90)


@pytest.fixture
def scene_and_polygons(tmp_path):
    return write_scene(tmp_path / "reflectance.tif"), write_landslides(tmp_path / "landslides.gpkg")


def test_png_is_1600_px_wide_with_outlines_on_the_scar(tmp_path, scene_and_polygons):
    image, polygons = scene_and_polygons
    drawn = make_quicklook(image, polygons, tmp_path / "q.png", tmp_path / "q.tif", scene_id="GF6_TEST")
    png = np.asarray(Image.open(tmp_path / "q.png").convert("RGB"))
    assert png.shape[1] == QUICKLOOK_WIDTH_PX
    assert png.shape[0] == round(QUICKLOOK_WIDTH_PX * 900 / 1200)  # aspect kept: figure == image
    assert drawn == {"scene_id": "GF6_TEST", "acquired": "2022-09-10", "landslides": 2,
                     "display_shape": (900, 1200), "full_shape": (900, 1200)}
    scale = QUICKLOOK_WIDTH_PX / 1200
    r0, r1, c0, c1 = (round(v * scale) for v in SCAR)
    # Outline red along the scar's left and top edges (+-3 px), none inside the (white) scar
    # and none in an empty stretch of scene far from every landslide and from the map furniture.
    left_edge = png[r0 + 10:r1 - 10, c0 - 3:c0 + 4]
    top_edge = png[r0 - 3:r0 + 4, c0 + 10:c1 - 10]
    assert is_outline(left_edge).any(axis=1).mean() > 0.95
    assert is_outline(top_edge).any(axis=0).mean() > 0.95
    assert not is_outline(png[r0 + 15:r1 - 15, c0 + 15:c1 - 15]).any()
    assert not is_outline(png[700:1000, 1000:1400]).any()
    # The 5 m landslide becomes a dot at its centroid (col 500, row 750 at 2 m -> display x 667, y 1000).
    assert is_outline(png[1000 - 6:1000 + 7, 667 - 6:667 + 7]).sum() >= 10


def test_nodata_corner_is_background_not_stretched_black(tmp_path, scene_and_polygons):
    image, polygons = scene_and_polygons
    make_quicklook(image, polygons, tmp_path / "q.png", scene_id="GF6_TEST")
    png = np.asarray(Image.open(tmp_path / "q.png").convert("RGB")).astype(int)
    corner = png[115:125, 150:190]  # inside the 100 x 150 px nodata corner, below the caption box
    assert np.abs(corner - np.array([0x20, 0x20, 0x20])).max() <= 2


def test_read_is_served_from_overviews(tmp_path):
    """Overwrite the full resolution after building overviews: a decimated read that comes from
    the overviews still sees the old values, one that reads full resolution would not."""
    path = write_scene(tmp_path / "scene.tif", height=1024, width=6400, overviews=(2, 4, 8))
    with rasterio.open(path, "r+") as dst:
        dst.write(np.full((4, 1024, 6400), 7, dtype="uint16"))
    data, transform, _, full_shape = read_decimated_bands(path, max_width=1600)
    assert data.shape == (3, 256, 1600) and full_shape == (1024, 6400)
    assert transform.a == pytest.approx(PIXEL_M * 4)
    assert np.ma.median(data) > 500  # the overview's ~800, not the rewritten 7


def test_quicklook_never_reads_full_resolution(tmp_path, monkeypatch):
    path = write_scene(tmp_path / "scene.tif", height=800, width=4000, overviews=())
    shapes = []
    original = rasterio.io.DatasetReader.read

    def spy(self, *args, **kwargs):
        shapes.append(kwargs.get("out_shape"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    make_quicklook(path, None, tmp_path / "q.png", scene_id="wide")
    assert shapes == [(3, 320, 1600)]


def test_ground_scale_is_geodesic_for_utm_and_for_degrees():
    # UTM on the central meridian: 2 m of grid = 2 / 0.9996 m on the ground (scale factor k0).
    utm = ground_metres_per_pixel(from_origin(*ORIGIN, 2.0, 2.0), rasterio.crs.CRS.from_string(UTM48), (900, 1200))
    assert utm == pytest.approx(2.0 / 0.9996, rel=2e-4)
    # EPSG:4326 at 30 N: 1e-4 degree of longitude = 1e-4 * (pi/180) * N(30) * cos(30) on WGS84.
    a, e2 = 6378137.0, 0.00669437999014
    lat = math.radians(30.0)
    expected = math.radians(1e-4) * a / math.sqrt(1 - e2 * math.sin(lat) ** 2) * math.cos(lat)
    geo = ground_metres_per_pixel(from_origin(104.0, 30.05, 1e-4, 1e-4), rasterio.crs.CRS.from_epsg(4326), (1000, 1000))
    assert geo == pytest.approx(expected, rel=1e-3)
    assert 9.5 < geo < 9.8


def test_nice_scale_lengths():
    assert [nice_scale_length_m(v) for v in (528, 4999, 10_000, 0.7, 1900)] == [500, 2000, 10_000, 0.5, 1000]


def test_north_arrow_follows_grid_convergence():
    """3 degrees east of the central meridian at 30 N, true north is about
    atan(tan(3 deg) * sin(30 deg)) = 1.50 deg anticlockwise of grid north."""
    crs = rasterio.crs.CRS.from_string(UTM48)  # central meridian 105 E
    x, y = Transformer.from_crs("EPSG:4326", UTM48, always_xy=True).transform(108.0, 30.0)
    transform = from_origin(x - 1000, y + 1000, 2.0, 2.0)
    angle = true_north_angle_deg(transform, crs, (1000, 1000))
    expected = -math.degrees(math.atan(math.tan(math.radians(3)) * math.sin(math.radians(30))))
    assert angle == pytest.approx(expected, abs=0.03)
    assert true_north_angle_deg(from_origin(*ORIGIN, 2, 2), crs, (900, 1200)) == pytest.approx(0.0, abs=0.01)


def test_geographic_scene_quicklook_and_georeferenced_cog(tmp_path):
    """An EPSG:4326 scene: the COG covers the scene's bounds and carries the outlines."""
    transform = from_origin(105.0, 29.82, 2e-5, 2e-5)
    image = write_scene(tmp_path / "geo.tif", crs="EPSG:4326", transform=transform)
    r0, r1, c0, c1 = SCAR
    scar = shapely.box(*(transform @ (c0, r1)), *(transform @ (c1, r0)))
    gpd.GeoDataFrame({"id": [1], "acquired": ["2022-09-11"]}, geometry=[scar], crs="EPSG:4326").to_file(
        tmp_path / "ls.gpkg", layer="landslides")
    drawn = make_quicklook(image, tmp_path / "ls.gpkg", tmp_path / "q.png", tmp_path / "q.tif", scene_id="geo")
    assert drawn["acquired"] == "2022-09-11"
    with rasterio.open(image) as src, rasterio.open(tmp_path / "q.tif") as cog:
        assert cog.crs == src.crs and cog.count == 3 and cog.dtypes[0] == "uint8"
        assert np.allclose(cog.bounds, src.bounds)
        assert cog.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        rgb = np.moveaxis(cog.read(), 0, -1)
        scale = cog.width / src.width
    left_edge = rgb[round(r0 * scale) + 2:round(r1 * scale) - 2, round(c0 * scale) - 1:round(c0 * scale) + 2]
    assert is_outline(left_edge).any(axis=1).mean() > 0.95
    assert not is_outline(rgb[round(r0 * scale) + 10:round(r1 * scale) - 10, round(c0 * scale) + 10]).any()
    assert (rgb[:90, :140] == 0).all()  # nodata corner stays nodata


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(LsmapError, match="missing.tif: scene image not found"):
        make_quicklook(tmp_path / "missing.tif", None, tmp_path / "q.png")
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8") as dst:
        dst.write(np.zeros((3, 8, 8), "uint8"))
    with pytest.raises(LsmapError, match="plain.tif: scene is not georeferenced"):
        make_quicklook(plain, None, tmp_path / "q.png")
    assert not (tmp_path / "q.png").exists()


@pytest.mark.shared_data
def test_real_landsat_scene_with_nodata_border(tmp_path, shared_data):
    """Landsat 7 RGB (EPSG:32618, 300 m, nodata 0 around a rotated swath): 1600 px wide, the
    nodata border drawn as background, the swath in colour, the scale at 300 m per pixel."""
    image = shared_data / "scenes" / "landsat7_rgb_byte.tif"
    drawn = make_quicklook(image, None, tmp_path / "q.png", tmp_path / "q.tif", acquired="2001-01-01")
    assert drawn["scene_id"] == "landsat7_rgb_byte"
    png = np.asarray(Image.open(tmp_path / "q.png").convert("RGB")).astype(int)
    assert png.shape[1] == QUICKLOOK_WIDTH_PX
    with rasterio.open(image) as src:
        valid = src.dataset_mask() > 0
        full = src.read()
        rows, cols = src.height, src.width
        metres = ground_metres_per_pixel(src.transform, src.crs, (rows, cols))
    # Middle-row geodesic scale: 300 m of grid divided by UTM's point scale factor (0.9996..1.0004).
    assert metres == pytest.approx(300.0, rel=1e-3)
    # Sample display pixels away from the map furniture: background where the scene has no data.
    scale = png.shape[1] / cols
    r, c = np.meshgrid(np.arange(int(rows * 0.2), int(rows * 0.8), 7), np.arange(int(cols * 0.2), int(cols * 0.8), 7),
                       indexing="ij")
    shown = png[(r * scale).astype(int), (c * scale).astype(int)]
    background = np.all(np.abs(shown - 0x20) <= 2, axis=-1)
    inside = valid[r, c]
    assert background[~inside].mean() > 0.95 and background[inside].mean() < 0.02
    # Colour survives: the stretched red band still ranks like the scene's red band.
    red_scene = full[0][r, c][inside].astype(float)
    red_shown = shown[..., 0][inside].astype(float)
    assert np.corrcoef(red_scene, red_shown)[0, 1] > 0.9
