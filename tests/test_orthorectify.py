"""Orthorectification of a real QuickBird-2 Basic 1B image with its RPCs and a real DEM, and the
GCP bias correction, checked on the output image itself.

Heights: the DEM (rpc/ngi_dem_24m.tif) is on EGM2008; RPCs and the GCPs want WGS84 ellipsoid heights.
The EGM2008 undulation there is N ≈ +27.6 m: the GCPs' ellipsoid heights minus the DEM at the same
points give 26.96–28.26 m (checked below), so the tests orthorectify with dem_height_offset_m = 27.6.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.enums import Resampling
from scipy.ndimage import map_coordinates

from lsmap.errors import LsmapError
from lsmap.gf6 import rpc_project
from lsmap.orthorectify import (Grid, corrected_rpc, estimate_bias, orthorectify, read_gcps, rpc_options,
                                scene_grid, utm_crs_for)

pytestmark = pytest.mark.shared_data
GEOID_UNDULATION_M = 27.6
TEMPLATE_PX, SEARCH_PX = 10, 8


@pytest.fixture(scope="module")
def qb2(shared_data):
    image = shared_data / "rpc" / "qb2_basic1b.tif"
    with rasterio.open(image) as src:
        raw, rpc = src.read(1).astype(np.float64), src.rpcs
    gcps = read_gcps(shared_data / "rpc" / "qb2_gcps.geojson")
    options = rpc_options(shared_data / "rpc" / "ngi_dem_24m.tif", GEOID_UNDULATION_M)
    grid8 = scene_grid(rpc, raw.shape[1], raw.shape[0], options, res_m=12.0)
    grid = grid8.scaled(2)  # 6 m output pixels, about the image's ground sample distance
    return {"image": image, "raw": raw, "rpc": rpc, "gcps": gcps, "options": options, "grid": grid,
            "dem": shared_data / "rpc" / "ngi_dem_24m.tif"}


def _ortho(qb2, rpc, path) -> tuple[np.ndarray, Grid]:
    orthorectify(qb2["image"], rpc, qb2["grid"], path, options=qb2["options"], resampling=Resampling.cubic, src_nodata=None)
    with rasterio.open(path) as src:
        return src.read(1).astype(np.float64), qb2["grid"]


def _jacobian(rpc, lon, lat, h, crs):
    """d(row, col)/d(x, y) of the RPC at a point, by central differences in map metres."""
    to_map = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    to_geo = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    x, y = to_map.transform(lon, lat)
    step = 5.0
    cols = []
    for dx, dy in ((step, 0), (0, step)):
        lo1, la1 = to_geo.transform(x + dx, y + dy)
        lo0, la0 = to_geo.transform(x - dx, y - dy)
        r1, c1 = rpc_project(rpc, lo1, la1, h)
        r0, c0 = rpc_project(rpc, lo0, la0, h)
        cols.append([(r1 - r0) / (2 * step), (c1 - c0) / (2 * step)])
    return np.array(cols).T, (x, y)  # [[dr/dx, dr/dy], [dc/dx, dc/dy]]


def landing_errors_m(qb2, ortho: np.ndarray, grid: Grid, rpc, which: list[int] | None = None) -> dict[str, np.ndarray]:
    """Where each GCP's feature lands on the orthoimage relative to its map position (metres, E/N).

    A template is resampled from the raw image around the GCP's ``ji`` into map geometry (the local
    RPC Jacobian gives only the shape, the position comes from ``ji``), then matched by normalised
    cross-correlation against the orthoimage around the GCP's map coordinates; sub-pixel peak by
    parabola fit. Only GCPs whose raw template lies inside the image are measured.
    """
    g, raw = qb2["gcps"], qb2["raw"]
    res = grid.res
    out = {}
    for k in which if which is not None else range(len(g)):
        if not (TEMPLATE_PX * 2 < g.col[k] < raw.shape[1] - TEMPLATE_PX * 2 and TEMPLATE_PX * 2 < g.row[k] < raw.shape[0] - TEMPLATE_PX * 2):
            continue
        jac, (x, y) = _jacobian(rpc, g.lon[k], g.lat[k], g.h[k], grid.crs)
        t = np.arange(-TEMPLATE_PX, TEMPLATE_PX + 1)
        du, dv = np.meshgrid(t * res, -t * res)  # map offsets (east, north) of template pixels
        rows = g.row[k] + jac[0, 0] * du + jac[0, 1] * dv
        cols = g.col[k] + jac[1, 0] * du + jac[1, 1] * dv
        template = map_coordinates(raw, [rows, cols], order=3)
        template = (template - template.mean()) / template.std()
        c0 = (x - grid.transform.c) / res - 0.5
        r0 = (grid.transform.f - y) / res - 0.5
        scores = np.full((2 * SEARCH_PX + 1, 2 * SEARCH_PX + 1), -np.inf)
        for i, sr in enumerate(range(-SEARCH_PX, SEARCH_PX + 1)):
            for j, sc in enumerate(range(-SEARCH_PX, SEARCH_PX + 1)):
                rr, cc = np.meshgrid(r0 + sr + t, c0 + sc + t, indexing="ij")
                patch = map_coordinates(ortho, [rr, cc], order=1)
                if patch.std() > 0:
                    scores[i, j] = np.mean(template * (patch - patch.mean()) / patch.std())
        i, j = np.unravel_index(np.argmax(scores), scores.shape)
        assert scores[i, j] > 0.5, f"GCP {g.ids[k]}: no convincing match (NCC {scores[i, j]:.2f})"

        def vertex(m, a, b, c):  # parabola peak offset in [-0.5, 0.5]
            den = a - 2 * b + c
            return m + (0.5 * (a - c) / den if den < 0 and 0 < m < 2 * SEARCH_PX else 0.0)

        fi = vertex(i, *(scores[i - 1:i + 2, j] if 0 < i < 2 * SEARCH_PX else (0, 1, 0)))
        fj = vertex(j, *(scores[i, j - 1:j + 2] if 0 < j < 2 * SEARCH_PX else (0, 1, 0)))
        out[g.ids[k]] = np.array([(fj - SEARCH_PX) * res, -(fi - SEARCH_PX) * res])
    return out


def _rmse(errors: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(np.mean([np.sum(e ** 2) for e in errors.values()])))


def test_gcp_heights_minus_dem_give_the_egm2008_undulation(qb2):
    g = qb2["gcps"]
    with rasterio.open(qb2["dem"]) as dem:
        xs, ys = Transformer.from_crs("EPSG:4326", dem.crs.to_wkt(), always_xy=True).transform(g.lon, g.lat)
        heights = np.array([v[0] for v in dem.sample(zip(xs, ys))])
    diff = (g.h - heights)[np.isfinite(heights)]
    assert len(diff) >= 3 and np.all(np.abs(diff - GEOID_UNDULATION_M) < 1.5)


def test_output_is_utm_of_scene_centre_with_aligned_grids(qb2):
    grid = qb2["grid"]
    assert grid.crs == utm_crs_for(24.4, -33.67) == rasterio.crs.CRS.from_epsg(32735)
    coarse = scene_grid(qb2["rpc"], 850, 1450, qb2["options"], res_m=8.0)
    fine = coarse.scaled(4)
    assert fine.res == 2.0 and fine.bounds == coarse.bounds
    assert coarse.transform.c % 8 == 0 and coarse.transform.f % 8 == 0


def test_raw_rpcs_miss_the_gcps_by_about_28_m_on_the_orthoimage(qb2, tmp_path):
    ortho, grid = _ortho(qb2, qb2["rpc"], tmp_path / "raw.tif")
    errors = landing_errors_m(qb2, ortho, grid, qb2["rpc"])
    assert len(errors) >= 3
    rmse = _rmse(errors)
    print(f"\nraw RPC: GCP landing RMSE on the orthoimage {rmse:.1f} m over {len(errors)} GCPs: "
          + ", ".join(f"{k} {np.round(v, 1)}" for k, v in errors.items()))
    assert 15.0 < rmse < 40.0


def test_shift_correction_lands_gcps_within_one_pixel_leave_one_out(qb2, tmp_path):
    """Each measurable GCP is left out of the correction, then located on the corrected orthoimage."""
    g, rpc = qb2["gcps"], qb2["rpc"]
    fit = estimate_bias(rpc, g, "shift")
    assert fit.raw_rmse_px > 3.0 and fit.loo_rmse_px < 1.0  # GCP-space: ≈ 4.4 px before (≈ 28 m)
    errors = {}
    for k in range(len(g)):
        keep = np.arange(len(g)) != k
        corrected = corrected_rpc(rpc, estimate_bias(rpc, g.subset(keep), "shift"))
        ortho, grid = _ortho(qb2, corrected, tmp_path / f"loo{k}.tif")
        errors |= landing_errors_m(qb2, ortho, grid, corrected, which=[k])
    assert len(errors) >= 3
    rmse, gsd = _rmse(errors), fit.gsd_m
    print(f"\nshift-corrected, leave-one-out: GCP landing RMSE {rmse:.2f} m = {rmse / gsd:.2f} px "
          f"(GSD {gsd:.2f} m); GCP-space LOO RMSE {fit.loo_rmse_px * gsd:.2f} m")
    assert rmse < gsd


def test_affine_correction_reports_residuals_and_is_folded_into_the_rpc(qb2):
    g, rpc = qb2["gcps"], qb2["rpc"]
    fit = estimate_bias(rpc, g, "affine")
    report = fit.report()
    assert report["n_gcps"] == 5 and len(report["points"]) == 5
    assert fit.rmse_px < fit.raw_rmse_px / 5
    assert math.isfinite(fit.loo_rmse_px) and fit.loo_rmse_px < 1.5
    json.dumps(report)
    corrected = corrected_rpc(rpc, fit, (100.0, 600.0))
    r0, c0 = rpc_project(rpc, g.lon, g.lat, g.h)
    dr, dc = fit.delta(r0, c0)
    r1, c1 = rpc_project(corrected, g.lon, g.lat, g.h)
    np.testing.assert_allclose(r1, r0 + dr, atol=0.01)
    np.testing.assert_allclose(c1, c0 + dc, atol=0.01)


def test_too_few_gcps_for_affine_is_an_error(qb2):
    with pytest.raises(LsmapError, match="at least 3 GCPs"):
        estimate_bias(qb2["rpc"], qb2["gcps"].subset(np.array([True, True, False, False, False])), "affine")
