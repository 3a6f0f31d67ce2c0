"""``lsmap preprocess``: a GF-6 PMS L1A delivery -> an analysis-ready 2 m scene.

Three steps, each a function here and a Snakemake rule (rules/preprocess.smk):

1. ``orthorectify_delivery``: read the delivery, cut the DEM to the scene (cleaned of no-data
   values), check it covers the scene, optionally compensate the RPC bias with GCPs, and warp PAN
   (2 m) and MUX (8 m) DN onto aligned UTM grids. Acquisition metadata travels in the tags.
2. ``make_reflectance``: DN -> TOA reflectance (optional DOS) -> pan-sharpened 4-band 2 m scene,
   streamed in dask chunks, written as a COG: uint16 reflectance × 10000, nodata 0, band
   descriptions blue/green/red/nir, acquisition and processing metadata in the tags.
3. ``make_terrain``: the DEM on the scene grid, slope, aspect and hillshade (COGs, float32,
   nodata -9999; hillshade uint8, nodata 0).

``preprocess_delivery`` runs all three into one folder; it is what scheduled runs call.

Steps 2 and 3 work on dask-backed ``xarray.DataArray``s (``open_raster``, rioxarray metadata):
CRS, transform, nodata, band names and tags travel with the arrays through calibration,
pan-sharpening and DEM alignment, and ``write_cogs`` writes them with ``rio.to_raster``'s header
and rioxarray's store target. Step 1 stays on GDAL's RPC warper (rioxarray's reprojection loads
whole arrays). Each step shows progress: tqdm on a terminal, a log line every 30 s otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window

from lsmap import calibration as cal
from lsmap import dem as demlib
from lsmap import orthorectify as ortho
from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output
from lsmap.gf6 import MUX_BANDS, PAN_MUX_RATIO, read_delivery
from lsmap.pansharpen import pansharpen
from lsmap.progress import progress_bar
from lsmap.rasterread import READ_ERRORS, gdal_reason, open_checked, read_window

log = logging.getLogger(__name__)

REFLECTANCE_SCALE = 10000
REFLECTANCE_NODATA = 0
FLOAT_NODATA = demlib.DEM_NODATA
DEM_MARGIN_DEG = 0.01  # DEM cut around the footprint: room for terrain parallax and interpolation
GDAL_CACHE_MB = 256  # GDAL block cache per step: bounds memory whatever the scene size
DEM_STRIP_ROWS = 256  # rows of the WGS84 source DEM written at a time (memory: 256 x DEM width)
COVERAGE_GRID_PX = 1024  # DEM coverage is checked on at most 1024 x 1024 cells (40 m for a 20,000² PAN scene)


def settings_from(config: dict[str, Any] | None) -> dict[str, Any]:
    """The ``preprocess`` section of a (validated) config, else the project defaults."""
    if config and "preprocess" in config:
        return config["preprocess"]
    if config and "calibration" in config:  # the section itself
        return config
    return cal.default_settings()


# --------------------------------------------------------------------------------------------
# Raster I/O: rioxarray-opened dask DataArrays in, rio.to_raster out (GTiff stream -> COG copy)
# --------------------------------------------------------------------------------------------
def open_raster(path: Path, chunk_px: int, band_names: list[str] | None = None) -> "xarray.DataArray":
    """A raster as a lazy (band, y, x) DataArray in chunks of ``chunk_px`` (all bands in a chunk).

    Opened with ``rioxarray.open_rasterio``: coordinates, CRS, transform, nodata (``_FillValue``)
    and tags (``attrs``) go with the data. The chunks are read by ``_WindowReader``, kept
    hand-written because it measured less memory: rioxarray's lock-free reader keeps one open
    handle per thread, so every block it decodes stays in GDAL's block cache (up to its 256 MB cap),
    where closing the file after each window frees them (plain read of an 8,000² PAN: 440-469 MB
    against 321-340 MB; the reflectance step +138 MB; README, "Preprocessing"). A missing,
    non-raster or truncated file is one LsmapError naming it before anything is read; a block that
    does not decode is one naming the file and the block.
    """
    import dask.array as da
    import rioxarray

    open_checked(path).close()
    meta = rioxarray.open_rasterio(path, lock=False, cache=False)  # lazy: metadata and coordinates only
    reader = _WindowReader(Path(path))
    data = da.from_array(reader, chunks=(reader.shape[0], chunk_px, chunk_px), lock=False, asarray=True,
                         meta=np.empty((0, 0, 0), reader.dtype))
    out = meta.copy(data=data)
    meta.close()
    if band_names is not None:
        out = out.assign_coords(band=list(band_names))
    return out


class _WindowReader:
    """Array-like (band, row, col) over a raster for ``dask.array.from_array``: each read opens the
    file, reads one window of all bands asked for (a failed read names the file and the block) and
    closes it, which frees the decoded blocks from GDAL's cache."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with rasterio.open(self.path) as src:
            self.shape = (src.count, src.height, src.width)
            self.dtype = np.dtype(src.dtypes[0])
        self.ndim = 3

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        bands, rows, cols = key
        indexes = list(range(1, self.shape[0] + 1))[bands]
        window = Window.from_slices(rows, cols, height=self.shape[1], width=self.shape[2])
        with rasterio.open(self.path) as src:
            return read_window(src, window, indexes)


