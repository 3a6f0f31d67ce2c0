"""Areas and distributions, always in metres on a local UTM (or equal-area) CRS, never degrees.

Area CRS rule (:func:`area_crs_for`): a scene already on a UTM zone or an equal-area projection
is measured on its own CRS (no resampling error); any other CRS (EPSG:4326 is common) is measured
on the UTM zone of the data's centre. A region is measured on the UTM zone of its centre.

Observed area = the scene's valid (not nodata) pixels, each with its true area on the area CRS
(pixel areas are evaluated on a coarse grid, so geographic scenes get the right area per
latitude); unobserved = nodata pixels inside the scene's raster extent.

Overlap rule for a region (:mod:`lsmap.region`, :func:`merge_region_polygons`): landslide polygons from different scenes
that overlap (share area, not just an outline) are one landslide and are dissolved into one polygon (counted once); its
``scene_ids`` lists every scene that saw it, ``acquired`` is the latest acquisition, ``prob_max``
is the maximum and the other means are area-weighted. The region's observed area is the union of
the scenes' valid-data footprints.
"""

from __future__ import annotations

import math
import os

import numpy as np
import rasterio
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info

from lsmap.errors import LsmapError

SUMMARY_KEYS = ["landslide_count", "landslide_area_km2", "observed_area_km2", "unobserved_area_km2",
                "areal_density_pct", "count_density_per_km2"]
EQUAL_AREA_METHODS = ("albers", "equal area", "equal-area", "mollweide", "sinusoidal", "equal earth", "cylindrical equal")


def is_area_preserving(crs: CRS) -> bool:
    """UTM zones (scale error < 0.1 %) and true equal-area projections, in metres."""
    if not crs.is_projected or crs.axis_info[0].unit_name not in ("metre", "meter"):
        return False
    if crs.utm_zone is not None:
        return True
    method = (crs.coordinate_operation.method_name if crs.coordinate_operation else "").lower()
    return any(word in method for word in EQUAL_AREA_METHODS)


