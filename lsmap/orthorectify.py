"""Orthorectification with the RPC camera model and a DEM, and GCP bias compensation.

Heights. RPC00B models map (lon, lat, height above the WGS84 *ellipsoid*) to image line/sample.
DEMs usually hold *orthometric* heights above a geoid (EGM96/EGM2008: SRTM, ALOS, Copernicus),
which differ from ellipsoid heights by the geoid undulation N (h = H + N; N is about -40..+30 m
over China, +27.6 m over the QuickBird test scene). GDAL can shift a DEM whose CRS declares a
geoid, but only with PROJ's geoid grids, which are not installed offline; it then silently uses
the raw heights. We therefore switch GDAL's vertical-datum shift off (``RPC_DEM_APPLY_VDATUM_SHIFT
=FALSE``) and add ``dem_height_offset_m`` (= N at the scene, or 0 for an ellipsoidal DEM) to every
DEM height (GDAL's ``RPC_HEIGHT``). An error δh in heights moves a point by δh·tan(view zenith)
on the ground (≈ 5 m for 30 m at 10°), and a GCP bias correction absorbs most of it.

Grid. The output CRS is the UTM zone of the scene centre unless one is configured. PAN (2 m) and
MUX (8 m) share one origin snapped to multiples of the MUX pixel, so every MUX pixel covers
exactly 4 × 4 PAN pixels.

GCP bias compensation (Fraser & Hanley 2003, Grodecki & Dial 2003): RPC biases of high-resolution
sensors are well modelled in image space, ``Δrow = a0 + a1·row + a2·col`` (and likewise for
columns), a shift when only a0 is kept. The parameters are estimated by least squares from GCPs
(pixel ``ji`` plus lon/lat/ellipsoid height); per-point residuals and the leave-one-out RMSE are
reported. The corrected camera is written back as an RPC (exactly for a shift; refitted to the
corrected mapping for an affine), so GDAL's warper does the resampling in both cases.
"""

from __future__ import annotations

import json
import os
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.rpc import RPC
from rasterio.transform import RPCTransformer
from rasterio.warp import reproject, transform as warp_transform

from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output
from lsmap.gf6 import fit_rpc, rpc_project

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: CRS, affine transform (pixel corner based), size in pixels."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> float:
        return self.transform.a

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform.c, self.transform.f
        return left, top - self.height * self.res, left + self.width * self.res, top

    def scaled(self, factor: int) -> "Grid":
        """The grid with pixels ``factor`` times smaller over the same bounds (PAN from MUX)."""
        return Grid(self.crs, self.transform * Affine.scale(1 / factor), self.width * factor, self.height * factor)

    def coarsened(self, factor: int) -> "Grid":
        """The grid with pixels ``factor`` times larger from the same origin, covering at least its bounds."""
        return Grid(self.crs, self.transform * Affine.scale(factor), math.ceil(self.width / factor),
                    math.ceil(self.height / factor))

    def profile(self, **extra: Any) -> dict[str, Any]:
        return dict(crs=self.crs, transform=self.transform, width=self.width, height=self.height, **extra)