@dataclass
class CogSpec:
    """One output of ``write_cogs``: a georeferenced (band, y, x) DataArray and how to store it.

    ``dtype``/``nodata``: as on disk (float NaN becomes ``nodata`` through the ``_FillValue``
    encoding); band descriptions from ``attrs["long_name"]``, tags from ``tags``.
    """

    data: Any
    path: Path
    dtype: str
    nodata: float
    descriptions: list[str]
    tags: dict[str, str]
    overview_resampling: str = "AVERAGE"


def _encoded(spec: CogSpec):
    """The DataArray as rio.to_raster should write it: dtype, nodata encoding, descriptions, no extra attrs."""
    data = spec.data
    if np.dtype(data.dtype).kind == "f" and np.dtype(spec.dtype).kind == "f":
        data = data.astype(spec.dtype).rio.write_nodata(spec.nodata, encoded=True)  # NaN -> nodata on write
    else:
        data = data.rio.write_nodata(spec.nodata, encoded=False)
    data.attrs = {k: v for k, v in data.attrs.items() if k in ("_FillValue",)}
    data.attrs["long_name"] = list(spec.descriptions)  # a list: band descriptions only (a str is also a tag)
    return data


def block_edges(chunks: tuple[int, ...], chunks_per_block: int = 2) -> np.ndarray:
    """Offsets that group consecutive dask chunks of one axis into write blocks (first 0, last the size)."""
    edges = np.cumsum((0, *chunks))
    return np.unique(np.append(edges[::chunks_per_block], edges[-1]))


