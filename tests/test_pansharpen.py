"""Pan-sharpening on a real PAN/MS pair (pansharp/), Wald's protocol: sharpen a 4x degraded pair and
compare with the original MS, which is then the reference at the fused resolution."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from lsmap.pansharpen import ergas, pansharpen_arrays, sam_deg

RATIO = 4


def _degrade(x: np.ndarray, r: int) -> np.ndarray:
    return x.reshape(*x.shape[:-2], x.shape[-2] // r, r, x.shape[-1] // r, r).mean(axis=(-3, -1))


@pytest.fixture(scope="module")
def pair(shared_data):
    with rasterio.open(shared_data / "pansharp" / "pan.tif") as p, rasterio.open(shared_data / "pansharp" / "ms.tif") as m:
        pan, ms = p.read(1).astype(np.float32), m.read().astype(np.float32)
    h, w = pan.shape[0] // 16 * 16, pan.shape[1] // 16 * 16
    return pan[:h, :w], ms[:, : h // RATIO, : w // RATIO]


@pytest.mark.shared_data
def test_wald_protocol_fused_bands_beat_interpolation_and_keep_spectra(pair):
    pan, ms = pair
    pan_low, ms_low = _degrade(pan, RATIO), _degrade(ms, RATIO)
    fused, info = pansharpen_arrays(pan_low, ms_low, RATIO, "hpf_regression", chunk_px=256)
    upsampled, _ = pansharpen_arrays(pan_low, ms_low, RATIO, "none", chunk_px=256)
    e_fused, e_up = ergas(fused, ms, RATIO), ergas(upsampled, ms, RATIO)
    s_fused, s_up = sam_deg(fused, ms), sam_deg(upsampled, ms)
    print(f"\nWald: ERGAS fused {e_fused:.3f} vs bilinear {e_up:.3f}; SAM fused {s_fused:.2f}° vs bilinear {s_up:.2f}°; gains {info['gains']}")
    assert e_fused < 0.5 * e_up          # measured 0.76 vs 3.08
    assert s_fused < s_up + 0.5          # spectral angles barely change (1.54° vs 1.39°)
    assert e_fused < 1.5


@pytest.mark.shared_data
def test_fused_bands_keep_the_multispectral_means(pair):
    pan, ms = pair
    fused, _ = pansharpen_arrays(pan, ms, RATIO, chunk_px=512)
    np.testing.assert_allclose(fused.reshape(3, -1).mean(axis=1), ms.reshape(3, -1).mean(axis=1), rtol=2e-3)
    # block means at MS resolution stay close too (Wald's consistency), far closer than the detail added
    back = _degrade(fused, RATIO)
    assert np.abs(back - ms).mean() < 0.15 * np.abs(fused - np.repeat(np.repeat(ms, 4, 1), 4, 2)).mean()


def test_result_does_not_depend_on_chunk_size():
    rng = np.random.default_rng(0)
    pan = rng.random((256, 192)).astype(np.float32)
    ms = rng.random((4, 64, 48)).astype(np.float32)
    a, _ = pansharpen_arrays(pan, ms, RATIO, chunk_px=64)
    b, _ = pansharpen_arrays(pan, ms, RATIO, chunk_px=1024)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_no_data_stays_no_data():
    pan = np.ones((64, 64), np.float32)
    ms = np.ones((2, 16, 16), np.float32)
    ms[:, 5:8, 5:8] = np.nan
    fused, _ = pansharpen_arrays(pan, ms, RATIO, chunk_px=32)
    assert np.isnan(fused[:, 26, 26]).all() and np.isfinite(fused[:, 2, 2]).all()


def test_high_pass_ignores_nodata_instead_of_spreading_it():
    # uniform_filter's running sums turned a whole chunk NaN for one NaN pixel (issue 14)
    from lsmap.pansharpen import high_pass_dask
    import dask.array as da

    x = np.random.default_rng(1).random((50, 50)).astype(np.float32)
    x[10, 10] = np.nan
    hp = high_pass_dask(da.from_array(x, chunks=50)).compute()
    assert np.isnan(hp).sum() == 1
    # away from the NaN the result equals the plain high-pass
    clean = x.copy()
    clean[10, 10] = 0
    ref = high_pass_dask(da.from_array(clean, chunks=50)).compute()
    np.testing.assert_allclose(hp[20:, 20:], ref[20:, 20:], atol=1e-6)


@pytest.mark.shared_data
def test_wald_protocol_with_a_nodata_wedge_in_every_chunk(pair):
    """A nodata wedge touching every chunk: the gains still come out positive and the fused bands
    still beat bilinear interpolation on the pixels that remain (before the fix: gains 0)."""
    pan, ms = pair
    pan_low, ms_low = _degrade(pan, RATIO), _degrade(ms, RATIO)
    h, w = ms_low.shape[1:]
    rows, cols = np.mgrid[0:h, 0:w]
    wedge = cols < (0.6 * w) * (1 - rows / h)          # a triangle over the upper-left corner
    wedge |= (cols % 32 == 0)                            # and one nodata column in every 32-px chunk
    ms_low = np.where(wedge[None], np.nan, ms_low).astype(np.float32)
    pan_low = np.where(np.repeat(np.repeat(wedge, RATIO, 0), RATIO, 1), np.nan, pan_low).astype(np.float32)
    fused, info = pansharpen_arrays(pan_low, ms_low, RATIO, "hpf_regression", chunk_px=128)
    upsampled, _ = pansharpen_arrays(pan_low, ms_low, RATIO, "none", chunk_px=128)
    gains = np.asarray(info["gains"])
    e_fused, e_up = ergas(fused, ms, RATIO), ergas(upsampled, ms, RATIO)
    print(f"\nWald with wedge: gains {gains}, ERGAS fused {e_fused:.3f} vs bilinear {e_up:.3f}")
    assert np.all(gains > 0.2)
    assert e_fused < 0.6 * e_up
