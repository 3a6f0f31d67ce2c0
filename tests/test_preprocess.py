"""preprocess_delivery end to end on a generated delivery with a known answer (the ground truth grid)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from lsmap.cli import main as lsmap_main
from lsmap.errors import LsmapError
from lsmap.gf6 import format_rpb, parse_rpb, rpc_project, write_synthetic_delivery
from lsmap.preprocess import preprocess_delivery
from preprocess_helpers import CRS_UTM48, TRUTH_TRANSFORM, synthetic_ground, write_dem

N = 400


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    refl, dem = synthetic_ground(N, seed=3)
    delivery = write_synthetic_delivery(root / "in", refl, TRUTH_TRANSFORM, CRS_UTM48, dem, archive=True,
                                        name="GF6_PMS_E2E_L1A7")
    dem_path = write_dem(root / "dem.tif", dem)
    outputs = preprocess_delivery(delivery, dem_path, root / "ard")
    return {"root": root, "refl": refl, "dem": dem, "delivery": delivery, "dem_path": dem_path, "out": outputs}


def _truth_window(refl: np.ndarray, transform) -> tuple[int, int]:
    """Row/column of the product's top-left pixel in the truth grid (both on 2 m, aligned)."""
    return int(round((TRUTH_TRANSFORM.f - transform.f) / 2.0)), int(round((transform.c - TRUTH_TRANSFORM.c) / 2.0))