def write_cogs(specs: list[CogSpec], grid: ortho.Grid | None = None, *, threads: int = 2,
               sources: list[Path] = (), desc: str = "write") -> list[Path]:
    """Stream several dask DataArrays on one grid to COGs in a single dask pass (shared work computed once).

    ``rio.to_raster(compute=False)`` creates each tiled, deflate GTiff beside its output with the
    array's own CRS, transform, nodata, band descriptions and tags; the chunks then go into it
    through rioxarray's dask store target (``RasterioWriter``), one write block of 2 × 2 chunks at a
    time; GDAL's COG driver copies it (overviews built in a streaming way) to a temporary name that
    is renamed when complete. Lock strategy: one ``threading.Lock`` for all writes of a call, as a
    GDAL dataset must not be written from two threads at once (the writer reopens the file for each
    chunk; writing costs little next to computing a chunk). ``grid``, if given, is checked against
    each array's own georeferencing; a failed read of an input is one LsmapError naming ``sources``.
    """
    import dask
    from rasterio.shutil import copy as rio_copy
    from rioxarray.raster_writer import RasterioWriter
    from xarray.conventions import encode_cf_variable

    scratches = [s.path.with_name(f".{s.path.stem}.stream.tif") for s in specs]
    lock = threading.Lock()
    try:
        arrays = []
        for spec, scratch in zip(specs, scratches):
            if grid is not None:
                _check_on_grid(spec.data, grid, spec.path)
            encoded = _encoded(spec)
            # writes the header only: the delayed whole-array store it returns is not run (see below)
            encoded.rio.to_raster(scratch, driver="GTiff", dtype=spec.dtype, tags=spec.tags, tiled=True,
                                  blockxsize=512, blockysize=512, compress="deflate", zlevel=1, BIGTIFF="IF_SAFER",
                                  lock=lock, compute=False)
            arrays.append(encode_cf_variable(encoded.variable).data.astype(spec.dtype))  # as to_raster encodes
        # Hand-written on purpose: stored one block of 2 x 2 chunks at a time, memory is bounded by a
        # block, neither by the scene nor by its width (halo neighbours of a block are recomputed).
        # The single dask pass that rio.to_raster runs measured +20 % (reflectance) and +25 %
        # (terrain) peak RSS at 8,000² (README, "Preprocessing").
        row_edges = block_edges(arrays[0].chunks[1])
        col_edges = block_edges(arrays[0].chunks[2])
        writers = [RasterioWriter(scratch) for scratch in scratches]
        progress = progress_bar((len(row_edges) - 1) * (len(col_edges) - 1), desc, "block", logger=log)
        try:
            with dask.config.set(scheduler="threads", num_workers=max(1, threads)):
                for r0, r1 in zip(row_edges[:-1], row_edges[1:]):
                    for c0, c1 in zip(col_edges[:-1], col_edges[1:]):
                        rows, cols = slice(int(r0), int(r1)), slice(int(c0), int(c1))
                        dask.array.store([a[:, rows, cols] for a in arrays], writers, lock=lock,
                                         regions=[(slice(0, a.shape[0]), rows, cols) for a in arrays])
                        progress.update()
        except READ_ERRORS as exc:
            names = ", ".join(str(p) for p in sources) or "input"
            raise LsmapError(f"{names}: cannot read ({gdal_reason(exc)})") from exc
        finally:
            progress.close()
        for spec, scratch in zip(specs, scratches):
            with atomic_output(spec.path) as tmp:
                # floating-point predictor for float outputs: 17 % smaller and a little faster than 2
                predictor = "3" if np.dtype(spec.dtype).kind == "f" else "2"
                rio_copy(scratch, tmp, driver="COG", COMPRESS="DEFLATE", PREDICTOR=predictor, BLOCKSIZE=512,
                         OVERVIEWS="AUTO", OVERVIEW_RESAMPLING=spec.overview_resampling,
                         NUM_THREADS=str(max(1, threads)), BIGTIFF="IF_SAFER")
    finally:
        for scratch in scratches:
            scratch.unlink(missing_ok=True)
    return [s.path for s in specs]


def write_cog(data, grid: ortho.Grid | None, path: Path, *, dtype: str, nodata: float, descriptions: list[str],
              tags: dict[str, str], threads: int = 2, overview_resampling: str = "AVERAGE", **kwargs) -> Path:
    """One georeferenced dask DataArray -> a Cloud-Optimised GeoTIFF (``write_cogs``)."""
    return write_cogs([CogSpec(data, Path(path), dtype, nodata, descriptions, tags, overview_resampling)],
                      grid, threads=threads, **kwargs)[0]


def _check_on_grid(data, grid: ortho.Grid, path: Path) -> None:
    """The array's own grid (rio.crs, rio.transform(), shape) must be the product grid."""
    ok = (data.rio.crs == grid.crs and data.sizes["y"] == grid.height and data.sizes["x"] == grid.width
          and data.rio.transform().almost_equals(grid.transform))
    if not ok:
        raise ValueError(f"{path}: array grid ({data.rio.crs}, {data.rio.transform()}, {data.shape}) "
                         f"is not the product grid ({grid.crs}, {grid.transform}, {grid.height} x {grid.width})")


