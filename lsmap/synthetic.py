"""A procedural landscape with landslide-like scars, for the offline demo and for tests.

Everything a real mapping run needs, on a georeferenced UTM grid, from one seed:

- ``reflectance.tif``: 4 bands blue, green, red, nir, surface reflectance x 1e4 as uint16 (GF-6
  PMS-like, 2 m), nodata 0 outside a slightly rotated scene footprint (as after orthorectification);
- ``dem.tif``: float32 metres at a coarser DEM resolution (10 m), nodata -9999;
- ``truth_mask.tif``: uint8 1 landslide / 0 not, 255 outside the footprint;
- ``truth.gpkg``: the landslide polygons (layer ``landslides``).

The terrain is fractal noise plus a valley; scars are seeded preferentially on steep slopes,
elongated downslope and widen into a runout toe. Their look depends on the terrain: steep scars
are bright fresh rock lit by the sun, gentler toes are darker and mixed with vegetation. Flat
bare fields with straight edges and a river act as look-alikes, so a model has to learn shape and
context, not just "bright = landslide".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

from lsmap.fileio import atomic_output

BANDS = ["blue", "green", "red", "nir"]
# surface reflectance (0..1) of the cover types, bands as BANDS
VEGETATION = np.array([0.035, 0.065, 0.045, 0.32])
MEADOW = np.array([0.05, 0.09, 0.07, 0.38])
FRESH_SCAR = np.array([0.14, 0.17, 0.20, 0.26])
BARE_FIELD = np.array([0.09, 0.11, 0.14, 0.21])
WATER = np.array([0.06, 0.07, 0.05, 0.03])


@dataclass(frozen=True)
class Landscape:
    reflectance: Path
    dem: Path
    truth_mask: Path
    truth_polygons: Path
    landslide_fraction: float


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], scales_px: list[float], weights: list[float]) -> np.ndarray:
    """(H, W) float32 zero-mean, unit-std smooth noise made of several Gaussian-filtered octaves."""
    field = np.zeros(shape, np.float32)
    for scale, weight in zip(scales_px, weights):
        step = max(1, int(scale // 4))  # filter a coarse grid, then upsample: fast at large scales
        small = rng.standard_normal((shape[0] // step + 2, shape[1] // step + 2)).astype(np.float32)
        small = ndimage.gaussian_filter(small, scale / step, mode="wrap")
        octave = ndimage.zoom(small, step, order=1)[: shape[0], : shape[1]]
        field += weight * (octave - octave.mean()) / (octave.std() + 1e-9)
    return (field - field.mean()) / (field.std() + 1e-9)


def make_terrain(rng: np.random.Generator, size_px: int, pixel_m: float) -> np.ndarray:
    """(H, W) float32 elevation in metres: ridges and a valley, about 800 m of relief over 4 km."""
    noise = fractal_noise(rng, (size_px, size_px), [400, 150, 50, 15], [1.0, 0.5, 0.2, 0.05])
    cols = np.linspace(-1, 1, size_px)[None, :]
    valley = 300 * np.abs(cols + 0.2 * np.sin(np.linspace(0, 3, size_px))[:, None]) ** 1.2
    relief = 250 * (size_px * pixel_m / 4096) ** 0.5
    return (1500 + valley + relief * noise).astype(np.float32)


def slope_aspect(dem: np.ndarray, pixel_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slope (degrees), hillshade (0..1, sun from the south-east at 45 degrees) and the unit
    downslope direction (d_row, d_col) of a DEM on a north-up grid."""
    d_row, d_col = np.gradient(dem.astype(np.float64), pixel_m)
    slope = np.degrees(np.arctan(np.hypot(d_row, d_col)))
    norm = np.hypot(d_row, d_col) + 1e-9
    # surface normal (east, north, up) = (-dz/dx, +dz/drow, 1) since rows grow southwards
    normal = np.stack([-d_col, d_row, np.ones_like(dem)]) / np.sqrt(1 + d_row**2 + d_col**2)
    sun = np.array([np.sin(np.radians(135)) * np.cos(np.radians(45)), np.cos(np.radians(135)) * np.cos(np.radians(45)), np.sin(np.radians(45))])
    hillshade = np.clip(np.tensordot(sun, normal, axes=1), 0, 1)
    return slope.astype(np.float32), hillshade.astype(np.float32), (-d_row / norm), (-d_col / norm)


