"""The polygonisation of lsmap 0.x before issue 11 (whole-scene, every component vectorised), kept
verbatim as the oracle that the streaming lsmap.vectorize must equal. Not used by lsmap itself.

Original module docstring: from the binary mask to landslide polygons, block by block and in parallel.

Each block of the mask is labelled (4-connectivity, as GDAL polygonises) and polygonised in
*pixel coordinates* (integers, exact), with per-piece sums of probability, elevation and slope.
Pieces that touch an internal block border are joined with the piece across the border when two
landslide pixels face each other there (union-find on the border pixel rows), and their polygons
are unioned; because the coordinates are integers, the shared edges cancel exactly and no
straight cut along a block line survives. Only then is the pixel-to-map transform applied.

Per polygon: id, scene_id, acquired, area_m2, perimeter_m (on the area CRS, see
:func:`lsmap.stats.area_crs_for`), prob_mean, prob_max (over the landslide pixels), centroid_lon,
centroid_lat, pixel_count, and with a DEM slope_mean_deg and elevation_mean_m.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.features import shapes
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import Polygon, shape

from lsmap.errors import LsmapError

FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)
COLUMNS = ["id", "scene_id", "acquired", "area_m2", "perimeter_m", "prob_mean", "prob_max",
           "centroid_lon", "centroid_lat", "pixel_count"]
DEM_COLUMNS = ["slope_mean_deg", "elevation_mean_m"]


@dataclass
class BlockPieces:
    """The polygons of one block in pixel coordinates and their per-piece sums (index = label - 1)."""

    row0: int
    col0: int
    geometries: list
    labels: np.ndarray  # (n,) int, label of each geometry
    pixel_count: np.ndarray
    prob_sum: np.ndarray
    prob_max: np.ndarray
    elevation_sum: np.ndarray | None
    slope_sum: np.ndarray | None
    edges: dict = field(default_factory=dict)  # "top"/"bottom"/"left"/"right" -> label rows (1-D int)


def block_windows(height: int, width: int, block_px: int) -> list[Window]:
    return [Window(c, r, min(block_px, width - c), min(block_px, height - r))
            for r in range(0, height, block_px) for c in range(0, width, block_px)]


def dem_on_grid(dem_path: str, crs, transform: Affine, shape_hw: tuple[int, int]) -> np.ndarray:
    """DEM resampled bilinearly onto a pixel grid, (h, w) float32 metres, NaN where unknown."""
    out = np.full(shape_hw, np.nan, np.float32)
    with rasterio.open(dem_path) as dem:
        reproject(rasterio.band(dem, 1), out, dst_transform=transform, dst_crs=crs, dst_nodata=np.nan,
                  resampling=Resampling.bilinear)
    return out


def slope_degrees(elevation: np.ndarray, crs, transform: Affine) -> np.ndarray:
    """Slope (degrees) of an (h, w) elevation grid; pixel sizes converted to metres for geographic CRSs."""
    dx, dy = abs(transform.a), abs(transform.e)
    if crs.is_geographic:
        lat = transform.f + transform.e * elevation.shape[0] / 2
        dx, dy = dx * 111_320 * np.cos(np.radians(lat)), dy * 110_540
    d_row, d_col = np.gradient(elevation.astype(np.float64), dy, dx)
    return np.degrees(np.arctan(np.hypot(d_row, d_col))).astype(np.float32)


def polygonize_block(mask_path: str, probability_path: str | None, dem_path: str | None, window: Window) -> BlockPieces:
    """Label and polygonise one block of the mask; pixel coordinates are scene rows/columns."""
    with rasterio.open(mask_path) as src:
        landslide = src.read(1, window=window) == 1
        crs, transform = src.crs, src.window_transform(window)
        height, width = src.height, src.width
    labels, n = ndimage.label(landslide, structure=FOUR_CONNECTED)
    index = np.arange(1, n + 1)
    row0, col0 = int(window.row_off), int(window.col_off)
    pixel_transform = Affine.translation(col0, row0)
    geometries, geometry_labels = [], []
    if n:
        with warnings.catch_warnings():  # pixel coordinates on purpose: not a georeferencing mistake
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            pieces = list(shapes(labels.astype(np.int32), mask=landslide, connectivity=4, transform=pixel_transform))
        for geom, value in pieces:
            geometries.append(shape(geom))
            geometry_labels.append(int(value))
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.int64)
    prob_sum = np.zeros(n)
    prob_max = np.zeros(n)
    if probability_path and n:
        with rasterio.open(probability_path) as src:
            probability = src.read(1, window=window).astype(np.float64)
        prob_sum = np.bincount(labels.ravel(), weights=probability.ravel(), minlength=n + 1)[1:]
        prob_max = np.asarray(ndimage.maximum(probability, labels, index), dtype=np.float64).reshape(n)
    elevation_sum = slope_sum = None
    if dem_path and n:
        # one pixel of margin so the slope at the block edge sees both neighbours
        margin_transform = transform @ Affine.translation(-1, -1)
        elevation = dem_on_grid(dem_path, crs, margin_transform, (labels.shape[0] + 2, labels.shape[1] + 2))
        slope = slope_degrees(elevation, crs, margin_transform)[1:-1, 1:-1]
        elevation = elevation[1:-1, 1:-1]
        elevation_sum = np.bincount(labels.ravel(), weights=np.nan_to_num(elevation).ravel().astype(np.float64), minlength=n + 1)[1:]
        slope_sum = np.bincount(labels.ravel(), weights=np.nan_to_num(slope).ravel().astype(np.float64), minlength=n + 1)[1:]
    edges = {}
    if row0 > 0:
        edges["top"] = labels[0].copy()
    if row0 + labels.shape[0] < height:
        edges["bottom"] = labels[-1].copy()
    if col0 > 0:
        edges["left"] = labels[:, 0].copy()
    if col0 + labels.shape[1] < width:
        edges["right"] = labels[:, -1].copy()
    return BlockPieces(row0, col0, geometries, np.asarray(geometry_labels, int), counts, prob_sum, prob_max,
                       elevation_sum, slope_sum, edges)


class UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, key):
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def join_across_borders(blocks: dict[tuple[int, int], BlockPieces], block_px: int) -> UnionFind:
    """Pieces (block origin, label) with 4-adjacent pixels across a block border, joined."""
    joined = UnionFind()
    for (r, c), piece in blocks.items():
        for neighbour, mine, theirs in (((r + block_px, c), "bottom", "top"), ((r, c + block_px), "right", "left")):
            if neighbour not in blocks or mine not in piece.edges:
                continue
            pairs = np.stack([piece.edges[mine], blocks[neighbour].edges[theirs]], axis=1)
            pairs = np.unique(pairs[(pairs[:, 0] > 0) & (pairs[:, 1] > 0)], axis=0)
            for a, b in pairs:
                joined.union(((r, c), int(a)), (neighbour, int(b)))
    return joined


def polygonize_mask(mask_path: str | os.PathLike, probability_path: str | os.PathLike | None = None,
                    dem_path: str | os.PathLike | None = None, *, block_px: int = 4096, workers: int = 2) -> tuple[list, dict, rasterio.crs.CRS, Affine]:
    """All landslide polygons of a mask, in pixel coordinates, with merged per-landslide sums.

    Returns ``(geometries, sums, crs, transform)`` where ``sums`` holds (n,) arrays pixel_count,
    prob_sum, prob_max and, with a DEM, elevation_sum and slope_sum.
    """
    mask_path = str(mask_path)
    try:
        with rasterio.open(mask_path) as src:
            height, width, crs, transform = src.height, src.width, src.crs, src.transform
    except Exception as exc:
        raise LsmapError(f"{mask_path}: cannot open mask ({str(exc).splitlines()[0]})") from exc
    windows = block_windows(height, width, block_px)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda w: polygonize_block(mask_path, str(probability_path) if probability_path else None,
                                                             str(dem_path) if dem_path else None, w), windows))
    blocks = {(p.row0, p.col0): p for p in results}
    joined = join_across_borders(blocks, block_px)
    groups: dict = {}
    for key, piece in blocks.items():
        for geometry, label in zip(piece.geometries, piece.labels):
            groups.setdefault(joined.find((key, int(label))), []).append((key, int(label), geometry))
    has_dem = any(p.elevation_sum is not None for p in results)
    names = ["pixel_count", "prob_sum", "prob_max"] + (["elevation_sum", "slope_sum"] if has_dem else [])
    sums = {name: np.zeros(len(groups)) for name in names}
    geometries = []
    for g, members in enumerate(sorted(groups.values(), key=lambda m: (m[0][0], m[0][1]))):
        parts = [geometry for _, _, geometry in members]
        geometries.append(parts[0] if len(parts) == 1 else shapely.union_all(parts))
        for key, label, _ in members:
            piece = blocks[key]
            sums["pixel_count"][g] += piece.pixel_count[label - 1]
            sums["prob_sum"][g] += piece.prob_sum[label - 1]
            sums["prob_max"][g] = max(sums["prob_max"][g], piece.prob_max[label - 1])
            if has_dem:
                sums["elevation_sum"][g] += piece.elevation_sum[label - 1]
                sums["slope_sum"][g] += piece.slope_sum[label - 1]
    return geometries, sums, crs, transform


def fill_holes(geometry):
    if geometry.geom_type == "Polygon":
        return Polygon(geometry.exterior)
    return shapely.MultiPolygon([Polygon(p.exterior) for p in geometry.geoms])


def landslide_polygons(mask_path, probability_path=None, dem_path=None, *, scene_id: str = "", acquired: str = "",
                       min_area_m2: float = 0.0, fill_holes_: bool = True, simplify_m: float = 0.0,
                       block_px: int = 4096, workers: int = 2):
    """The landslide GeoDataFrame of a scene (scene CRS), columns :data:`COLUMNS` (+ DEM columns)."""
    import geopandas as gpd

    from lsmap.stats import area_crs_for

    pixel_geometries, sums, crs, transform = polygonize_mask(mask_path, probability_path, dem_path,
                                                             block_px=block_px, workers=workers)
    matrix = [transform.a, transform.b, transform.d, transform.e, transform.xoff, transform.yoff]
    geometries = [shapely.affinity.affine_transform(g, matrix) for g in pixel_geometries]
    if fill_holes_:
        geometries = [fill_holes(g) for g in geometries]
    frame = gpd.GeoDataFrame({"pixel_count": sums["pixel_count"].astype(np.int64)}, geometry=geometries, crs=crs)
    if simplify_m > 0 and len(frame):
        tolerance = simplify_m if crs.is_projected else simplify_m / 111_320
        frame["geometry"] = frame.geometry.simplify(tolerance, preserve_topology=True)
    area_crs = area_crs_for(crs, frame.total_bounds if len(frame) else None, mask_path)
    in_area_crs = frame.geometry.to_crs(area_crs)
    frame["area_m2"] = in_area_crs.area.to_numpy()
    frame["perimeter_m"] = in_area_crs.length.to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["prob_mean"] = sums["prob_sum"] / sums["pixel_count"]
        frame["prob_max"] = sums["prob_max"]
        if "elevation_sum" in sums:
            frame["slope_mean_deg"] = sums["slope_sum"] / sums["pixel_count"]
            frame["elevation_mean_m"] = sums["elevation_sum"] / sums["pixel_count"]
    centroids = gpd.GeoSeries(in_area_crs.centroid, crs=area_crs).to_crs("EPSG:4326")
    frame["centroid_lon"] = centroids.x.to_numpy() if len(frame) else []
    frame["centroid_lat"] = centroids.y.to_numpy() if len(frame) else []
    frame = frame[frame["area_m2"] >= min_area_m2].reset_index(drop=True)
    frame["id"] = np.arange(1, len(frame) + 1, dtype=np.int64)
    frame["scene_id"] = scene_id
    frame["acquired"] = acquired or ""
    columns = COLUMNS + ([c for c in DEM_COLUMNS if c in frame] if "elevation_sum" in sums else [])
    return frame[columns + ["geometry"]]
