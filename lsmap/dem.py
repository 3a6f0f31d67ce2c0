"""DEM alignment and terrain derivatives: any DEM onto a scene grid; slope, aspect, hillshade.

Conventions
-----------
* Heights float32 metres, NaN in memory for no data (nodata -9999 on disk). Values listed in
  ``extra_nodata`` (e.g. the zeros outside the area of interest of some DEMs, which are not
  flagged as nodata) are turned into no data when the DEM is read.
* Slope: degrees from horizontal, Horn (1981) 3 × 3 finite differences. Aspect: degrees clockwise
  from grid north of the downslope direction, no data where the slope is 0 (undefined). Any no
  data value in a 3 × 3 window makes the centre no data (propagation, as gdaldem without
  ``-compute_edges``), so the outermost pixels of a raster are no data.
* Pixel sizes are true ground distances in metres: for a projected CRS the pixel size times the
  CRS unit (the map scale factor, ≤ 0.04 % in UTM, is ignored); for a geographic CRS the length on
  the WGS84 ellipsoid of one pixel east–west and north–south, per row (``ground_pixel_size_m``).
* Hillshade: the standard illumination model (Burrough & McDonnell 1998; gdaldem), sun azimuth 315°
  and altitude 45° by default, 0–255.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from lsmap.errors import LsmapError

log = logging.getLogger(__name__)

DEM_NODATA = -9999.0


def read_dem_window(path: str | Path, crs: CRS, bounds: tuple[float, float, float, float],
                    extra_nodata: Sequence[float] = (), margin_px: int = 4) -> tuple[np.ndarray, Affine, CRS]:
    """The part of a DEM that covers ``bounds`` (given in ``crs``), float32 with NaN for no data.

    Returns (array (H, W) float32 metres, its transform, the DEM's CRS). Raises if the DEM does not
    overlap the bounds at all.
    """
    path = Path(path)
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioError as exc:
        raise LsmapError(f"{path}: unreadable DEM ({str(exc).splitlines()[0]})") from exc
    with src:
        if src.crs is None:
            raise LsmapError(f"{path}: the DEM has no CRS")
        left, bottom, right, top = transform_bounds(crs, src.crs, *bounds, densify_pts=21)
        window = from_bounds(left, bottom, right, top, src.transform)
        window = Window(math.floor(window.col_off) - margin_px, math.floor(window.row_off) - margin_px,
                        math.ceil(window.width) + 2 * margin_px + 1, math.ceil(window.height) + 2 * margin_px + 1)
        window = window.intersection(Window(0, 0, src.width, src.height)) if _overlaps(window, src) else None
        if window is None:
            raise LsmapError(f"{path}: the DEM does not cover the scene (no overlap with {bounds} in {crs})")
        try:
            data = src.read(1, window=window, out_dtype="float32", masked=True)
        except rasterio.errors.RasterioError as exc:
            raise LsmapError(f"{path}: unreadable DEM ({str(exc).splitlines()[0]})") from exc
        heights = data.filled(np.nan)
        for value in extra_nodata:
            heights[heights == np.float32(value)] = np.nan
        return heights, src.window_transform(window), src.crs


def _overlaps(window: Window, src) -> bool:
    return (window.col_off < src.width and window.row_off < src.height
            and window.col_off + window.width > 0 and window.row_off + window.height > 0)


def reproject_to_grid(heights: np.ndarray, transform: Affine, crs: CRS, dst_transform: Affine, dst_crs: CRS,
                      shape: tuple[int, int], resampling: Resampling = Resampling.bilinear) -> np.ndarray:
    """Resample an in-memory DEM (NaN = no data) onto a grid; returns (H, W) float32, NaN outside."""
    out = np.full(shape, np.nan, dtype=np.float32)
    reproject(heights, out, src_transform=transform, src_crs=crs, src_nodata=np.nan,
              dst_transform=dst_transform, dst_crs=dst_crs, dst_nodata=np.nan, resampling=resampling,
              init_dest_nodata=True)
    return out


def reproject_to_grid_dask(heights: np.ndarray, transform: Affine, crs: CRS, dst_transform: Affine,
                           dst_crs: CRS, shape: tuple[int, int], chunk_px: int = 2048,
                           resampling: Resampling = Resampling.bilinear):
    """Lazy (dask) version of ``reproject_to_grid``: each output chunk is warped on its own.

    The source DEM window stays in memory (it is small: the scene at DEM resolution); the output
    never does.
    """
    import dask.array as da

    def block(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        window_transform = dst_transform * Affine.translation(c0, r0)
        return reproject_to_grid(heights, transform, crs, window_transform, dst_crs, (r1 - r0, c1 - c0), resampling)

    return da.map_blocks(block, chunks=da.core.normalize_chunks(chunk_px, shape), dtype=np.float32,
                         meta=np.empty((0, 0), np.float32))


def ground_pixel_size_m(transform: Affine, crs: CRS, height: int) -> tuple[np.ndarray, np.ndarray]:
    """True ground size (dx east–west, dy north–south) in metres of each row's pixels, (H,) each.

    Geographic CRS: distances on the WGS84 ellipsoid at each row's latitude (pyproj.Geod).
    """
    if crs is None:
        raise LsmapError("a DEM needs a CRS to compute slope in true ground units")
    if crs.is_geographic:
        from pyproj import Geod

        geod = Geod(ellps="WGS84")
        lat = transform.f + (np.arange(height) + 0.5) * transform.e
        lon0 = transform.c
        _, _, dx = geod.inv(np.full(height, lon0), lat, np.full(height, lon0 + abs(transform.a)), lat)
        _, _, dy = geod.inv(np.full(height, lon0), lat - abs(transform.e) / 2,
                            np.full(height, lon0), lat + abs(transform.e) / 2)
        return np.asarray(dx, float), np.asarray(dy, float)
    unit = crs.linear_units_factor[1]
    return np.full(height, abs(transform.a) * unit), np.full(height, abs(transform.e) * unit)


def slope_aspect_deg(heights: np.ndarray, dx: np.ndarray | float, dy: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Horn slope and aspect (degrees) of a (H, W) DEM with NaN as no data.

    ``dx``, ``dy``: ground pixel sizes in metres, scalars or per row (H,). Returns two (H, W)
    float32 arrays; the border and any pixel whose 3 × 3 window touches no data are NaN; aspect is
    NaN where the slope is 0.
    """
    z = np.asarray(heights, np.float64)
    h, w = z.shape
    slope = np.full((h, w), np.nan, np.float32)
    aspect = np.full((h, w), np.nan, np.float32)
    if h < 3 or w < 3:
        return slope, aspect
    dx = np.broadcast_to(np.asarray(dx, float), (h,))[1:-1, None]
    dy = np.broadcast_to(np.asarray(dy, float), (h,))[1:-1, None]
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, hh, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    dz_east = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * dx)
    dz_north = ((a + 2 * b + c) - (g + 2 * hh + i)) / (8 * dy)
    centre_ok = np.isfinite(z[1:-1, 1:-1])
    s = np.degrees(np.arctan(np.hypot(dz_east, dz_north)))
    asp = np.degrees(np.arctan2(-dz_east, -dz_north)) % 360.0  # downslope direction, clockwise from north
    asp = np.where(s > 0, asp, np.nan)
    slope[1:-1, 1:-1] = np.where(centre_ok, s, np.nan)
    aspect[1:-1, 1:-1] = np.where(centre_ok, asp, np.nan)
    return slope, aspect


