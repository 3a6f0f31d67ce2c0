"""GF-6 deliveries: reading, safe extraction, clear errors, and the synthetic delivery's camera."""

from __future__ import annotations

import io
import tarfile
from datetime import datetime, timezone

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from lsmap.errors import LsmapError
from lsmap.gf6 import (parse_rpb, read_delivery, rpc_project, write_synthetic_delivery)
from preprocess_helpers import CRS_UTM48, TRUTH_TRANSFORM, synthetic_ground


@pytest.fixture(scope="module")
def small_delivery(tmp_path_factory):
    refl, dem = synthetic_ground(240)
    out = tmp_path_factory.mktemp("delivery")
    folder = write_synthetic_delivery(out / "folder", refl, TRUTH_TRANSFORM, CRS_UTM48, dem, name="GF6_PMS_TEST_L1A42")
    archive = write_synthetic_delivery(out / "tar", refl, TRUTH_TRANSFORM, CRS_UTM48, dem, name="GF6_PMS_TEST_L1A42",
                                       archive=True)
    return folder, archive, refl, dem


def test_delivery_metadata_and_rpcs_are_read_from_folder_and_archive(small_delivery, tmp_path):
    folder, archive, _, _ = small_delivery
    for source in (folder, archive):
        d = read_delivery(source, extract_to=tmp_path / source.name)
        assert (d.satellite, d.sensor, d.product_id) == ("GF6", "PMS", "42")
        assert d.acquired == datetime(2022, 9, 10, 3, 30, tzinfo=timezone.utc)
        assert (d.sun_zenith_deg, d.sun_azimuth_deg, d.sat_zenith_deg) == (32.0, 150.0, 8.0)
        with rasterio.open(d.pan) as pan, rasterio.open(d.mux) as mux:
            assert (pan.width, pan.height) == (4 * mux.width, 4 * mux.height) and mux.count == 4
        assert d.pan.with_suffix(".jpg").exists() and d.mux.with_suffix(".jpg").exists()


def test_rpb_parser_agrees_with_gdal_sidecar_reader(small_delivery):
    folder, *_ = small_delivery
    d = read_delivery(folder)
    with rasterio.open(d.pan) as src:  # GDAL reads <name>.RPB beside the TIFF itself
        gdal_rpc = src.rpcs
    ours = parse_rpb(d.pan_rpb)
    for key, value in gdal_rpc.to_dict().items():
        np.testing.assert_allclose(getattr(ours, key), value, rtol=1e-9, err_msg=key)


def test_synthetic_rpcs_reproduce_the_camera_to_a_hundredth_of_a_pixel(small_delivery):
    """Ground points projected through the fitted RPC land where the camera put them."""
    folder, _, refl, dem = small_delivery
    d = read_delivery(folder)
    rng = np.random.default_rng(1)
    n = refl.shape[1]
    r, c = rng.integers(40, n - 40, 50), rng.integers(40, n - 40, 50)
    x, y = TRUTH_TRANSFORM * (c + 0.5, r + 0.5)
    lon, lat = Transformer.from_crs(CRS_UTM48, "EPSG:4326", always_xy=True).transform(x, y)
    row, col = rpc_project(d.pan_rpc, lon, lat, dem[r, c])
    with rasterio.open(d.pan) as src:
        img = src.read(1).astype(float)
    # The truth pixel and the image pixel it maps to carry the same (PAN) signal
    pan_truth = np.tensordot([0.2, 0.3, 0.3, 0.2], refl, axes=1)[r, c]
    from scipy.ndimage import map_coordinates
    img_at = map_coordinates(img, [row, col], order=1)
    assert np.corrcoef(pan_truth, img_at)[0, 1] > 0.97


def test_archive_member_escaping_the_target_is_refused(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../outside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(LsmapError, match="evil.tar.gz: unsafe archive member"):
        read_delivery(evil, extract_to=tmp_path / "x" / "target")
    assert not (tmp_path / "x" / "outside.txt").exists()


def test_missing_rpb_is_one_line_naming_the_file(small_delivery, tmp_path):
    import shutil

    folder, *_ = small_delivery
    copy = shutil.copytree(folder, tmp_path / "copy")
    rpb = next(copy.glob("*-MUX.rpb"))
    rpb.unlink()
    with pytest.raises(LsmapError) as err:
        read_delivery(copy)
    assert "GF6_PMS_TEST_L1A42-MUX.rpb" in str(err.value) and "\n" not in str(err.value)


def test_corrupt_tiff_is_one_line_naming_the_file(small_delivery, tmp_path):
    import shutil

    folder, *_ = small_delivery
    copy = shutil.copytree(folder, tmp_path / "copy")
    pan = next(copy.glob("*-PAN.tiff"))
    pan.write_bytes(pan.read_bytes()[: pan.stat().st_size // 2])
    with pytest.raises(LsmapError) as err:
        read_delivery(copy)
    assert "GF6_PMS_TEST_L1A42-PAN.tiff" in str(err.value) and "\n" not in str(err.value)


def test_rpb_without_coefficients_is_rejected(tmp_path):
    bad = tmp_path / "x-PAN.rpb"
    bad.write_text('satId = "GF6";\nBEGIN_GROUP = IMAGE\n\tlineOffset = 1;\nEND_GROUP = IMAGE\nEND;\n')
    with pytest.raises(LsmapError, match="x-PAN.rpb: not an RPC00B file"):
        parse_rpb(bad)