def grid_of(path: Path) -> ortho.Grid:
    with rasterio.open(path) as src:
        return ortho.Grid(src.crs, src.transform, src.width, src.height)


# --------------------------------------------------------------------------------------------
# Step 1: orthorectification (with optional GCP bias compensation)
# --------------------------------------------------------------------------------------------
def _write_source_dem(dem: Path, lon: np.ndarray, lat: np.ndarray, out: Path, extra_nodata) -> Path:
    """The DEM part under the footprint (+ margin), no-data cleaned, in WGS84 lon/lat, for GDAL's RPC_DEM.

    RPCs work in WGS84 lon/lat: a DEM in any other CRS makes GDAL reproject every output pixel a
    second time for its height look-up (measured: orthorectification 1.45x slower with a UTM DEM).
    Written in strips of rows, so the DEM never sits in memory whole.
    """
    wgs84 = rasterio.crs.CRS.from_epsg(4326)
    bounds = (lon.min() - DEM_MARGIN_DEG, lat.min() - DEM_MARGIN_DEG, lon.max() + DEM_MARGIN_DEG, lat.max() + DEM_MARGIN_DEG)
    transform, width, height = demlib.wgs84_grid(dem, bounds)
    with atomic_output(out) as tmp:
        with rasterio.open(tmp, "w", driver="GTiff", width=width, height=height, count=1, dtype="float32",
                           crs=wgs84, transform=transform, nodata=FLOAT_NODATA, tiled=True, compress="deflate") as dst:
            for row in range(0, height, DEM_STRIP_ROWS):
                rows = min(DEM_STRIP_ROWS, height - row)
                heights = demlib.dem_on_grid(dem, transform * Affine.translation(0, row), wgs84, (rows, width),
                                             extra_nodata, Resampling.cubic, reproject=demlib.warp_heights)
                dst.write(np.where(np.isfinite(heights), heights, FLOAT_NODATA).astype(np.float32), 1,
                          window=Window(0, row, width, rows))
    return out


def _footprint_mask(lon: np.ndarray, lat: np.ndarray, grid: ortho.Grid) -> np.ndarray:
    from rasterio.features import rasterize
    from rasterio.warp import transform as warp_transform
    from shapely.geometry import Polygon

    xs, ys = warp_transform("EPSG:4326", grid.crs, lon.tolist(), lat.tolist())
    return rasterize([Polygon(zip(xs, ys))], out_shape=(grid.height, grid.width), transform=grid.transform,
                     fill=0, default_value=1, dtype="uint8").astype(bool)


def check_dem_coverage(source_dem: Path, dem_label: Path, lon: np.ndarray, lat: np.ndarray,
                       grid: ortho.Grid, min_coverage: float) -> dict[str, float]:
    """Share of the image footprint where the DEM has heights; raise below minimum.

    Checked on the MUX grid coarsened to at most COVERAGE_GRID_PX cells a side, so that memory does
    not grow with the scene (the share is a statistic; no data still propagates pixel by pixel).
    """
    grid = grid.coarsened(max(1, math.ceil(max(grid.width, grid.height) / COVERAGE_GRID_PX)))
    on_grid = demlib.dem_on_grid(source_dem, grid.transform, grid.crs, (grid.height, grid.width),
                                 reproject=demlib.warp_heights)  # no xarray stack in step 1 (+115 MB)
    footprint = _footprint_mask(lon, lat, grid)
    fraction = demlib.coverage_fraction(on_grid, footprint)
    gap_km2 = (1 - fraction) * footprint.sum() * grid.res ** 2 / 1e6
    if fraction < min_coverage:
        raise LsmapError(f"{dem_label}: the DEM covers only {fraction:.1%} of the scene footprint "
                         f"({gap_km2:.2f} km² without heights; preprocess.dem_min_coverage is {min_coverage:.0%})")
    if fraction < 1:
        log.warning("%s: DEM gap of %.2f km² (%.2f%% of the footprint); those pixels are no data",
                    dem_label, gap_km2, 100 * (1 - fraction))
    return {"dem_coverage": fraction, "dem_gap_km2": gap_km2}