def paint_scars(rng: np.random.Generator, slope: np.ndarray, down_row: np.ndarray, down_col: np.ndarray,
                pixel_m: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Landslide mask (H, W) bool and 'freshness' (H, W) float32 0..1 (1 at the scarp, lower in the toe)."""
    h, w = slope.shape
    weights = np.clip(slope - 15, 0, None) ** 2
    weights = weights.ravel() / weights.sum()
    centres = rng.choice(h * w, size=count, replace=False, p=weights)
    mask = np.zeros((h, w), bool)
    fresh = np.zeros((h, w), np.float32)
    for centre in centres:
        r, c = divmod(int(centre), w)
        length_m = float(np.clip(rng.lognormal(np.log(90), 0.5), 30, 400))
        width_m = length_m * rng.uniform(0.25, 0.5)
        half = int(length_m / pixel_m) + 4
        r0, r1, c0, c1 = max(0, r - half), min(h, r + half), max(0, c - half), min(w, c + half)
        rr, cc = np.mgrid[r0:r1, c0:c1]
        dr, dc = down_row[r, c], down_col[r, c]
        along = ((rr - r) * dr + (cc - c) * dc) * pixel_m  # metres downslope of the seed
        across = (-(rr - r) * dc + (cc - c) * dr) * pixel_m
        t = along / length_m + 0.5  # 0 at the scarp, 1 at the toe
        local_width = width_m * (0.35 + 0.65 * np.clip(t, 0, 1) ** 0.7)  # widening runout
        wobble = 1 + 0.25 * ndimage.gaussian_filter(rng.standard_normal(rr.shape), 3)
        inside = (t > 0) & (t < 1) & (np.abs(across) < 0.5 * local_width * wobble)
        mask[r0:r1, c0:c1] |= inside
        fresh[r0:r1, c0:c1] = np.maximum(fresh[r0:r1, c0:c1], np.where(inside, 1 - 0.6 * np.clip(t, 0, 1), 0))
    mask = ndimage.binary_opening(mask, iterations=1)
    return mask, fresh * mask


def paint_look_alikes(rng: np.random.Generator, slope: np.ndarray, dem: np.ndarray, pixel_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Bare rectangular fields on gentle ground and a river along the valley floor (H, W) bool each."""
    h, w = slope.shape
    fields = np.zeros((h, w), bool)
    flat = np.argwhere(slope < 12)
    for _ in range(max(3, h * w // 250_000)):
        if len(flat) == 0:
            break
        r, c = flat[rng.integers(len(flat))]
        fh, fw = (rng.uniform(40, 160, 2) / pixel_m).astype(int)
        fields[r:r + fh, c:c + fw] = True
    valley_floor = np.argmin(dem, axis=1)
    river = np.zeros((h, w), bool)
    width_px = max(2, int(12 / pixel_m))
    for row, col in enumerate(valley_floor):
        river[row, max(0, col - width_px):col + width_px] = True
    return fields & ~river, river


def render_reflectance(rng, dem, slope, hillshade, scars, fresh, fields, river) -> np.ndarray:
    """(4, H, W) float32 surface reflectance 0..1."""
    h, w = dem.shape
    meadow = fractal_noise(rng, (h, w), [60, 20], [1.0, 0.4]) > 0.8
    texture = 1 + 0.12 * fractal_noise(rng, (h, w), [8, 2], [1.0, 0.6])
    cover = np.where(meadow[None], MEADOW[:, None, None], VEGETATION[:, None, None]) * texture
    illumination = 0.55 + 0.45 * hillshade  # vegetation canopies are lit less directionally than rock
    image = cover * illumination
    # fresh rock: brighter on steep sun-facing scarps, mixed with debris/vegetation in the toe
    streaks = 1 + 0.15 * fractal_noise(rng, (h, w), [3], [1.0])
    steep = np.clip((slope - 10) / 30, 0, 1)
    scar_look = FRESH_SCAR[:, None, None] * (0.5 + 0.9 * hillshade) * (0.75 + 0.35 * steep) * streaks
    mix = (0.45 + 0.55 * fresh) * scars
    image = image * (1 - mix) + scar_look * mix
    field_look = BARE_FIELD[:, None, None] * (0.8 + 0.2 * hillshade) * (1 + 0.05 * fractal_noise(rng, (h, w), [30], [1.0]))
    image = np.where(fields[None], field_look, image)
    image = np.where(river[None], WATER[:, None, None] * (1 + 0.1 * texture), image)
    image += rng.normal(0, 0.004, image.shape)
    return np.clip(image, 0.0001, 0.65).astype(np.float32)


def scene_footprint(size_px: int, angle_deg: float) -> np.ndarray:
    """(H, W) bool: a square rotated by ``angle_deg`` and shrunk to fit, like an orthorectified swath."""
    rr, cc = np.mgrid[0:size_px, 0:size_px] - (size_px - 1) / 2
    a = np.radians(angle_deg)
    u = rr * np.cos(a) + cc * np.sin(a)
    v = -rr * np.sin(a) + cc * np.cos(a)
    half = size_px / 2 / (np.cos(a) + np.sin(abs(a))) * 1.12
    return (np.abs(u) < half) & (np.abs(v) < half)


def generate_landscape(out_dir: str | os.PathLike, *, seed: int, size_px: int = 2048, pixel_m: float = 2.0,
                       epsg: int = 32648, origin_xy: tuple[float, float] = (420000.0, 3700000.0),
                       dem_pixel_m: float = 10.0, scars_per_km2: float = 8.0, rotation_deg: float = 7.0) -> Landscape:
    """Write a landscape into ``out_dir`` (reflectance.tif, dem.tif, truth_mask.tif, truth.gpkg)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dem = make_terrain(rng, size_px, pixel_m)
    slope, hillshade, down_row, down_col = slope_aspect(dem, pixel_m)
    area_km2 = (size_px * pixel_m / 1000) ** 2
    scars, fresh = paint_scars(rng, slope, down_row, down_col, pixel_m, max(4, int(scars_per_km2 * area_km2)))
    fields, river = paint_look_alikes(rng, slope, dem, pixel_m)
    scars &= ~river
    image = render_reflectance(rng, dem, slope, hillshade, scars, fresh, fields, river)
    footprint = scene_footprint(size_px, rotation_deg)
    transform = from_origin(origin_xy[0], origin_xy[1], pixel_m, pixel_m)
    crs = f"EPSG:{epsg}"

    paths = Landscape(out_dir / "reflectance.tif", out_dir / "dem.tif", out_dir / "truth_mask.tif",
                      out_dir / "truth.gpkg", float(scars[footprint].mean()))
    dn = np.where(footprint[None], np.round(image * 1e4), 0).astype(np.uint16)
    write_raster(paths.reflectance, dn, transform, crs, nodata=0, descriptions=BANDS)
    truth = np.where(footprint, scars.astype(np.uint8), 255).astype(np.uint8)
    write_raster(paths.truth_mask, truth[None], transform, crs, nodata=255)
    factor = max(1, int(round(dem_pixel_m / pixel_m)))
    coarse = dem[: size_px // factor * factor, : size_px // factor * factor]
    coarse = coarse.reshape(size_px // factor, factor, size_px // factor, factor).mean(axis=(1, 3))
    write_raster(paths.dem, coarse[None].astype(np.float32), from_origin(origin_xy[0], origin_xy[1], pixel_m * factor, pixel_m * factor),
                 crs, nodata=-9999.0)
    write_truth_polygons(paths.truth_polygons, scars & footprint, transform, crs)
    return paths


def write_raster(path: Path, data: np.ndarray, transform, crs, *, nodata, descriptions=None) -> None:
    """(C, H, W) array -> tiled, deflate-compressed GeoTIFF, written atomically."""
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype.name,
                   crs=crs, transform=transform, nodata=nodata, tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate", predictor=2 if data.dtype.kind in "ui" else 3)
    with atomic_output(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, name)


def write_truth_polygons(path: Path, mask: np.ndarray, transform, crs) -> None:
    import geopandas as gpd
    from rasterio.features import shapes
    from shapely.geometry import shape

    geoms = [shape(g) for g, v in shapes(mask.astype(np.uint8), mask=mask, transform=transform) if v == 1]
    frame = gpd.GeoDataFrame({"id": np.arange(1, len(geoms) + 1)}, geometry=geoms, crs=crs)
    with atomic_output(path) as tmp:
        frame.to_file(tmp, layer="landslides", driver="GPKG")


def truth_scores(mask_path: str | os.PathLike, truth_path: str | os.PathLike) -> dict[str, float]:
    """IoU, precision, recall and F1 of the landslide class of a mapped mask against a ground-truth
    mask (nodata 255 in either is left out); the truth is resampled (nearest) onto the map's grid,
    so a map made through orthorectification on another grid is scored too."""
    from rasterio.warp import Resampling, reproject

    with rasterio.open(mask_path) as src:
        mapped = src.read(1)
        truth = np.full(mapped.shape, 255, np.uint8)
        with rasterio.open(truth_path) as ref:
            reproject(rasterio.band(ref, 1), truth, dst_transform=src.transform, dst_crs=src.crs,
                      dst_nodata=255, resampling=Resampling.nearest)
    scored = (mapped != 255) & (truth != 255)
    predicted, actual = (mapped == 1) & scored, (truth == 1) & scored
    tp = int((predicted & actual).sum())
    fp = int((predicted & ~actual).sum())
    fn = int((~predicted & actual).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "iou_landslide": tp / (tp + fp + fn) if tp + fp + fn else 1.0,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "pixels_scored": int(scored.sum()),
        "truth_landslide_fraction": float(actual.sum() / max(1, scored.sum())),
    }