def utm_crs_for(lon: float, lat: float) -> CRS:
    """WGS 84 / UTM zone of a point (EPSG 326xx north, 327xx south)."""
    zone = min(60, int((lon + 180.0) // 6.0) + 1)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def rpc_options(dem: str | Path | None, height_offset_m: float = 0.0) -> dict[str, Any]:
    """GDAL RPC transformer options: DEM heights + offset (see the module docstring)."""
    options: dict[str, Any] = {"RPC_HEIGHT": float(height_offset_m)}
    if dem is not None:
        options.update(RPC_DEM=str(dem), RPC_DEMINTERPOLATION="bilinear", RPC_DEM_APPLY_VDATUM_SHIFT="FALSE")
    return options


def footprint_lonlat(rpc: RPC, width: int, height: int, options: dict[str, Any],
                     samples: int = 33) -> tuple[np.ndarray, np.ndarray]:
    """Ground (lon, lat) of points along the image border, at DEM heights where options give one.

    Points where the DEM has no value are dropped; none left raises.
    """
    t = np.linspace(0.0, 1.0, samples)
    rows = np.concatenate([np.zeros_like(t), t * height, np.full_like(t, height), (1 - t) * height])
    cols = np.concatenate([t * width, np.full_like(t, width), (1 - t) * width, np.zeros_like(t)])
    with RPCTransformer(rpc, **options) as transformer:
        lon, lat = transformer.xy(rows, cols, zs=np.zeros_like(rows), offset="ul")
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
    if not ok.any():
        raise LsmapError(f"{options.get('RPC_DEM', 'RPC')}: the image footprint could not be located on the DEM")
    return lon[ok], lat[ok]


def scene_grid(rpc: RPC, width: int, height: int, options: dict[str, Any], *, crs: CRS | None = None,
               res_m: float = 8.0) -> Grid:
    """A north-up grid at ``res_m`` that contains the image footprint, origin on multiples of res_m."""
    lon, lat = footprint_lonlat(rpc, width, height, options)
    crs = crs or utm_crs_for(float(np.mean(lon)), float(np.mean(lat)))
    xs, ys = warp_transform("EPSG:4326", crs, lon.tolist(), lat.tolist())
    left, right = math.floor(min(xs) / res_m) * res_m, math.ceil(max(xs) / res_m) * res_m
    bottom, top = math.floor(min(ys) / res_m) * res_m, math.ceil(max(ys) / res_m) * res_m
    return Grid(crs, Affine(res_m, 0, left, 0, -res_m, top), int(round((right - left) / res_m)),
                int(round((top - bottom) / res_m)))


def estimate_gsd_m(rpc: RPC, height: float | None = None) -> float:
    """Ground sample distance (m) at the image centre: mean ground length of one pixel step."""
    h = rpc.height_off if height is None else height
    with RPCTransformer(rpc, RPC_HEIGHT=h) as transformer:
        r, c = rpc.line_off + 0.5, rpc.samp_off + 0.5
        lon, lat = transformer.xy([r, r, r + 1], [c, c + 1, c], zs=[0, 0, 0], offset="ul")
    crs = utm_crs_for(lon[0], lat[0])
    xs, ys = warp_transform("EPSG:4326", crs, list(lon), list(lat))
    return float((math.hypot(xs[1] - xs[0], ys[1] - ys[0]) + math.hypot(xs[2] - xs[0], ys[2] - ys[0])) / 2)


# --------------------------------------------------------------------------------------------
# Orthorectification
# --------------------------------------------------------------------------------------------
def orthorectify(
    image: str | Path,
    rpc: RPC,
    grid: Grid,
    out_path: str | Path,
    *,
    options: dict[str, Any],
    resampling: Resampling = Resampling.cubic,
    src_nodata: float | None = 0,
    dst_nodata: float = 0,
    threads: int = 2,
    warp_mem_mb: int = 256,
    tags: dict[str, str] | None = None,
) -> Path:
    """Warp a sensor-geometry image onto ``grid`` with its RPC and the DEM in ``options``.

    Writes a tiled, deflate-compressed GTiff of the source dtype, band by band, through GDAL's
    chunked warper (memory bounded by ``warp_mem_mb``, not by the scene size). Pixels the image
    does not see, or where the DEM has no height, get ``dst_nodata``.
    """
    image, out_path = Path(image), Path(out_path)
    vrt = out_path.with_name(f".{out_path.stem}.{os.getpid()}.rpc.vrt")
    try:
        write_rpc_vrt(image, rpc, vrt)
        src = rasterio.open(vrt)
    except rasterio.errors.RasterioError as exc:
        vrt.unlink(missing_ok=True)
        raise LsmapError(f"{image}: unreadable image ({str(exc).splitlines()[0]})") from exc
    try:
        _warp(src, rpc, grid, out_path, options, resampling, src_nodata, dst_nodata, threads, warp_mem_mb, tags)
    finally:
        src.close()
        vrt.unlink(missing_ok=True)
    return out_path


def write_rpc_vrt(image: Path, rpc: RPC, vrt: Path) -> Path:
    """A VRT over ``image`` that carries ``rpc`` as its RPC metadata.

    GDAL's warper takes the RPCs of a dataset source from the dataset itself (the TIFF tags or
    the .RPB beside it), so a corrected camera has to travel this way.
    """
    from xml.sax.saxutils import escape

    with rasterio.open(image) as src:
        width, height, dtypes = src.width, src.height, src.dtypes
    gdal_types = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
                  "float32": "Float32", "float64": "Float64"}
    mdi = "".join(f'<MDI key="{k}">{escape(str(v))}</MDI>' for k, v in rpc.to_gdal().items())
    bands = "".join(
        f'<VRTRasterBand dataType="{gdal_types[dt]}" band="{i}"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{escape(str(Path(image).resolve()))}</SourceFilename>'
        f'<SourceBand>{i}</SourceBand><SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>'
        f'<DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/></SimpleSource></VRTRasterBand>'
        for i, dt in enumerate(dtypes, start=1))
    vrt.write_text(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
                   f'<Metadata domain="RPC">{mdi}</Metadata>{bands}</VRTDataset>')
    return vrt


def _warp(src, rpc, grid, out_path, options, resampling, src_nodata, dst_nodata, threads, warp_mem_mb, tags) -> None:
    with atomic_output(out_path) as tmp:
        profile = grid.profile(driver="GTiff", count=src.count, dtype=src.dtypes[0], nodata=dst_nodata,
                               tiled=True, blockxsize=512, blockysize=512, compress="deflate",
                               predictor=2, BIGTIFF="IF_SAFER")
        with rasterio.open(tmp, "w", **profile) as dst:
            bands = list(range(1, src.count + 1))  # in one warp: the RPC + DEM transform is computed once
            reproject(
                source=rasterio.band(src, bands), destination=rasterio.band(dst, bands),
                rpcs=rpc, src_nodata=src_nodata, dst_transform=grid.transform, dst_crs=grid.crs,
                dst_nodata=dst_nodata, resampling=resampling, num_threads=threads,
                warp_mem_limit=warp_mem_mb, **options,
            )
            if tags:
                dst.update_tags(**tags)
            descriptions = [src.descriptions[i] for i in range(src.count)]
            for i, text in enumerate(descriptions, start=1):
                if text:
                    dst.set_band_description(i, text)


# --------------------------------------------------------------------------------------------
# Ground control points and RPC bias compensation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroundControlPoints:
    """GCPs: image (row, col) pixel-centre based, ground lon/lat (deg) and ellipsoid height (m)."""

    ids: list[str]
    row: np.ndarray
    col: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    h: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: np.ndarray) -> "GroundControlPoints":
        keep = np.asarray(keep)
        return GroundControlPoints([i for i, k in zip(self.ids, keep) if k], self.row[keep], self.col[keep],
                                   self.lon[keep], self.lat[keep], self.h[keep])