def _mux_gcps(gcps: ortho.GroundControlPoints) -> ortho.GroundControlPoints:
    """PAN pixel-centre coordinates -> MUX pixel-centre coordinates (4 × coarser, same corner)."""
    r = PAN_MUX_RATIO
    return ortho.GroundControlPoints(gcps.ids, (gcps.row + 0.5) / r - 0.5, (gcps.col + 0.5) / r - 0.5,
                                     gcps.lon, gcps.lat, gcps.h)


def orthorectify_delivery(delivery: Path, dem: Path, out_dir: Path, settings: dict[str, Any], *,
                          gcps: Path | None = None, threads: int = 2) -> dict[str, Path]:
    """Step 1: -> ``pan_dn.tif`` (2 m), ``mux_dn.tif`` (8 m), ``geometry.json`` (grid, DEM, GCP report).

    On failure the DEM cut for the warp (``dem_source.tif``) goes too: nothing of a failed run stays."""
    try:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            return _orthorectify_delivery(delivery, dem, out_dir, settings, gcps=gcps, threads=threads)
    except BaseException:
        (Path(out_dir) / "dem_source.tif").unlink(missing_ok=True)
        raise


def _orthorectify_delivery(delivery: Path, dem: Path, out_dir: Path, settings: dict[str, Any], *,
                           gcps: Path | None, threads: int) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".delivery-") as extract_dir:
        d = read_delivery(delivery, extract_to=extract_dir)
        offset = float(settings.get("dem_height_offset_m", 0.0))
        lon, lat = ortho.footprint_lonlat(d.pan_rpc, *_size(d.pan), ortho.rpc_options(None, d.pan_rpc.height_off))
        source_dem = _write_source_dem(Path(dem), lon, lat, out_dir / "dem_source.tif", settings.get("dem_extra_nodata", []))
        _warn_if_geoid(Path(dem), offset)
        options = ortho.rpc_options(source_dem, offset)
        crs = rasterio.crs.CRS.from_user_input(settings["target_crs"]) if settings.get("target_crs") else None
        mux_grid = ortho.scene_grid(d.pan_rpc, *_size(d.pan), {**options, "RPC_DEM_MISSING_VALUE": d.pan_rpc.height_off},
                                    crs=crs, res_m=float(settings.get("mux_res_m", 8.0)))
        pan_grid = mux_grid.scaled(PAN_MUX_RATIO)
        report: dict[str, Any] = {"crs": mux_grid.crs.to_string(), "pan_res_m": pan_grid.res, "mux_res_m": mux_grid.res,
                                  "dem": str(dem), "dem_height_offset_m": offset}
        report |= check_dem_coverage(source_dem, Path(dem), lon, lat, mux_grid, float(settings.get("dem_min_coverage", 0.99)))
        pan_rpc, mux_rpc = d.pan_rpc, d.mux_rpc
        if gcps is None:
            log.info("geometric fine correction skipped: no GCPs given")
            report["gcp_correction"] = "skipped: no GCPs"
        else:
            model = settings.get("gcp_model", "shift")
            points = ortho.read_gcps(gcps, settings.get("gcp_pixel_origin", "center"))
            pan_fix = ortho.estimate_bias(pan_rpc, points, model)
            mux_fix = ortho.estimate_bias(mux_rpc, _mux_gcps(points), model)
            pan_rpc, mux_rpc = ortho.corrected_rpc(pan_rpc, pan_fix), ortho.corrected_rpc(mux_rpc, mux_fix)
            report["gcp_correction"] = pan_fix.report() | {"gcps": str(gcps)}
            log.info("GCP %s correction from %d points: RMSE %.2f px before, %.2f px after, %.2f px leave-one-out",
                     model, len(points), pan_fix.raw_rmse_px, pan_fix.rmse_px, pan_fix.loo_rmse_px)
        tags = d.tags() | {"DEM": Path(dem).name, "DEM_HEIGHT_OFFSET_M": f"{offset:g}",
                           "GCP_CORRECTION": report["gcp_correction"] if isinstance(report["gcp_correction"], str)
                           else f"{model}, LOO RMSE {report['gcp_correction']['loo_rmse_m']:.2f} m"}
        resampling = Resampling[settings.get("resampling", "cubic")]
        # GDAL's warper reports no progress through rasterio: one log line per warp, start and end
        log.info("orthorectify PAN onto %d x %d px, then MUX onto %d x %d px", pan_grid.width, pan_grid.height,
                 mux_grid.width, mux_grid.height)
        pan_out = ortho.orthorectify(d.pan, pan_rpc, pan_grid, out_dir / "pan_dn.tif", options=options,
                                     resampling=resampling, threads=threads, tags=tags)
        log.info("orthorectify PAN done after %.0f s", time.perf_counter() - started)
        mux_out = ortho.orthorectify(d.mux, mux_rpc, mux_grid, out_dir / "mux_dn.tif", options=options,
                                     resampling=resampling, threads=threads, tags=tags)
        log.info("orthorectify MUX done after %.0f s", time.perf_counter() - started)
    report["seconds"] = round(time.perf_counter() - started, 2)
    geometry = out_dir / "geometry.json"
    with atomic_output(geometry) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str))
    return {"pan_dn": pan_out, "mux_dn": mux_out, "geometry": geometry, "source_dem": source_dem}