def _misfits(product: np.ndarray, transform, refl: np.ndarray) -> dict[tuple[int, int], float]:
    """Mean |product - truth| (reflectance) with the truth shifted by -1..1 px, on valid interior pixels."""
    row0, col0 = _truth_window(refl, transform)
    padded = np.pad(refl, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = product.shape[1:]
    p = product[:, 20:-20, 20:-20] / 1e4
    ok = np.all(p > 0, axis=0)
    out = {}
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            t = padded[:, row0 + 1 + dr:row0 + 1 + dr + h, col0 + 1 + dc:col0 + 1 + dc + w][:, 20:-20, 20:-20]
            out[(dr, dc)] = float(np.abs(p[:, ok] - t[:, ok]).mean())
    return out


def test_outputs_are_cogs_with_bands_nodata_and_acquisition_tags(scene):
    out = scene["out"]
    assert {"reflectance", "dem", "slope", "aspect", "hillshade", "geometry"} <= set(out)
    with rasterio.open(out["reflectance"]) as src:
        assert src.count == 4 and src.dtypes[0] == "uint16" and src.nodata == 0
        assert src.descriptions == ("blue", "green", "red", "nir")
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.crs == rasterio.crs.CRS.from_epsg(32648) and src.res == (2.0, 2.0)
        tags, grid = src.tags(), (src.transform, src.width, src.height)
    assert tags["SATELLITE"] == "GF6" and tags["ACQUISITION_TIME"].startswith("2022-09-10T03:30")
    assert tags["SUN_ZENITH_DEG"] == "32.0000" and tags["REFLECTANCE_SCALE"] == "10000"
    # the scene has nodata corners in every chunk: PAN detail is still injected (issue 14: gains were 0)
    gains = [float(g) for g in tags["PANSHARPEN"].split("gains ")[1].split(",")]
    assert len(gains) == 4 and min(gains) > 0.2, tags["PANSHARPEN"]
    for name in ("dem", "slope", "aspect", "hillshade"):
        with rasterio.open(out[name]) as src:
            assert (src.transform, src.width, src.height) == grid, name
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert json.loads(Path(out["geometry"]).read_text())["gcp_correction"] == "skipped: no GCPs"
    assert not list(scene["root"].joinpath("ard").glob("*dn.tif"))  # intermediates removed


def test_orthorectification_recovers_the_ground_truth_grid(scene):
    """Reflectance lands on the truth grid: misfit is smallest at zero shift and small in value."""
    with rasterio.open(scene["out"]["reflectance"]) as src:
        product, transform = src.read(), src.transform
    misfits = _misfits(product, transform, scene["refl"])
    assert min(misfits, key=misfits.get) == (0, 0)
    print("\nmisfit by shift", {k: round(v, 4) for k, v in misfits.items()})
    assert misfits[(0, 0)] < 0.008  # pan-sharpening error of this texture, ~4 % of the reflectance
    for axis in ((1, 0), (0, 1)):  # sub-pixel offset of the misfit minimum along rows and columns
        lo, mid, hi = misfits[(-axis[0], -axis[1])], misfits[(0, 0)], misfits[axis]
        assert abs(0.5 * (lo - hi) / (lo - 2 * mid + hi)) < 0.25


def test_dem_and_slope_on_the_scene_grid_match_the_source(scene):
    with rasterio.open(scene["out"]["dem"]) as src:
        dem_out, transform = src.read(1, masked=True), src.transform
    row0, col0 = _truth_window(scene["refl"], transform)
    source = scene["dem"][row0:row0 + dem_out.shape[0], col0:col0 + dem_out.shape[1]]
    assert np.abs(dem_out - source).mean() < 0.5
    with rasterio.open(scene["out"]["slope"]) as src:
        slope = src.read(1, masked=True)
    assert 5 < slope.mean() < 60 and slope.mask[0].all()


def test_gcp_correction_removes_a_known_rpc_bias(scene, tmp_path):
    """Bias the delivery's RPCs by (+3, -2) PAN px; GCPs from the truth bring the grid back."""
    import shutil
    import tarfile

    folder = tmp_path / "biased"
    with tarfile.open(scene["delivery"]) as tar:
        tar.extractall(folder, filter="data")
    for rpb, shift in ((next(folder.glob("*-PAN.rpb")), 1.0), (next(folder.glob("*-MUX.rpb")), 0.25)):
        rpc = parse_rpb(rpb)
        rpb.write_text(format_rpb(type(rpc)(**{**rpc.to_dict(), "line_off": rpc.line_off + 3 * shift,
                                               "samp_off": rpc.samp_off - 2 * shift})))
    pan_rpc = parse_rpb(next(folder.glob("*-PAN.rpb")))
    true_rpc = type(pan_rpc)(**{**pan_rpc.to_dict(), "line_off": pan_rpc.line_off - 3, "samp_off": pan_rpc.samp_off + 2})
    to_geo = Transformer.from_crs(CRS_UTM48, "EPSG:4326", always_xy=True)
    features = []
    for k, (r, c) in enumerate([(80, 90), (300, 120), (150, 310), (320, 330), (200, 200)]):
        x, y = TRUTH_TRANSFORM * (c + 0.5, r + 0.5)
        lon, lat = to_geo.transform(x, y)
        h = float(scene["dem"][r, c])
        row, col = rpc_project(true_rpc, lon, lat, h)
        features.append({"type": "Feature", "properties": {"ji": [float(col), float(row)], "id": f"p{k}"},
                         "geometry": {"type": "Point", "coordinates": [lon, lat, h]}})
    gcps = tmp_path / "gcps.geojson"
    gcps.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    out = preprocess_delivery(folder, scene["dem_path"], tmp_path / "ard", gcps=gcps)
    report = json.loads(Path(out["geometry"]).read_text())["gcp_correction"]
    assert report["raw_rmse_px"] == pytest.approx(np.hypot(3, 2), abs=0.05) and report["loo_rmse_px"] < 0.05
    with rasterio.open(out["reflectance"]) as src:
        product, transform = src.read(), src.transform
    misfits = _misfits(product, transform, scene["refl"])
    assert min(misfits, key=misfits.get) == (0, 0)
    shutil.rmtree(folder)


def test_dem_that_misses_the_scene_is_one_line_naming_it(scene, tmp_path):
    half = write_dem(tmp_path / "half_dem.tif", np.where(np.arange(N)[None, :] < N // 3, scene["dem"], -9999.0))
    with pytest.raises(LsmapError) as err:
        preprocess_delivery(scene["delivery"], half, tmp_path / "ard")
    assert re.search(r"half_dem.tif: the DEM covers only \d+\.\d% of the scene footprint", str(err.value))
    assert not (tmp_path / "ard" / "reflectance.tif").exists()


def test_cli_verb_reports_a_missing_delivery(tmp_path, capsys):
    rc = lsmap_main(["preprocess", str(tmp_path / "nope.tar.gz"), "--dem", "x.tif", "--out", str(tmp_path / "o"),
                     "--config", str(tmp_path / "none.yaml")])
    assert rc == 2 and "nope.tar.gz: delivery not found" in capsys.readouterr().err


def test_dem_gap_of_a_large_scene_is_measured_in_km2_without_scene_sized_arrays(tmp_path):
    """A 96 km x 96 km scene (12,000² MUX px) with a DEM over its west half only."""
    import tracemalloc

    from affine import Affine

    from lsmap.orthorectify import Grid
    from lsmap.preprocess import check_dem_coverage

    left, top, size_m = 400000.0, 3400000.0, 96000.0
    grid = Grid(rasterio.crs.CRS.from_epsg(32648), Affine(8.0, 0, left, 0, -8.0, top), 12000, 12000)
    dem = tmp_path / "west_half.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=600, height=1250, count=1, dtype="float32", crs="EPSG:32648",
                       transform=Affine(80.0, 0, left - 2000, 0, -80.0, top + 2000), nodata=-9999) as dst:
        dst.write(np.full((1, 1250, 600), 1500, np.float32))  # x from left - 2 km to left + 46 km, all rows
    to_lonlat = Transformer.from_crs(32648, 4326, always_xy=True)
    xs = np.r_[np.linspace(left, left + size_m, 50), np.full(50, left + size_m), np.linspace(left + size_m, left, 50), np.full(50, left)]
    ys = np.r_[np.full(50, top), np.linspace(top, top - size_m, 50), np.full(50, top - size_m), np.linspace(top - size_m, top, 50)]
    lon, lat = to_lonlat.transform(xs, ys)
    tracemalloc.start()
    try:
        report = check_dem_coverage(dem, dem, np.asarray(lon), np.asarray(lat), grid, min_coverage=0.4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report["dem_coverage"] == pytest.approx(46 / 96, abs=0.01)
    assert report["dem_gap_km2"] == pytest.approx(50 * 96, rel=0.02)
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB traced (the MUX grid itself is 576 MB as float32)"
