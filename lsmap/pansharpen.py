"""Pan-sharpening: multispectral bands at the panchromatic resolution, chunked with dask.

Method ``hpf_regression`` (the default): additive high-pass detail injection with regression
gains, the "HPF"/"GLP" family of multiresolution-analysis pan-sharpening (Chavez, Sides & Anderson
1991; Aiazzi et al. 2006, 2007; compared in Vivone et al. 2015, IEEE TGRS 53:2565)::

    P_L  = up(down(P))                      low-pass PAN: r × r block mean, then bilinear ×r
    F_k  = up(M_k) + g_k · (P - P_L)        g_k = cov(HP M_k, HP down(P)) / var(HP down(P))

``down`` is the r × r block mean (an r-times coarser pixel sees the mean of its r × r fine
pixels), ``up`` a pixel-centre-aligned bilinear interpolation. The injected detail ``P - P_L``
has zero mean over every region larger than a few MS pixels, so each band keeps its
multispectral mean (and, to first order, its low-pass content: Wald's consistency property);
the regression gains (estimated at MS scale between the high-pass parts HP = x - 5 × 5 box mean,
i.e. on detail one scale up, assuming it relates to PAN the same way) scale the PAN detail to each
band's own contrast, which keeps spectral angles close to those of the MS image. ``none`` only upsamples the MS bands (bilinear).

No data is NaN throughout and spreads by the interpolation support (about half an MS pixel); the
high-pass parts behind the gains average valid pixels only, so a scene with nodata corners or a
cloud mask still gets its gains from every observed pixel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

METHODS = ("hpf_regression", "none")


def _upsample_axis(x: np.ndarray, ratio: int, axis: int, halo: int) -> np.ndarray:
    """Bilinear ×ratio along ``axis`` of a block padded by ``halo`` cells; returns the core only."""
    n_core = x.shape[axis] - 2 * halo
    pos = (np.arange(n_core * ratio) + 0.5) / ratio - 0.5 + halo  # fine-pixel centres in padded coarse index
    lo = np.clip(np.floor(pos).astype(int), 0, x.shape[axis] - 2)
    w = (pos - lo).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = -1
    w = w.reshape(shape)
    return np.take(x, lo, axis=axis) * (1 - w) + np.take(x, lo + 1, axis=axis) * w


def upsample_block(x: np.ndarray, ratio: int, halo: int = 1) -> np.ndarray:
    """Bilinear ×ratio of the last two axes of a block padded by ``halo`` coarse pixels."""
    return _upsample_axis(_upsample_axis(x, ratio, -2, halo), ratio, -1, halo)


def upsample_dask(x, ratio: int):
    """Lazy bilinear ×ratio of the last two axes of a dask array (edges replicated)."""
    import dask.array as da

    depth = {i: 0 for i in range(x.ndim)}
    depth[x.ndim - 2] = depth[x.ndim - 1] = 1
    chunks = tuple(c if i < x.ndim - 2 else tuple(ratio * n for n in c) for i, c in enumerate(x.chunks))
    return da.map_overlap(upsample_block, x, ratio=ratio, depth=depth, boundary="nearest", trim=False,
                          chunks=chunks, dtype=np.float32, meta=np.empty((0,) * x.ndim, np.float32))


def block_mean_dask(x, ratio: int):
    """r × r block mean of the last two axes (NaN-propagating); chunks must be multiples of r."""
    import dask.array as da

    axes = {x.ndim - 2: ratio, x.ndim - 1: ratio}
    return da.coarsen(np.mean, x, axes, trim_excess=False)


def _nan_safe_box_mean(x: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Box mean over the valid (finite) pixels only: normalised convolution, NaN where x is NaN.

    ``uniform_filter`` keeps running sums, so a single NaN would make every later output NaN;
    filtering the data with NaN as 0 and the validity mask separately, then dividing, averages
    only what was observed (Knutsson & Westin 1993).
    """
    from scipy.ndimage import uniform_filter

    valid = np.isfinite(x)
    data_sum = uniform_filter(np.where(valid, x, 0).astype(np.float64), size=size, mode="nearest")
    weight = uniform_filter(valid.astype(np.float64), size=size, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = data_sum / weight
    return np.where(valid & (weight > 1e-9), mean, np.nan).astype(np.float32)


def high_pass_dask(x, size: int = 5):
    """x - (size × size box mean of the valid pixels) over the last two axes; NaN stays NaN only."""
    import dask.array as da

    axes = (x.ndim - 2, x.ndim - 1)
    depth = {i: (size // 2 if i in axes else 0) for i in range(x.ndim)}
    sizes = tuple(size if i in axes else 1 for i in range(x.ndim))
    low = da.map_overlap(_nan_safe_box_mean, x, depth=depth, boundary="reflect", size=sizes,
                         dtype=np.float32, meta=np.empty((0,) * x.ndim, np.float32))
    return x - low


def regression_gains(ms_low, pan_low) -> np.ndarray:
    """g_k = cov(HP(M_k), HP(P_low)) / var(HP(P_low)) over pixels valid in both; (B,) float64.

    ``ms_low`` (B, h, w) and ``pan_low`` (h, w) on the MS grid, numpy or dask. The regression runs on
    the high-pass parts (``high_pass_dask``): the gains say how much *detail* of each band goes with
    PAN detail one scale up, unaffected by large-scale contrasts that one band has and PAN has less.
    """
    import dask.array as da

    ms_low, pan_low = high_pass_dask(da.asarray(ms_low)), high_pass_dask(da.asarray(pan_low))
    valid = da.isfinite(pan_low)[None] & da.isfinite(ms_low)
    p = da.where(valid, pan_low[None], 0.0).astype(np.float64)
    m = da.where(valid, ms_low, 0.0).astype(np.float64)
    n = valid.sum(axis=(1, 2))
    sums = da.stack([n, p.sum(axis=(1, 2)), m.sum(axis=(1, 2)), (p * p).sum(axis=(1, 2)), (p * m).sum(axis=(1, 2))])
    n, sp, sm, spp, spm = np.asarray(sums.compute(), dtype=np.float64)
    n = np.maximum(n, 1)
    var = spp / n - (sp / n) ** 2
    cov = spm / n - (sp / n) * (sm / n)
    return np.where(var > 0, cov / np.where(var > 0, var, 1), 0.0)


def pansharpen_dask(pan, ms, ratio: int, method: str = "hpf_regression", gains: np.ndarray | None = None):
    """Lazy pan-sharpened bands.

    Parameters
    ----------
    pan : dask (H, W) float32 on the PAN grid (H = r·h, W = r·w), NaN no data, chunks multiple of r
    ms : dask (B, h, w) float32 on the aligned MS grid, chunks = PAN chunks / r
    gains : (B,) injection gains; computed by ``regression_gains`` (one pass over the data) if None

    Returns dask (B, H, W) float32 and the gains used.
    """
    if method not in METHODS:
        raise ValueError(f"unknown pan-sharpening method {method!r}; choose one of {METHODS}")
    ms_up = upsample_dask(ms, ratio)
    if method == "none":
        return ms_up, np.zeros(ms.shape[0])
    pan_low_ms = block_mean_dask(pan, ratio)
    if gains is None:
        gains = regression_gains(ms, pan_low_ms)
    detail = pan - upsample_dask(pan_low_ms, ratio)
    return ms_up + np.asarray(gains, np.float32)[:, None, None] * detail[None], np.asarray(gains)


def pansharpen(pan: "xarray.DataArray", ms: "xarray.DataArray", ratio: int,
               method: str = "hpf_regression") -> "xarray.DataArray":
    """Pan-sharpen georeferenced DataArrays: PAN (y, x) or (1, y, x), MS (band, y/r, x/r) -> (band, y, x).

    The grids are checked from the data themselves (same CRS, MS pixels exactly r × the PAN pixels,
    same corner); the result lies on the PAN grid with the MS band coordinate, the PAN grid's
    ``rio.crs``/``rio.transform()``, the MS attrs, and the gains in ``attrs["pansharpen_gains"]``.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    if "band" in pan.dims:
        pan = pan.squeeze("band", drop=True)
    check_aligned(pan, ms, ratio)
    data, gains = pansharpen_dask(pan.data, ms.data, ratio, method)
    out = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": ms["band"].values, "y": pan["y"], "x": pan["x"]},
                       attrs=dict(ms.attrs) | {"pansharpen": method, "pansharpen_gains": [float(g) for g in gains]})
    return out.rio.write_crs(pan.rio.crs).rio.write_transform(pan.rio.transform()).rio.write_nodata(np.nan, encoded=False)


def check_aligned(pan, ms, ratio: int) -> None:
    """Raise ValueError unless the MS grid is the PAN grid coarsened ``ratio`` times (same CRS and corner)."""
    pt, mt = pan.rio.transform(), ms.rio.transform()
    shape_ok = (pan.sizes["y"], pan.sizes["x"]) == (ms.sizes["y"] * ratio, ms.sizes["x"] * ratio)
    grid_ok = (np.allclose([mt.a, mt.e], [pt.a * ratio, pt.e * ratio], rtol=1e-9)
               and np.allclose([mt.c, mt.f], [pt.c, pt.f], rtol=0, atol=abs(pt.a) * 1e-3))  # metres, not relative
    if pan.rio.crs != ms.rio.crs or not (shape_ok and grid_ok):
        raise ValueError(f"MS grid ({ms.rio.crs}, {tuple(mt)[:6]}, {ms.shape}) is not the PAN grid "
                         f"({pan.rio.crs}, {tuple(pt)[:6]}, {pan.shape}) coarsened {ratio} times")


def pansharpen_arrays(pan: np.ndarray, ms: np.ndarray, ratio: int = 4, method: str = "hpf_regression",
                      chunk_px: int = 1024) -> tuple[np.ndarray, dict[str, Any]]:
    """In-memory convenience: (H, W) PAN and (B, H/r, W/r) MS -> (B, H, W) float32 and info."""
    import dask.array as da

    pan = np.asarray(pan, np.float32)
    ms = np.asarray(ms, np.float32)
    if pan.shape != (ms.shape[1] * ratio, ms.shape[2] * ratio):
        raise ValueError(f"PAN {pan.shape} is not {ratio} × MS {ms.shape[1:]}")
    chunk_px = max(ratio, chunk_px // ratio * ratio)
    pan_d = da.from_array(pan, chunks=chunk_px)
    ms_d = da.from_array(ms, chunks=(ms.shape[0], chunk_px // ratio, chunk_px // ratio))
    out, gains = pansharpen_dask(pan_d, ms_d, ratio, method)
    return out.compute(), {"method": method, "gains": gains.tolist()}


# --- quality indices (Wald's protocol) -----------------------------------------------------------
def ergas(fused: np.ndarray, reference: np.ndarray, ratio: int) -> float:
    """ERGAS (Wald 2002): 100/r · sqrt(mean_k RMSE_k² / mean_k²); 0 is perfect. (B, H, W) inputs."""
    ok = np.all(np.isfinite(fused), axis=0) & np.all(np.isfinite(reference), axis=0)
    terms = [np.mean((f[ok] - r[ok]) ** 2) / np.mean(r[ok]) ** 2 for f, r in zip(fused, reference)]
    return float(100.0 / ratio * np.sqrt(np.mean(terms)))


def sam_deg(fused: np.ndarray, reference: np.ndarray) -> float:
    """Mean spectral angle (degrees) between fused and reference pixel spectra."""
    f = fused.reshape(fused.shape[0], -1).astype(np.float64)
    r = reference.reshape(reference.shape[0], -1).astype(np.float64)
    ok = np.all(np.isfinite(f), axis=0) & np.all(np.isfinite(r), axis=0)
    f, r = f[:, ok], r[:, ok]
    cos = np.sum(f * r, axis=0) / np.maximum(np.linalg.norm(f, axis=0) * np.linalg.norm(r, axis=0), 1e-12)
    return float(np.degrees(np.mean(np.arccos(np.clip(cos, -1, 1)))))