def _size(image: Path) -> tuple[int, int]:
    with rasterio.open(image) as src:
        return src.width, src.height


def _warn_if_geoid(dem: Path, offset: float) -> None:
    with rasterio.open(dem) as src:
        wkt = src.crs.to_wkt() if src.crs else ""
    if offset == 0.0 and any(word in wkt.upper() for word in ("EGM", "GEOID", "VERT_CS", "VERTCRS")):
        log.warning("%s: heights are on a geoid (%s) but preprocess.dem_height_offset_m is 0; RPCs expect "
                    "ellipsoid heights (set the geoid undulation N)", dem, "vertical CRS in WKT")


# --------------------------------------------------------------------------------------------
# Step 2: calibration + pan-sharpening -> reflectance COG
# --------------------------------------------------------------------------------------------
def _acquisition(tags: dict[str, str], path: Path) -> tuple[str, str, Any, float]:
    from datetime import datetime

    try:
        return (tags["SATELLITE"], tags["SENSOR"], datetime.fromisoformat(tags["ACQUISITION_TIME"]),
                float(tags["SUN_ZENITH_DEG"]))
    except (KeyError, ValueError) as exc:
        raise LsmapError(f"{path}: acquisition tags missing (made by lsmap preprocess?): {exc}") from exc


def make_reflectance(pan_dn: Path, mux_dn: Path, out_path: Path, settings: dict[str, Any], *,
                     threads: int = 2) -> Path:
    """Step 2: orthorectified DN -> 4-band uint16 reflectance × 10000 COG on the PAN grid."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        return _make_reflectance(pan_dn, mux_dn, out_path, settings, threads=threads)


def _make_reflectance(pan_dn: Path, mux_dn: Path, out_path: Path, settings: dict[str, Any], *, threads: int) -> Path:
    with rasterio.open(pan_dn) as src:
        tags = src.tags()
    satellite, sensor, acquired, sun_zenith = _acquisition(tags, Path(pan_dn))
    calibrator = cal.Calibrator(settings, satellite, sensor, acquired, sun_zenith)
    chunk = max(PAN_MUX_RATIO * 64, int(settings.get("chunk_px", 2048)) // PAN_MUX_RATIO * PAN_MUX_RATIO)
    if calibrator.dos:
        with rasterio.open(mux_dn) as src:  # dark objects from a decimated MUX read: cheap, enough pixels
            step = max(1, int(math.sqrt(src.width * src.height / 4e6)))
            sample = src.read(out_shape=(src.count, src.height // step, src.width // step), resampling=Resampling.nearest)
        for band, values in zip(MUX_BANDS, sample):
            calibrator.estimate_haze(values, band)
    pan = calibrator.reflectance_dataarray(open_raster(Path(pan_dn), chunk, ["pan"]))
    ms = calibrator.reflectance_dataarray(open_raster(Path(mux_dn), chunk // PAN_MUX_RATIO, list(MUX_BANDS)))
    method = settings.get("pansharpen", "hpf_regression")
    sharpened = pansharpen(pan, ms, PAN_MUX_RATIO, method)
    gains = sharpened.attrs["pansharpen_gains"]
    product_tags = tags | calibrator.describe() | {
        "REFLECTANCE_SCALE": str(REFLECTANCE_SCALE),
        "REFLECTANCE": "surface (DOS1)" if calibrator.dos else "top of atmosphere",
        "PANSHARPEN": f"{method}, gains " + ",".join(f"{g:.4f}" for g in gains),
        "BANDS": ",".join(MUX_BANDS),
    }
    return write_cog(reflectance_uint16(sharpened), grid_of(Path(pan_dn)), Path(out_path), dtype="uint16",
                     nodata=REFLECTANCE_NODATA, descriptions=list(MUX_BANDS), tags=product_tags, threads=threads,
                     sources=[Path(pan_dn), Path(mux_dn)], desc="reflectance")


def reflectance_uint16(reflectance):
    """Reflectance (NaN no data) -> uint16 × REFLECTANCE_SCALE, 1..65535, 0 for no data (lazy, grid kept).

    Explicit rather than CF ``scale_factor`` encoding, which would neither keep 0 free nor clip.
    """
    def to_uint16(block: np.ndarray) -> np.ndarray:
        scaled = np.clip(np.rint(block * REFLECTANCE_SCALE), 1, 65535)  # 0 is reserved for no data
        return np.where(np.isfinite(block), scaled, REFLECTANCE_NODATA).astype(np.uint16)

    return reflectance.copy(data=reflectance.data.map_blocks(to_uint16, dtype=np.uint16))


# --------------------------------------------------------------------------------------------
# Step 3: DEM, slope, aspect, hillshade on the scene grid
# --------------------------------------------------------------------------------------------
def make_terrain(dem: Path, scene: Path, out_dir: Path, settings: dict[str, Any], *,
                 threads: int = 2) -> dict[str, Path]:
    """Step 3: ``dem.tif``, ``slope.tif``, ``aspect.tif``, ``hillshade.tif`` on the grid of ``scene``."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        return _make_terrain(dem, scene, out_dir, settings, threads=threads)


