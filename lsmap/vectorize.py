"""From the binary mask to landslide polygons, streamed block by block in bounded memory.

Each block of the mask is labelled (4-connectivity, as GDAL polygonises) with per-component sums
from the labelled arrays (``numpy.bincount`` / ``scipy.ndimage``): pixel count, probability sum and
maximum, elevation and slope sums, bounding box. Components that cannot reach ``min_area_m2`` are
dropped *before* vectorising: a component's area is at most its pixel count times the largest
pixel area of the scene on the area CRS (pixel areas vary with latitude on geographic scenes), and
with hole filling or simplification at most its bounding box's pixels. Only what may survive is
polygonised, in *pixel coordinates* (integers, exact). Pieces that touch an internal block border
wait until the block row below is labelled: pieces with 4-adjacent landslide pixels across a border
are joined (union-find on the border pixel rows), their sums merged, the whole component judged,
and only then are the polygons of survivors unioned; because the coordinates are integers, the
shared edges cancel exactly and no straight cut along a block line survives.

Landslides are yielded in batches, in the order of their first block (row-major) and their label
there, as soon as every landslide before them is complete; then the pixel-to-map transform, hole
filling, simplification and measures are applied to the whole batch with shapely's array
functions. What waits in memory is the pieces touching the current block row's lower border and
the survivors not yet in order, never a scene's components.

Per polygon: id, scene_id, acquired, area_m2, perimeter_m (on the area CRS of the scene's extent,
see :func:`lsmap.stats.area_crs_for`), prob_mean, prob_max (over the landslide pixels),
centroid_lon, centroid_lat, pixel_count, and with a DEM slope_mean_deg and elevation_mean_m. A
landslide is kept when its area_m2 (after hole filling and simplification) is >= ``min_area_m2``.
"""

from __future__ import annotations

import heapq
import math
import os
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

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
# per-component sums of a block; the bounding box (scene rows/columns, stop exclusive) merges by min/max
ADDED = ("pixel_count", "prob_sum", "elevation_sum", "slope_sum")
BOX = ("row_start", "row_stop", "col_start", "col_stop")
BATCH_ROWS = 20_000  # landslides per written batch: a few MB of polygons
PIXEL_AREA_MARGIN = 1.01  # the coarse pixel-area grid averages 256 px cells: keep the bound an upper bound


@dataclass
class BlockPieces:
    """The components of one block that may become landslides (pixel coordinates, ascending labels)."""

    index: int  # row-major block number: the order landslides are numbered in
    row0: int
    col0: int
    labels: np.ndarray  # (k,) int, the block's labels of these components
    geometries: list  # (k,) polygons in scene pixel coordinates
    sums: dict  # name -> (k,) float64: ADDED, prob_max, BOX
    on_border: np.ndarray  # (k,) bool, touches an internal block border: judged once joined
    ranks: np.ndarray  # (k,) int, the order GDAL emitted the polygons in
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


@dataclass(frozen=True)
class SizeRule:
    """Which components may reach ``min_area_m2``: an upper bound of their area in pixels against
    ``min_px`` = min_area_m2 / the largest pixel area on the area CRS. The bound is the pixel count
    (polygons kept as they are), the pixels of the hole-filled region (hole filling; in a block, see
    :func:`filled_region_px`) or the bounding box (simplification; components cut by block lines)."""

    min_px: float
    mode: str = "pixels"  # "pixels" | "filled" | "box"

    @property
    def by_box(self) -> bool:
        """Components cut by block lines are judged on their merged bounding box."""
        return self.mode != "pixels"

    def may_survive(self, pixel_count: np.ndarray, box_px: np.ndarray) -> np.ndarray:
        return (box_px if self.by_box else pixel_count) >= self.min_px


def size_rule(mask_path: str, min_area_m2: float, fill_holes_: bool, simplify_m: float) -> SizeRule:
    from lsmap.stats import pixel_area_grid, raster_area_crs

    if min_area_m2 <= 0:
        return SizeRule(0.0)
    with rasterio.open(mask_path) as src:
        area_crs = raster_area_crs(mask_path)
        largest_m2 = float(pixel_area_grid(src.crs, src.transform, src.height, src.width, area_crs).max())
    mode = "box" if simplify_m > 0 else "filled" if fill_holes_ else "pixels"
    return SizeRule(min_area_m2 / (largest_m2 * PIXEL_AREA_MARGIN), mode)