def hillshade(slope_deg: np.ndarray, aspect_deg: np.ndarray, azimuth_deg: float = 315.0,
              altitude_deg: float = 45.0) -> np.ndarray:
    """Hillshade 0–255 (float32, NaN where slope is no data; flat ground gets sin(altitude))."""
    zenith = math.radians(90.0 - altitude_deg)
    s = np.radians(slope_deg)
    a = np.radians(np.where(np.isnan(aspect_deg) & np.isfinite(slope_deg), 0.0, aspect_deg))
    shade = math.cos(zenith) * np.cos(s) + math.sin(zenith) * np.sin(s) * np.cos(math.radians(azimuth_deg) - a)
    return (255.0 * np.clip(shade, 0.0, 1.0)).astype(np.float32)


def terrain_dask(dem, transform: Affine, crs: CRS):
    """Lazy slope, aspect, hillshade of a dask DEM (H, W) on a grid, each float32 with NaN no data.

    Chunks overlap by one pixel (Horn's window); the raster border is NaN. The per-row ground pixel
    sizes travel as arrays beside the heights so every chunk knows its rows' sizes.
    """
    import dask.array as da

    dx, dy = ground_pixel_size_m(transform, crs, dem.shape[0])
    # zero-copy (H, W) views of the per-row sizes, chunked like the DEM; name=False because
    # hashing a broadcast view for dask's task name would copy it at full scene size
    sizes = [da.from_array(np.broadcast_to(v.astype(np.float32)[:, None], dem.shape), chunks=dem.chunks, name=False)
             for v in (dx, dy)]

    def block(z, dx_block, dy_block):
        s, a = slope_aspect_deg(z, dx_block[:, 1], dy_block[:, 1])  # column 0 may be padding
        return np.stack([s, a, hillshade(s, a)])[:, 1:-1, 1:-1]

    padded = [da.overlap.overlap(a, depth=1, boundary=np.nan) for a in (dem, *sizes)]
    stacked = da.map_blocks(block, *padded, new_axis=0, chunks=((3,), *dem.chunks), dtype=np.float32,
                            meta=np.empty((0, 0, 0), np.float32))
    return stacked[0], stacked[1], stacked[2]


def coverage_fraction(heights_on_grid: np.ndarray, footprint: np.ndarray) -> float:
    """Share (0–1) of the footprint pixels where the DEM has a height."""
    inside = int(footprint.sum())
    return float(np.isfinite(heights_on_grid[footprint]).sum() / inside) if inside else 0.0