def _make_terrain(dem: Path, scene: Path, out_dir: Path, settings: dict[str, Any], *, threads: int) -> dict[str, Path]:
    import rioxarray

    grid = grid_of(Path(scene))
    demlib.check_dem_overlaps(dem, grid.crs, grid.bounds)
    offset = float(settings.get("dem_height_offset_m", 0.0))
    chunk = int(settings.get("chunk_px", 2048))
    resampling = Resampling[settings.get("dem_resampling", "cubic")]
    like = rioxarray.open_rasterio(scene, chunks={"band": 1, "y": chunk, "x": chunk}, lock=False)  # its grid only
    on_grid = demlib.dem_like(dem, like, chunk, settings.get("dem_extra_nodata", []), resampling)
    derived = demlib.terrain(on_grid)
    tags = {"DEM_SOURCE": Path(dem).name, "DEM_HEIGHTS": "as in the source DEM (no geoid offset applied)",
            "DEM_RESAMPLING": resampling.name, "SLOPE_METHOD": "Horn 1981, degrees",
            "ASPECT": "degrees clockwise from grid north, downslope; no data where flat",
            "GEOID_OFFSET_USED_FOR_ORTHO_M": f"{offset:g}"}
    out_dir = Path(out_dir)
    layers = {"dem": on_grid, "slope": derived["slope"], "aspect": derived["aspect"]}
    specs = [CogSpec(data.expand_dims("band"), out_dir / f"{name}.tif", "float32", FLOAT_NODATA,
                     [data.attrs["long_name"]], tags, "NEAREST" if name == "aspect" else "AVERAGE")
             for name, data in layers.items()]
    shade = derived["hillshade"]
    shade_u8 = shade.copy(data=da_where_u8(shade.data)).expand_dims("band")
    specs.append(CogSpec(shade_u8, out_dir / "hillshade.tif", "uint8", 0, ["hillshade"],
                         tags | {"HILLSHADE": "azimuth 315, altitude 45"}))
    # one pass: DEM resampling and Horn computed once for the four outputs
    paths = write_cogs(specs, grid, threads=threads, sources=[Path(dem)], desc="terrain")
    return dict(zip(("dem", "slope", "aspect", "hillshade"), paths))