def filled_region_px(landslide: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """(n,) for each component inside the block: the pixels of the 4-connected region of the mask
    with its holes filled that contains it, an upper bound of its hole-filled polygon's area.

    A hole is a 4-connected background region that does not reach the block's edge (a polygon's
    ring can only be crossed at a pinch vertex, diagonally, so the background inside it is never
    4-connected to the outside); the filled polygon's pixels are 4-connected within mask + holes.
    Components touching the block edge get meaningless values here and are judged on their box."""
    background, _ = ndimage.label(~landslide, structure=FOUR_CONNECTED)
    outside = np.zeros(int(background.max()) + 1, bool)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outside[edge] = True
    outside[0] = True  # label 0 = the mask itself
    filled, _ = ndimage.label(landslide | ~outside[background], structure=FOUR_CONNECTED)
    del background
    region_px = np.bincount(filled.ravel())
    region_of = np.zeros(n + 1, np.int64)
    region_of[labels.ravel()] = filled.ravel()
    return region_px[region_of[1:]].astype(np.float64)


def label_block(mask_path: str, probability_path: str | None, dem_path: str | None, window: Window, index: int,
                rule: SizeRule) -> BlockPieces:
    """Label one block, measure every component, polygonise those that may survive or touch a border."""
    with rasterio.open(mask_path) as src:
        landslide = src.read(1, window=window) == 1
        crs, transform = src.crs, src.window_transform(window)
        height, width = src.height, src.width
    labels, n = ndimage.label(landslide, structure=FOUR_CONNECTED)
    region_px = filled_region_px(landslide, labels, n) if rule.mode == "filled" and rule.min_px > 0 else None
    del landslide
    row0, col0 = int(window.row_off), int(window.col_off)
    edges = {}
    if row0 > 0:
        edges["top"] = labels[0].copy()
    if row0 + labels.shape[0] < height:
        edges["bottom"] = labels[-1].copy()
    if col0 > 0:
        edges["left"] = labels[:, 0].copy()
    if col0 + labels.shape[1] < width:
        edges["right"] = labels[:, -1].copy()
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.float64)
    on_border = np.zeros(n + 1, bool)
    for edge in edges.values():
        on_border[edge] = True
    on_border = on_border[1:]
    # a 4-connected component of c pixels spans h + w - 1 <= c rows + columns, so h * w <= ((c + 1) / 2)^2:
    # only components that large can pass on their bounding box; the rest need no box
    needs_box = on_border | (rule.by_box & (((counts + 1) / 2) ** 2 >= rule.min_px))
    boxes = np.zeros((n, 4))
    wanted, runs, pixels = label_runs(labels, needs_box)
    rows, cols = pixels // labels.shape[1], pixels % labels.shape[1]
    if len(wanted):  # the pixels of a label in scan order: first and last row, column extremes
        ends = np.append(runs[1:], len(pixels)) - 1
        boxes[wanted - 1] = np.column_stack([rows[runs] + row0, rows[ends] + 1 + row0,
                                             np.minimum.reduceat(cols, runs) + col0, np.maximum.reduceat(cols, runs) + 1 + col0])
    del rows, cols, pixels
    box_px = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    # both are upper bounds: the smaller one decides (specks in a checkerboard fill one big region)
    kept = on_border | rule.may_survive(counts, box_px if region_px is None else np.minimum(box_px, region_px))
    kept_labels = np.flatnonzero(kept) + 1
    sums = {"pixel_count": counts[kept]}
    for name, column in zip(BOX, boxes[kept].T):
        sums[name] = column
    sums["prob_sum"] = np.zeros(len(kept_labels))
    sums["prob_max"] = np.zeros(len(kept_labels))
    flat = labels.ravel()
    if probability_path and len(kept_labels):
        with rasterio.open(probability_path) as src:
            probability = src.read(1, window=window)  # float32: bincount sums its weights in float64
        sums["prob_sum"] = np.bincount(flat, weights=probability.ravel(), minlength=n + 1)[kept_labels]
        _, runs, pixels = label_runs(labels, kept)
        sums["prob_max"] = np.maximum.reduceat(probability.ravel()[pixels], runs).astype(np.float64)
        del probability, pixels
    if dem_path and len(kept_labels):
        # one pixel of margin so the slope at the block edge sees both neighbours
        margin_transform = transform @ Affine.translation(-1, -1)
        elevation = dem_on_grid(dem_path, crs, margin_transform, (labels.shape[0] + 2, labels.shape[1] + 2))
        slope = slope_degrees(elevation, crs, margin_transform)[1:-1, 1:-1]
        elevation = elevation[1:-1, 1:-1]
        sums["elevation_sum"] = np.bincount(flat, weights=np.nan_to_num(elevation).ravel().astype(np.float64), minlength=n + 1)[kept_labels]
        sums["slope_sum"] = np.bincount(flat, weights=np.nan_to_num(slope).ravel().astype(np.float64), minlength=n + 1)[kept_labels]
    geometries, ranks = polygonize_labels(labels, kept, kept_labels, row0, col0)
    on_border = on_border[kept]
    if rule.mode == "filled" and rule.min_px > 0 and len(kept_labels):
        # now that the polygons exist the bound of a complete component is exact: its hole-filled
        # polygon's pixels (speckle joined through holes passes the region bound in thousands)
        filled_px = shapely.area(fill_holes_array(np.array(geometries, dtype=object)))
        passes = on_border | (filled_px >= rule.min_px)
        if not passes.all():
            kept_labels, ranks, on_border = kept_labels[passes], ranks[passes], on_border[passes]
            geometries = [geometry for geometry, keep in zip(geometries, passes) if keep]
            sums = {name: values[passes] for name, values in sums.items()}
    return BlockPieces(index, row0, col0, kept_labels, geometries, sums, on_border, ranks, edges)


