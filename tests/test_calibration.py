"""Radiometric calibration: TOA reflectance of a generated product against a hand computation."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone

import numpy as np
import pytest
import rasterio
from affine import Affine

from lsmap.calibration import Calibrator, coefficients_for, default_settings, earth_sun_distance_au
from lsmap.errors import LsmapError
from lsmap.gf6 import MUX_BANDS, write_synthetic_delivery
from lsmap.preprocess import preprocess_delivery
from preprocess_helpers import CRS_UTM48, write_dem

ACQUIRED = datetime(2018, 7, 4, 3, 40, tzinfo=timezone.utc)  # aphelion season: d ≈ 1.0167 AU
SUN_ZENITH = 35.0
PATCH = {"blue": 0.1234, "green": 0.1500, "red": 0.0800, "nir": 0.3300}


def test_earth_sun_distance_at_perihelion_and_aphelion():
    assert earth_sun_distance_au(datetime(2020, 1, 4)) == pytest.approx(0.98328, abs=1e-4)
    assert earth_sun_distance_au(datetime(2020, 7, 4)) == pytest.approx(1.01672, abs=2e-4)


def test_nearest_year_is_used_and_logged(caplog):
    settings = default_settings()
    with caplog.at_level(logging.WARNING, logger="lsmap.calibration"):
        coeffs = coefficients_for(settings, "GF6", "PMS", 2024)
    assert coeffs["year"] == 2021 and coeffs["blue"] == 0.082
    assert "nearest year 2021" in caplog.text
    assert coefficients_for(settings, "GF6", "PMS", 2018)["blue"] == 0.0825
    with pytest.raises(LsmapError, match="no gains for satellite GF1"):
        coefficients_for(settings, "GF1", "PMS", 2018)


def test_dark_object_subtraction_removes_the_haze_above_one_percent():
    settings = default_settings() | {"dark_object_subtraction": True, "dos_percentile": 1.0}
    cal = Calibrator(settings, "GF6", "PMS", ACQUIRED, SUN_ZENITH)
    dn = np.full(10_000, 900, np.uint16)
    dn[:500] = 300  # dark objects
    haze = cal.estimate_haze(dn, "blue")
    assert haze == pytest.approx(300 * cal.scale("blue") - 0.01, rel=1e-6)
    assert np.nanmin(cal.reflectance(dn, "blue")) == pytest.approx(0.01, abs=1e-6)


def test_toa_reflectance_of_a_generated_product_matches_the_hand_computation(tmp_path):
    """Uniform ground on flat terrain: every output pixel is hand-computable from the MUX DN."""
    n = 160
    refl = np.stack([np.full((n, n), PATCH[b], np.float32) for b in MUX_BANDS])
    dem = np.full((n, n), 1000.0)
    transform = Affine(2.0, 0, 400000.0, 0, -2.0, 3600000.0)
    delivery = write_synthetic_delivery(tmp_path / "d", refl, transform, CRS_UTM48, dem, acquired=ACQUIRED,
                                        sun_zenith_deg=SUN_ZENITH, name="GF6_PMS_CAL_L1A1")
    out = preprocess_delivery(delivery, write_dem(tmp_path / "dem.tif", dem.astype(np.float32)), tmp_path / "ard",
                              keep_intermediate=True)
    with rasterio.open(out["mux_dn"]) as src:
        dn = src.read()
    with rasterio.open(out["reflectance"]) as src:
        product = src.read()
        tags = src.tags()
    # by hand: 2018 gains (the scene's year), ETM+ ESUN, day of year 185, cos(35°)
    gains = {"blue": 0.0825, "green": 0.0663, "red": 0.0513, "nir": 0.0298}
    esun = {"blue": 1997.0, "green": 1812.0, "red": 1533.0, "nir": 1039.0}
    d = 1 - 0.01672 * math.cos(2 * math.pi * (185 - 4) / 365.256)
    for i, band in enumerate(MUX_BANDS):
        band_dn = np.median(dn[i][dn[i] > 0])
        by_hand = math.pi * gains[band] * band_dn * d ** 2 / (esun[band] * math.cos(math.radians(SUN_ZENITH)))
        valid = product[i] > 0
        assert valid.mean() > 0.5
        assert np.median(product[i][valid]) / 1e4 == pytest.approx(by_hand, abs=1.5e-4)
        assert by_hand == pytest.approx(PATCH[band], abs=3e-4)  # and the DN encoded the ground truth
    assert "2018" in tags["CALIBRATION_SOURCE"] and tags["REFLECTANCE"] == "top of atmosphere"
    assert float(tags["EARTH_SUN_DISTANCE_AU"]) == pytest.approx(d, abs=1e-6)