def da_where_u8(shade):
    """Hillshade 0–255 float (NaN no data) -> uint8 1..255, 0 for no data (dask)."""
    import dask.array as da

    return da.where(da.isfinite(shade), da.clip(shade, 1, 255), 0).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# All steps
# --------------------------------------------------------------------------------------------
def preprocess_delivery(delivery: Path, dem: Path, out_dir: Path, *, config: dict | None = None,
                        gcps: Path | None = None, threads: int = 2, keep_intermediate: bool = False) -> dict[str, Path]:
    """Delivery (.tar.gz or folder) + DEM -> analysis-ready products in ``out_dir``.

    Returns {"reflectance", "dem", "slope", "aspect", "hillshade", "geometry"} paths (plus the
    intermediate "pan_dn", "mux_dn" when ``keep_intermediate``). Bad input raises ``LsmapError``
    naming the file; outputs are written atomically.
    """
    settings = settings_from(config)
    out_dir = Path(out_dir)
    if not Path(delivery).exists():
        raise LsmapError(f"{delivery}: delivery not found")
    open_checked(dem).close()  # a missing or broken DEM fails before the delivery is decoded
    if out_dir.exists() and not out_dir.is_dir():
        raise LsmapError(f"{out_dir}: --out exists and is not a directory")
    timings: dict[str, float] = {}
    with _timed(timings, "orthorectify"):
        geo = orthorectify_delivery(Path(delivery), Path(dem), out_dir, settings, gcps=gcps, threads=threads)
    with _timed(timings, "reflectance"):
        reflectance = make_reflectance(geo["pan_dn"], geo["mux_dn"], out_dir / "reflectance.tif", settings, threads=threads)
    with _timed(timings, "terrain"):
        terrain = make_terrain(Path(dem), reflectance, out_dir, settings, threads=threads)
    log.info("preprocess %s: %s", Path(delivery).name, ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    result = {"reflectance": reflectance, **terrain, "geometry": geo["geometry"]}
    if keep_intermediate:
        result |= {"pan_dn": geo["pan_dn"], "mux_dn": geo["mux_dn"], "source_dem": geo["source_dem"]}
    else:
        for key in ("pan_dn", "mux_dn", "source_dem"):
            Path(geo[key]).unlink(missing_ok=True)
    return result


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# CLI verb
# --------------------------------------------------------------------------------------------
def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("delivery", type=Path, help="GF-6 PMS L1A delivery: .tar.gz or folder")
    parser.add_argument("--dem", type=Path, required=True, help="DEM covering the scene (any CRS)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the analysis-ready products")
    parser.add_argument("--gcps", type=Path, help="GeoJSON of GCPs (properties.ji = [col, row]; lon/lat/ellipsoid height)")
    parser.add_argument("--config", type=Path, default=Path("config.yaml"), help="workflow configuration (default: config.yaml)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-intermediate", action="store_true", help="keep the orthorectified DN rasters")


def run(args: argparse.Namespace) -> int:
    from lsmap.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config) if args.config.exists() else None
    outputs = preprocess_delivery(args.delivery, args.dem, args.out, config=config, gcps=args.gcps,
                                  threads=args.threads, keep_intermediate=args.keep_intermediate)
    for name, path in outputs.items():
        print(f"{name}\t{path}")
    return 0