def label_runs(labels: np.ndarray, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels of the selected labels ((n,) bool, index = label - 1) grouped by label, each group
    in scan order: (labels ascending, start of each label's run, flat pixel indices). Only the
    selected pixels are sorted, so a block of a million specks costs what its survivors cost."""
    lookup = np.concatenate([[False], selected])
    pixels = np.flatnonzero(lookup[labels])
    if not len(pixels):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), pixels
    of_pixel = labels.ravel()[pixels]
    order = np.argsort(of_pixel, kind="stable")
    pixels, of_pixel = pixels[order], of_pixel[order]
    runs = np.flatnonzero(np.concatenate([[True], of_pixel[1:] != of_pixel[:-1]]))
    return of_pixel[runs].astype(np.int64), runs, pixels


def polygonize_labels(labels: np.ndarray, kept: np.ndarray, kept_labels: np.ndarray, row0: int, col0: int) -> tuple[list, np.ndarray]:
    """Polygons (scene pixel coordinates) of the kept labels, in the order of ``kept_labels``, and
    the order GDAL emitted them in (which numbers a landslide made of several pieces of a block)."""
    if not len(kept_labels):
        return [], np.zeros(0, np.int64)
    lookup = np.concatenate([[False], kept])
    with warnings.catch_warnings():  # pixel coordinates on purpose: not a georeferencing mistake
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        pieces = list(shapes(labels.astype(np.int32, copy=False), mask=lookup[labels], connectivity=4,
                             transform=Affine.translation(col0, row0)))
    emitted = polygons_of_geojson([geom["coordinates"] for geom, _ in pieces])
    rank_of = {int(value): rank for rank, (_, value) in enumerate(pieces)}
    ranks = np.array([rank_of[int(label)] for label in kept_labels], np.int64)
    return list(emitted[ranks]), ranks


def polygons_of_geojson(polygons: list) -> np.ndarray:
    """GeoJSON polygon coordinates (each a list of closed rings, the shell first) as shapely polygons,
    built with shapely's array functions: the same coordinates as ``shapely.geometry.shape`` gives,
    without a Python object per ring and vertex."""
    if not polygons:
        return np.zeros(0, dtype=object)
    rings = [ring for rings in polygons for ring in rings]
    ring_lengths = np.fromiter(map(len, rings), np.int64, len(rings))
    coords = np.array([point for ring in rings for point in ring], np.float64)
    ring_of_point = np.repeat(np.arange(len(rings)), ring_lengths)
    polygon_of_ring = np.repeat(np.arange(len(polygons)), np.fromiter(map(len, polygons), np.int64, len(polygons)))
    return shapely.polygons(shapely.linearrings(coords, indices=ring_of_point), indices=polygon_of_ring)


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

    def forget(self, keys) -> None:
        """Drop keys whose whole group is done (nothing else points at them)."""
        for key in keys:
            self.parent.pop(key, None)


def label_pairs(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """(m, 2) distinct label pairs facing each other across a border, both landslide."""
    pairs = np.stack([mine, theirs], axis=1)
    return np.unique(pairs[(pairs[:, 0] > 0) & (pairs[:, 1] > 0)], axis=0)


@dataclass
class Landslide:
    """A complete component: polygon in pixel coordinates and its merged sums (name -> float)."""

    key: tuple  # (first block number, label there): the output order
    geometry: object
    sums: dict


class ComponentStream:
    """Joins blocks arriving in row-major order into complete components and releases them in order.

    Pending: pieces touching the lower border of the last block row (and everything joined to
    them); ready: complete survivors waiting for an earlier, still open component.
    """

    def __init__(self, blocks_per_row: int, rule: SizeRule):
        self.blocks_per_row = blocks_per_row
        self.rule = rule
        self.joined = UnionFind()
        self.pending: dict = {}  # (block, label) -> (geometry, {name: value})
        self.ready: list = []  # heap of (key, Landslide)
        self.row_blocks: list[BlockPieces] = []
        self.above: dict[int, BlockPieces] = {}  # column -> block of the previous row

    def add(self, block: BlockPieces) -> list[Landslide]:
        column = block.index % self.blocks_per_row
        for i, label in enumerate(block.labels):
            values = {name: block.sums[name][i] for name in block.sums}
            key = (block.index, int(label))
            if block.on_border[i]:
                self.pending[key] = (block.geometries[i], values, int(block.ranks[i]))
            else:  # complete and already judged may-survive
                heapq.heappush(self.ready, (key, Landslide(key, block.geometries[i], values)))
        up = self.above.get(column)
        if up is not None and "top" in block.edges:
            for a, b in label_pairs(block.edges["top"], up.edges["bottom"]):
                self.joined.union((up.index, int(b)), (block.index, int(a)))
        if self.row_blocks and "left" in block.edges:
            left = self.row_blocks[-1]
            for a, b in label_pairs(block.edges["left"], left.edges["right"]):
                self.joined.union((left.index, int(b)), (block.index, int(a)))
        block.geometries = []  # held in pending / ready now
        self.row_blocks.append(block)
        if column == self.blocks_per_row - 1:
            return self.end_row()
        return []

    def end_row(self) -> list[Landslide]:
        """Close the components that do not reach below this block row; release what is in order."""
        open_roots = set()
        for block in self.row_blocks:
            if "bottom" in block.edges:
                for label in np.unique(block.edges["bottom"]):
                    if label > 0:
                        open_roots.add(self.joined.find((block.index, int(label))))
        groups: dict = {}
        first_open = None
        for key in self.pending:
            root = self.joined.find(key)
            if root in open_roots:
                first_open = key if first_open is None else min(first_open, key)
            else:
                groups.setdefault(root, []).append(key)
        for members in groups.values():
            self.close_group(sorted(members))
        self.above = {block.index % self.blocks_per_row: block for block in self.row_blocks}
        for block in self.row_blocks:  # the edges below are all the next row needs
            block.labels = block.sums = block.on_border = block.ranks = None
        self.row_blocks = []
        released = []
        while self.ready and (first_open is None or self.ready[0][0] < first_open):
            released.append(heapq.heappop(self.ready)[1])
        return released

    def close_group(self, members: list) -> None:
        parts = [self.pending.pop(key) for key in members]
        self.joined.forget(members)
        values = dict(parts[0][1])
        for _, more, _ in parts[1:]:
            for name in more:
                if name in ("prob_max", "row_stop", "col_stop"):
                    values[name] = max(values[name], more[name])
                elif name in ("row_start", "col_start"):
                    values[name] = min(values[name], more[name])
                else:
                    values[name] += more[name]
        box_px = (values["row_stop"] - values["row_start"]) * (values["col_stop"] - values["col_start"])
        if not self.rule.may_survive(np.array([values["pixel_count"]]), np.array([box_px]))[0]:
            return
        geometries = [geometry for geometry, _, _ in parts]
        geometry = geometries[0] if len(geometries) == 1 else shapely.union_all(geometries)
        # numbered like its first piece: the first block's piece that GDAL emitted first
        first_block = members[0][0]
        key = min((rank, key) for key, (_, _, rank) in zip(members, parts) if key[0] == first_block)[1]
        heapq.heappush(self.ready, (key, Landslide(key, geometry, values)))


def open_mask(mask_path: str):
    try:
        with rasterio.open(mask_path) as src:
            return src.height, src.width, src.crs, src.transform
    except Exception as exc:
        raise LsmapError(f"{mask_path}: cannot open mask ({str(exc).splitlines()[0]})") from exc


def complete_components(mask_path, probability_path=None, dem_path=None, *, rule: SizeRule = SizeRule(0.0),
                        block_px: int = 4096, workers: int = 2, progress: bool = False,
                        desc: str = "polygons") -> Iterator[list[Landslide]]:
    """Lists of complete components that may reach the size rule, in output order, block row by row.

    Blocks are labelled by ``workers`` threads with a bounded look-ahead (2 blocks per thread), so
    labelled blocks never pile up in memory.
    """
    from lsmap.progress import progress_bar

    mask_path = str(mask_path)
    height, width, _, _ = open_mask(mask_path)
    windows = block_windows(height, width, block_px)
    stream = ComponentStream(math.ceil(width / block_px), rule)
    probability_path = str(probability_path) if probability_path else None
    dem_path = str(dem_path) if dem_path else None
    workers = max(1, workers)
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            progress_bar(len(windows), desc, "block", progress) as bar:
        queued: deque = deque()
        for index, window in enumerate(windows):
            queued.append(pool.submit(label_block, mask_path, probability_path, dem_path, window, index, rule))
            if len(queued) >= 2 * workers:
                yield stream.add(queued.popleft().result())
                bar.update()
        while queued:
            yield stream.add(queued.popleft().result())
            bar.update()


def polygonize_mask(mask_path: str | os.PathLike, probability_path: str | os.PathLike | None = None,
                    dem_path: str | os.PathLike | None = None, *, block_px: int = 4096, workers: int = 2) -> tuple[list, dict, rasterio.crs.CRS, Affine]:
    """All landslide polygons of a mask, in pixel coordinates, with merged per-landslide sums.

    Holds every polygon of the scene: for tests and small masks; :func:`landslide_batches` streams.
    Returns ``(geometries, sums, crs, transform)`` where ``sums`` holds (n,) arrays pixel_count,
    prob_sum, prob_max and, with a DEM, elevation_sum and slope_sum.
    """
    _, _, crs, transform = open_mask(str(mask_path))
    landslides = [item for released in complete_components(mask_path, probability_path, dem_path, block_px=block_px,
                                                           workers=workers) for item in released]
    names = ["pixel_count", "prob_sum", "prob_max"] + (["elevation_sum", "slope_sum"] if dem_path else [])
    sums = {name: np.array([item.sums.get(name, 0.0) for item in landslides], dtype=np.float64) for name in names}
    return [item.geometry for item in landslides], sums, crs, transform


def fill_holes(geometry):
    if geometry.geom_type == "Polygon":
        return Polygon(geometry.exterior)
    return shapely.MultiPolygon([Polygon(p.exterior) for p in geometry.geoms])


def fill_holes_array(geometries: np.ndarray) -> np.ndarray:
    """Every polygon's outer ring as a polygon (multipolygons part by part, rare)."""
    out = geometries.copy()
    single = shapely.get_type_id(geometries) == 3
    out[single] = shapely.polygons(shapely.get_exterior_ring(geometries[single]))
    for i in np.flatnonzero(~single):
        out[i] = fill_holes(geometries[i])
    return out


def to_map_coordinates(geometries: np.ndarray, transform: Affine) -> np.ndarray:
    """Pixel to map coordinates, the arithmetic of ``shapely.affinity.affine_transform`` (same bits)."""
    a, b, xoff, d, e, yoff = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f

    def affine(coords):
        x, y = coords.T
        return np.stack([a * x + b * y + xoff, d * x + e * y + yoff]).T

    return shapely.transform(geometries, affine)


def landslide_frame(landslides: list[Landslide], crs, transform: Affine, area_crs, *, scene_id: str, acquired: str,
                    min_area_m2: float, fill_holes_: bool, simplify_m: float, has_dem: bool):
    """The rows (without id) of complete components at or above ``min_area_m2``, scene CRS."""
    import geopandas as gpd

    geometries = to_map_coordinates(np.array([item.geometry for item in landslides] or [], dtype=object), transform)
    if fill_holes_ and len(geometries):
        geometries = fill_holes_array(geometries)
    sums = {name: np.array([item.sums.get(name, 0.0) for item in landslides], dtype=np.float64)
            for name in ("pixel_count", "prob_sum", "prob_max", "elevation_sum", "slope_sum")}
    frame = gpd.GeoDataFrame({"pixel_count": sums["pixel_count"].astype(np.int64)}, geometry=list(geometries), crs=crs)
    if simplify_m > 0 and len(frame):
        tolerance = simplify_m if crs.is_projected else simplify_m / 111_320
        frame["geometry"] = frame.geometry.simplify(tolerance, preserve_topology=True)
    in_area_crs = frame.geometry.to_crs(area_crs)
    frame["area_m2"] = in_area_crs.area.to_numpy()
    frame["perimeter_m"] = in_area_crs.length.to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["prob_mean"] = sums["prob_sum"] / sums["pixel_count"]
        frame["prob_max"] = sums["prob_max"]
        if has_dem:
            frame["slope_mean_deg"] = sums["slope_sum"] / sums["pixel_count"]
            frame["elevation_mean_m"] = sums["elevation_sum"] / sums["pixel_count"]
    centroids = gpd.GeoSeries(in_area_crs.centroid, crs=area_crs).to_crs("EPSG:4326")
    frame["centroid_lon"] = centroids.x.to_numpy() if len(frame) else []
    frame["centroid_lat"] = centroids.y.to_numpy() if len(frame) else []
    frame = frame[frame["area_m2"] >= min_area_m2].reset_index(drop=True)
    frame["scene_id"] = scene_id
    frame["acquired"] = acquired or ""
    return frame


def landslide_batches(mask_path, probability_path=None, dem_path=None, *, scene_id: str = "", acquired: str = "",
                      min_area_m2: float = 0.0, fill_holes_: bool = True, simplify_m: float = 0.0, block_px: int = 4096,
                      workers: int = 2, batch_rows: int = BATCH_ROWS, progress: bool = False, desc: str = "polygons"):
    """The landslide GeoDataFrame of a scene (scene CRS, columns :data:`COLUMNS` + DEM columns) as
    consecutive batches (ids 1.. in order). Always yields at least one (possibly empty) frame, so a
    writer sees the columns even when nothing survives."""
    import pandas as pd

    from lsmap.stats import raster_area_crs

    mask_path = str(mask_path)
    _, _, crs, transform = open_mask(mask_path)
    area_crs = raster_area_crs(mask_path)
    rule = size_rule(mask_path, min_area_m2, fill_holes_, simplify_m)
    columns = COLUMNS + (DEM_COLUMNS if dem_path else [])
    next_id, waiting, yielded = 1, [], False

    def frame_of(landslides):
        nonlocal next_id
        frame = landslide_frame(landslides, crs, transform, area_crs, scene_id=scene_id, acquired=acquired,
                                min_area_m2=min_area_m2, fill_holes_=fill_holes_, simplify_m=simplify_m,
                                has_dem=bool(dem_path))
        frame["id"] = np.arange(next_id, next_id + len(frame), dtype=np.int64)
        frame.index = pd.RangeIndex(next_id - 1, next_id - 1 + len(frame))  # metadata only in GeoParquet
        next_id += len(frame)
        return frame[columns + ["geometry"]]

    for released in complete_components(mask_path, probability_path, dem_path, rule=rule, block_px=block_px,
                                        workers=workers, progress=progress, desc=desc):
        waiting.extend(released)
        if len(waiting) >= batch_rows:
            frame = frame_of(waiting)
            waiting = []
            if len(frame):
                yielded = True
                yield frame
    if waiting or not yielded:
        frame = frame_of(waiting)
        if len(frame) or not yielded:
            yield frame


def landslide_polygons(mask_path, probability_path=None, dem_path=None, *, scene_id: str = "", acquired: str = "",
                       min_area_m2: float = 0.0, fill_holes_: bool = True, simplify_m: float = 0.0,
                       block_px: int = 4096, workers: int = 2):
    """The landslide GeoDataFrame of a scene in one frame (small scenes and tests; see :func:`landslide_batches`)."""
    import pandas as pd

    batches = list(landslide_batches(mask_path, probability_path, dem_path, scene_id=scene_id, acquired=acquired,
                                     min_area_m2=min_area_m2, fill_holes_=fill_holes_, simplify_m=simplify_m,
                                     block_px=block_px, workers=workers))
    frame = batches[0] if len(batches) == 1 else pd.concat(batches)
    return frame.reset_index(drop=True)