def utm_crs_at(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM zone containing (lon, lat)."""
    infos = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat))
    if not infos:
        raise LsmapError(f"no UTM zone found for lon {lon:.3f}, lat {lat:.3f}")
    return CRS.from_epsg(infos[0].code)


def area_crs_for(crs, bounds=None, source: str | os.PathLike = "") -> CRS:
    """The CRS areas are measured on for data in ``crs`` covering ``bounds`` (minx, miny, maxx, maxy)."""
    if crs is None:
        raise LsmapError(f"{source}: no CRS, cannot measure areas")
    crs = CRS.from_user_input(crs)
    if is_area_preserving(crs):
        return crs
    if bounds is None or not np.all(np.isfinite(bounds)):
        raise LsmapError(f"{source}: CRS {crs.name} is not area-preserving and the data has no extent")
    cx, cy = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(cx, cy)
    return utm_crs_at(lon, lat)


def raster_area_crs(path: str | os.PathLike) -> CRS:
    with rasterio.open(path) as src:
        return area_crs_for(src.crs, src.bounds, path)


def pixel_area_grid(crs, transform, height: int, width: int, area_crs: CRS, step: int = 256) -> np.ndarray:
    """(ceil(H/step), ceil(W/step)) float64: the area in m2 on ``area_crs`` of one pixel in each
    coarse cell, from the shoelace area of the cell's transformed corners divided by its pixels."""
    rows = np.arange(0, height, step)
    cols = np.arange(0, width, step)
    row_edges = np.append(rows, height)
    col_edges = np.append(cols, width)
    cc, rr = np.meshgrid(col_edges, row_edges)
    xs, ys = transform * (cc.astype(float), rr.astype(float))
    if CRS.from_user_input(crs) != area_crs:
        xs, ys = Transformer.from_crs(crs, area_crs, always_xy=True).transform(xs, ys)
    # corners of each cell: (i, j), (i, j+1), (i+1, j+1), (i+1, j)
    x0, x1, x2, x3 = xs[:-1, :-1], xs[:-1, 1:], xs[1:, 1:], xs[1:, :-1]
    y0, y1, y2, y3 = ys[:-1, :-1], ys[:-1, 1:], ys[1:, 1:], ys[1:, :-1]
    cell_area = 0.5 * np.abs((x0 * y1 - x1 * y0) + (x1 * y2 - x2 * y1) + (x2 * y3 - x3 * y2) + (x3 * y0 - x0 * y3))
    pixels = np.outer(np.diff(row_edges), np.diff(col_edges))
    return cell_area / pixels


def observed_area_m2(mask_path: str | os.PathLike, area_crs: CRS, nodata: int = 255, step: int = 256,
                     block_px: int = 4096, progress: bool = False, desc: str = "observed area") -> tuple[float, float]:
    """(observed, unobserved) area in m2 of a mask raster (valid = not ``nodata``), read by blocks."""
    from lsmap.progress import progress_bar

    with rasterio.open(mask_path) as src:
        per_pixel = pixel_area_grid(src.crs, src.transform, src.height, src.width, area_crs, step)
        block_px = max(step, block_px // step * step)
        valid_counts = np.zeros_like(per_pixel)
        rows = range(0, src.height, block_px)
        cols = range(0, src.width, block_px)
        with progress_bar(len(rows) * len(cols), desc, "block", progress) as bar:
            for r in rows:
                for c in cols:
                    window = rasterio.windows.Window(c, r, min(block_px, src.width - c), min(block_px, src.height - r))
                    counts = _cell_sums(src.read(1, window=window) != nodata, step)
                    rs, cs = r // step, c // step
                    valid_counts[rs:rs + counts.shape[0], cs:cs + counts.shape[1]] = counts
                    bar.update()
        # every cell's pixel count: full step x step cells but the last row and column of cells
        cell_rows = np.minimum(step, src.height - np.arange(per_pixel.shape[0]) * step)
        cell_cols = np.minimum(step, src.width - np.arange(per_pixel.shape[1]) * step)
        all_counts = np.outer(cell_rows, cell_cols).astype(valid_counts.dtype)
    observed = float((valid_counts * per_pixel).sum())
    return observed, float(((all_counts - valid_counts) * per_pixel).sum())


def _cell_sums(values: np.ndarray, step: int) -> np.ndarray:
    """Sum an (h, w) bool or integer array over step x step cells (the last cells may be partial),
    (ceil(h / step), ceil(w / step)) int64; padded only where partial, in the input's own dtype."""
    h, w = values.shape
    full_h, full_w = math.ceil(h / step) * step, math.ceil(w / step) * step
    if (full_h, full_w) != (h, w):
        padded = np.zeros((full_h, full_w), values.dtype)
        padded[:h, :w] = values
        values = padded
    return values.reshape(full_h // step, step, full_w // step, step).sum(axis=(1, 3), dtype=np.int64)


def valid_footprint(mask_path: str | os.PathLike, area_crs: CRS, nodata: int = 255, max_px: int = 2048):
    """The valid-data footprint of a mask as a (multi)polygon on ``area_crs``, from a decimated read
    (at most ``max_px`` pixels a side, served from overviews; edges accurate to that cell size)."""
    import geopandas as gpd
    import shapely
    from rasterio.features import shapes
    from shapely.geometry import shape

    with rasterio.open(mask_path) as src:
        factor = max(1, math.ceil(max(src.height, src.width) / max_px))
        out_shape = (math.ceil(src.height / factor), math.ceil(src.width / factor))
        valid = (src.read(1, out_shape=out_shape, resampling=rasterio.enums.Resampling.nearest) != nodata).astype(np.uint8)
        transform = src.transform * rasterio.Affine.scale(src.width / out_shape[1], src.height / out_shape[0])
        crs = src.crs
    parts = [shape(g) for g, v in shapes(valid, mask=valid.astype(bool), transform=transform) if v == 1]
    footprint = shapely.union_all(parts) if parts else shapely.Polygon()
    return gpd.GeoSeries([footprint], crs=crs).to_crs(area_crs).iloc[0]


def summarize(landslide_areas_m2, observed_m2: float, unobserved_m2: float) -> dict[str, float]:
    """The summary keys of stats.json from polygon areas (m2) and observed/unobserved areas (m2)."""
    areas = np.asarray(landslide_areas_m2, dtype=float)
    observed_km2 = observed_m2 / 1e6
    landslide_km2 = float(areas.sum()) / 1e6
    return {
        "landslide_count": int(areas.size),
        "landslide_area_km2": landslide_km2,
        "observed_area_km2": observed_km2,
        "unobserved_area_km2": unobserved_m2 / 1e6,
        "areal_density_pct": 100.0 * landslide_km2 / observed_km2 if observed_km2 > 0 else 0.0,
        "count_density_per_km2": areas.size / observed_km2 if observed_km2 > 0 else 0.0,
    }


def frequency_area(areas_m2, bins_per_decade: int = 5) -> tuple[list[float], list[int]]:
    """Log-binned frequency-area histogram: bin edges (m2, ``bins_per_decade`` per decade, spanning
    whole decades around the data) and the count of landslides in each bin."""
    areas = np.asarray(areas_m2, dtype=float)
    areas = areas[areas > 0]
    if areas.size == 0:
        return [], []
    low = math.floor(math.log10(areas.min()))
    high = max(low + 1, math.ceil(math.log10(areas.max() * (1 + 1e-12))))
    edges = np.logspace(low, high, (high - low) * bins_per_decade + 1)
    counts, _ = np.histogram(areas, bins=edges)
    return [float(e) for e in edges], [int(c) for c in counts]


def plot_frequency_area(bin_edges_m2, counts, path: str | os.PathLike, title: str) -> None:
    """Frequency density (count / bin width, per m2) against area on log-log axes, written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lsmap.fileio import atomic_output

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    if counts and sum(counts):
        edges = np.asarray(bin_edges_m2)
        centres = np.sqrt(edges[:-1] * edges[1:])
        density = np.asarray(counts) / np.diff(edges)
        keep = density > 0
        ax.loglog(centres[keep], density[keep], "o-", color="#b2182b")
        ax.set_xlabel("landslide area A (m²)")
        ax.set_ylabel("frequency density dN/dA (m⁻²)")
    else:
        ax.text(0.5, 0.5, "no landslides mapped", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def merge_region_polygons(frames, area_crs: CRS):
    """One GeoDataFrame on ``area_crs`` from the scenes' landslides, overlaps dissolved (see module
    doc), every polygon in memory: the rule of :mod:`lsmap.region`, which streams it for a region."""
    import geopandas as gpd
    import pandas as pd

    from lsmap.region import DEM_COLUMNS, dissolve_zone_polygons, empty_region_frame, region_frame

    frames = [f.to_crs(area_crs) for f in frames if len(f)]
    if not frames:
        return empty_region_frame(area_crs)
    polygons = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=area_crs)
    polygons["_index"] = np.arange(len(polygons))
    group_of, dissolved = dissolve_zone_polygons(polygons, len(polygons), area_crs)
    dem_columns = [c for c in DEM_COLUMNS if c in polygons and polygons[c].notna().any()]
    return region_frame(polygons, group_of, dissolved, area_crs, dem_columns, first_id=1)