def read_gcps(path: str | Path, pixel_origin: str = "center") -> GroundControlPoints:
    """Read a GeoJSON of GCP points with properties ``ji`` = [col, row] and lon/lat/height geometry.

    ``pixel_origin`` says where ``ji`` = (0, 0) lies: ``center`` of the top-left pixel (orthority's
    convention, the default) or its ``corner`` (GDAL's). Heights are taken as WGS84 ellipsoid
    heights, as in RPC00B; a point without a height is an error.
    """
    path = Path(path)
    try:
        features = json.loads(path.read_text())["features"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LsmapError(f"{path}: not a GeoJSON FeatureCollection of GCPs ({exc})") from exc
    shift = {"center": 0.0, "centre": 0.0, "corner": -0.5}[pixel_origin]
    ids, rows, cols, lons, lats, hs = [], [], [], [], [], []
    for n, feature in enumerate(features):
        try:
            col, row = feature["properties"]["ji"]
            lon, lat, h = feature["geometry"]["coordinates"][:3]
        except (KeyError, TypeError, ValueError) as exc:
            raise LsmapError(f"{path}: GCP #{n} needs properties.ji [col, row] and a lon/lat/height point") from exc
        ids.append(str(feature["properties"].get("id", n)))
        rows.append(row + shift), cols.append(col + shift), lons.append(lon), lats.append(lat), hs.append(h)
    if not ids:
        raise LsmapError(f"{path}: no GCPs")
    return GroundControlPoints(ids, *(np.asarray(v, float) for v in (rows, cols, lons, lats, hs)))


def _design(row: np.ndarray, col: np.ndarray, model: str) -> np.ndarray:
    ones = np.ones_like(row)
    return ones[:, None] if model == "shift" else np.stack([ones, row, col], axis=1)


def _fit_bias(row: np.ndarray, col: np.ndarray, d_row: np.ndarray, d_col: np.ndarray, model: str) -> np.ndarray:
    """(2, k) parameters of Δrow, Δcol as a function of (1[, row, col]) by least squares."""
    a = _design(row, col, model)
    return np.stack([np.linalg.lstsq(a, d, rcond=None)[0] for d in (d_row, d_col)])


@dataclass(frozen=True)
class BiasCorrection:
    """Image-space RPC bias correction: corrected = RPC projection + Δ(row, col).

    ``residuals_px`` (n, 2) are (row, col) misfits after correction; ``loo_residuals_px`` those of
    each point when it was left out of the fit; RMSEs are radial, in pixels and metres.
    """

    model: str
    params: np.ndarray
    ids: list[str]
    raw_residuals_px: np.ndarray
    residuals_px: np.ndarray
    loo_residuals_px: np.ndarray
    gsd_m: float
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def _rmse(res: np.ndarray) -> float:
        return float(np.sqrt(np.mean(np.sum(res ** 2, axis=1)))) if res.size else float("nan")

    @property
    def raw_rmse_px(self) -> float:
        return self._rmse(self.raw_residuals_px)

    @property
    def rmse_px(self) -> float:
        return self._rmse(self.residuals_px)

    @property
    def loo_rmse_px(self) -> float:
        return self._rmse(self.loo_residuals_px)

    def delta(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = _design(np.atleast_1d(row).astype(float), np.atleast_1d(col).astype(float), self.model)
        return a @ self.params[0], a @ self.params[1]

    def report(self) -> dict[str, Any]:
        """JSON-ready summary: per-point residuals and RMSEs in pixels and metres."""
        points = [
            {"id": i, "raw_row_px": float(r0[0]), "raw_col_px": float(r0[1]), "row_px": float(r[0]),
             "col_px": float(r[1]), "loo_row_px": float(lo[0]), "loo_col_px": float(lo[1])}
            for i, r0, r, lo in zip(self.ids, self.raw_residuals_px, self.residuals_px, self.loo_residuals_px)
        ]
        summary = {"model": self.model, "n_gcps": len(self.ids), "gsd_m": self.gsd_m,
                   "params_row": self.params[0].tolist(), "params_col": self.params[1].tolist(), "points": points}
        for name in ("raw_rmse", "rmse", "loo_rmse"):
            px = getattr(self, f"{name}_px")
            summary[f"{name}_px"], summary[f"{name}_m"] = px, px * self.gsd_m
        return summary | self.extra


def estimate_bias(rpc: RPC, gcps: GroundControlPoints, model: str = "shift") -> BiasCorrection:
    """Least-squares image-space bias (``shift`` or ``affine``) of an RPC from GCPs, with LOO.

    Needs at least 1 GCP for a shift, 3 for an affine; LOO needs one more than that.
    """
    need = {"shift": 1, "affine": 3}[model]
    if len(gcps) < need:
        raise LsmapError(f"{model} bias correction needs at least {need} GCPs, got {len(gcps)}")
    r_rpc, c_rpc = rpc_project(rpc, gcps.lon, gcps.lat, gcps.h)
    d_row, d_col = gcps.row - r_rpc, gcps.col - c_rpc
    params = _fit_bias(r_rpc, c_rpc, d_row, d_col, model)
    a = _design(r_rpc, c_rpc, model)
    fitted = np.stack([a @ params[0], a @ params[1]], axis=1)
    observed = np.stack([d_row, d_col], axis=1)
    loo = np.full_like(observed, np.nan)
    if len(gcps) > need:
        for k in range(len(gcps)):
            keep = np.arange(len(gcps)) != k
            p = _fit_bias(r_rpc[keep], c_rpc[keep], d_row[keep], d_col[keep], model)
            loo[k] = observed[k] - np.array([a[k] @ p[0], a[k] @ p[1]])
    return BiasCorrection(model, params, list(gcps.ids), -observed, fitted - observed,
                          -loo, estimate_gsd_m(rpc, float(np.mean(gcps.h))))


def corrected_rpc(rpc: RPC, correction: BiasCorrection, height_range: tuple[float, float] | None = None) -> RPC:
    """An RPC that includes the image-space correction.

    A shift moves the line/sample offsets (exact). An affine is folded in by refitting an RPC to
    the corrected projections of a 3-D ground lattice over the RPC's validity box; the fit error
    (pixels) is logged and must be below 0.01 px.
    """
    if correction.model == "shift":
        d_row, d_col = correction.params[0][0], correction.params[1][0]
        return RPC(**{**rpc.to_dict(), "line_off": rpc.line_off + d_row, "samp_off": rpc.samp_off + d_col})
    h_lo, h_hi = height_range or (rpc.height_off - rpc.height_scale, rpc.height_off + rpc.height_scale)
    lon, lat, h = np.meshgrid(
        np.linspace(rpc.long_off - rpc.long_scale, rpc.long_off + rpc.long_scale, 21),
        np.linspace(rpc.lat_off - rpc.lat_scale, rpc.lat_off + rpc.lat_scale, 21),
        np.linspace(h_lo, h_hi, 7), indexing="ij")
    r, c = rpc_project(rpc, lon, lat, h)
    dr, dc = correction.delta(r.ravel(), c.ravel())
    fitted, err = fit_rpc(lon, lat, h, r.ravel() + dr, c.ravel() + dc)
    log.info("affine bias folded into a refitted RPC: max fit error %.5f px", err)
    if err > 0.01:
        raise LsmapError(f"affine GCP correction could not be expressed as an RPC (fit error {err:.3f} px)")
    return fitted
