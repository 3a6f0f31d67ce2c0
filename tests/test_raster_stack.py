"""The preprocessing stages on rioxarray DataArrays: the grid (CRS, transform, nodata) and the band
names travel with the data through calibration, pan-sharpening and DEM alignment."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import numpy as np
import pytest
import rasterio
from affine import Affine

from lsmap import dem as demlib
from lsmap.calibration import Calibrator, default_settings
from lsmap.gf6 import MUX_BANDS
from lsmap.pansharpen import pansharpen
from lsmap.preprocess import open_raster
from lsmap.progress import progress_bar
from preprocess_helpers import CRS_UTM48, synthetic_ground, write_dem

PAN_TRANSFORM = Affine(2.0, 0, 400000.0, 0, -2.0, 3600000.0)


def _write(path, data, transform, nodata=0):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=CRS_UTM48, transform=transform, nodata=nodata) as dst:
        dst.write(data)
    return path


@pytest.fixture
def pan_and_mux(tmp_path):
    rng = np.random.default_rng(0)
    pan = rng.integers(200, 900, (1, 128, 96)).astype(np.uint16)
    pan[0, :8, :8] = 0  # fill
    mux = rng.integers(200, 900, (4, 32, 24)).astype(np.uint16)
    return (_write(tmp_path / "pan.tif", pan, PAN_TRANSFORM),
            _write(tmp_path / "mux.tif", mux, PAN_TRANSFORM * Affine.scale(4)), pan, mux)


def _calibrator():
    return Calibrator(default_settings(), "GF6", "PMS", datetime(2021, 7, 4, tzinfo=timezone.utc), 35.0)


def test_calibration_and_pansharpening_keep_the_grid_and_band_names(pan_and_mux):
    pan_path, mux_path, pan_dn, mux_dn = pan_and_mux
    cal = _calibrator()
    pan = cal.reflectance_dataarray(open_raster(pan_path, 64, ["pan"]))
    ms = cal.reflectance_dataarray(open_raster(mux_path, 16, list(MUX_BANDS)))
    assert pan.rio.crs == CRS_UTM48 and pan.rio.transform() == PAN_TRANSFORM and np.isnan(pan.rio.nodata)
    assert ms.rio.transform() == PAN_TRANSFORM * Affine.scale(4) and list(ms["band"].values) == list(MUX_BANDS)
    assert pan.chunks is not None  # lazy until written
    np.testing.assert_array_equal(ms.sel(band="red").values, cal.reflectance(mux_dn[2], "red"))
    assert np.isnan(pan.values[0, :8, :8]).all()  # DN 0 is no data
    fused = pansharpen(pan, ms, 4)
    assert fused.rio.crs == CRS_UTM48 and fused.rio.transform() == PAN_TRANSFORM
    assert fused.shape == (4, 128, 96) and list(fused["band"].values) == list(MUX_BANDS)
    assert len(fused.attrs["pansharpen_gains"]) == 4
    # the MS means survive the injection (detail has zero mean): a real result, not only metadata
    np.testing.assert_allclose(np.nanmean(fused.values[:, 16:, 16:], axis=(1, 2)),
                               np.nanmean(ms.values[:, 4:, 4:], axis=(1, 2)), rtol=0.02)


def test_pansharpening_refuses_grids_that_do_not_nest(pan_and_mux, tmp_path):
    pan_path, _, _, mux_dn = pan_and_mux
    shifted = _write(tmp_path / "shifted.tif", mux_dn, PAN_TRANSFORM * Affine.translation(2, 0) * Affine.scale(4))
    cal = _calibrator()
    pan = cal.reflectance_dataarray(open_raster(pan_path, 64, ["pan"]))
    ms = cal.reflectance_dataarray(open_raster(shifted, 16, list(MUX_BANDS)))
    with pytest.raises(ValueError, match="is not the PAN grid"):
        pansharpen(pan, ms, 4)


def test_dem_like_a_scene_equals_the_windowed_dem_and_carries_the_scene_grid(tmp_path, pan_and_mux):
    _, dem = synthetic_ground(n=200)
    dem_path = write_dem(tmp_path / "dem.tif", dem, transform=Affine(2.0, 0, 399900.0, 0, -2.0, 3600100.0))
    like = open_raster(pan_and_mux[0], 64)
    on_grid = demlib.dem_like(dem_path, like, chunk_px=48)  # chunks that do not divide the scene
    assert on_grid.rio.transform() == PAN_TRANSFORM and on_grid.rio.crs == CRS_UTM48
    whole = demlib.dem_on_grid(dem_path, PAN_TRANSFORM, like.rio.crs, (128, 96))
    np.testing.assert_allclose(on_grid.values, whole, atol=1e-3)
    assert np.isfinite(whole).all()
    terrain = demlib.terrain(on_grid)
    assert terrain["slope"].rio.transform() == PAN_TRANSFORM
    slope, _ = demlib.slope_aspect_deg(whole, 2.0, 2.0)
    np.testing.assert_allclose(terrain["slope"].values, slope, atol=1e-4, equal_nan=True)


def test_progress_without_a_terminal_is_a_log_line(caplog):
    with caplog.at_level(logging.INFO, logger="lsmap.preprocess"):
        progress = progress_bar(3, "terrain", "block", logger=logging.getLogger("lsmap.preprocess"))  # as write_cogs
        for _ in range(3):
            progress.update()
        progress.close()
    assert "terrain: 3 of 3 blocks (100%)" in caplog.text
