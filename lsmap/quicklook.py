"""Quicklooks: a natural-colour picture of a scene with the landslide outlines drawn on it.

Readable at 1600 px wide for a scene of any size: the scene is read *decimated*
(``rasterio`` ``out_shape``, which GDAL serves from the overviews when the file has them), so a
20,000 x 20,000 px scene never exists at full resolution in memory. Two products per scene:

- ``quicklook.png``: 1600 px wide, percentile-stretched natural colour, landslide outlines
  (landslides too small to outline at this scale are marked with a dot), a scale bar in true
  ground metres (geodesic, also for EPSG:4326 scenes), a north arrow pointing to true north,
  the acquisition date and the scene id;
- ``quicklook.tif``: the same stretched picture as a small georeferenced RGB COG (outlines
  burned in) for a GIS.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, Resampling

from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output

QUICKLOOK_WIDTH_PX = 1600
STRETCH_PERCENTILES = (2.0, 98.0)
# Contract of the analysis-ready scene (README "Mapping"): 4 bands blue, green, red, nir.
ARD_RGB_BANDS = (3, 2, 1)
OUTLINE_RGB = (255, 40, 40)
# A landslide narrower than this many display pixels is drawn as a dot rather than an outline.
MIN_OUTLINE_PX = 4.0
# GDAL's block cache defaults to 5 % of RAM; a decimated read needs little of it.
GDAL_CACHE_MB = 256


@dataclass(frozen=True)
class DecimatedScene:
    """A scene read at display resolution.

    rgb: (H, W, 3) float32 in 0..1 after the percentile stretch; NaN where the scene has no data.
    transform: affine of the decimated grid in ``crs`` (pixel -> map coordinates).
    """

    rgb: np.ndarray
    transform: Affine
    crs: rasterio.crs.CRS
    full_shape: tuple[int, int]

    @property
    def valid(self) -> np.ndarray:
        return ~np.isnan(self.rgb[..., 0])


def rgb_band_indexes(src: rasterio.io.DatasetReader) -> tuple[int, int, int]:
    """1-based (red, green, blue) band indexes: from the band descriptions or the colour
    interpretation when they name them, else the ARD contract (blue, green, red, nir) for 4+
    bands, else bands 1-3 as RGB."""
    names = [(d or "").strip().lower() for d in src.descriptions]
    if all(n in names for n in ("red", "green", "blue")):
        return tuple(names.index(n) + 1 for n in ("red", "green", "blue"))
    interp = list(src.colorinterp)
    wanted = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in interp for c in wanted):
        return tuple(interp.index(c) + 1 for c in wanted)
    if src.count >= 4:
        return ARD_RGB_BANDS
    if src.count == 3:
        return (1, 2, 3)
    if src.count in (1, 2):
        return (1, 1, 1)
    raise LsmapError(f"{src.name}: no bands to draw")


def display_shape(height: int, width: int, max_width: int) -> tuple[int, int]:
    """(rows, cols) of the decimated read: at most ``max_width`` wide, aspect kept, never upsampled."""
    scale = min(1.0, max_width / width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def percentile_stretch(bands: np.ndarray, valid: np.ndarray,
                       percentiles: tuple[float, float] = STRETCH_PERCENTILES) -> np.ndarray:
    """(3, H, W) any dtype -> (H, W, 3) float32 in 0..1, each band stretched between its own
    percentiles of the valid pixels; NaN outside ``valid``."""
    out = np.full(bands.shape[1:] + (3,), np.nan, dtype=np.float32)
    if not valid.any():
        return out
    for i, band in enumerate(bands):
        values = band[valid].astype(np.float32)
        low, high = np.percentile(values, percentiles)
        span = max(float(high - low), 1e-6)
        out[..., i][valid] = np.clip((values - low) / span, 0.0, 1.0)
    return out


def read_decimated_bands(image: str | os.PathLike, max_width: int = QUICKLOOK_WIDTH_PX):
    """(red, green, blue) of ``image`` at most ``max_width`` px wide, as read (no stretch).

    Returns (masked (3, H, W) array, decimated transform, crs, full (rows, cols)). Reads through
    ``out_shape`` with average resampling, so GDAL serves it from the nearest overview level and
    the cost is the overview's size, not the scene's; without overviews GDAL still streams the
    full-resolution blocks through its (capped) block cache rather than holding the scene.
    """
    image = Path(image)
    if not image.exists():
        raise LsmapError(f"{image}: scene image not found")
    try:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(image) as src:
            if src.crs is None or src.transform.is_identity:
                raise LsmapError(f"{image}: scene is not georeferenced (no CRS or transform)")
            bands = rgb_band_indexes(src)
            rows, cols = display_shape(src.height, src.width, max_width)
            data = src.read(bands, out_shape=(3, rows, cols), resampling=Resampling.average, masked=True)
            transform = src.transform @ Affine.scale(src.width / cols, src.height / rows)
            return data, transform, src.crs, (src.height, src.width)
    except rasterio.errors.RasterioError as exc:
        raise LsmapError(f"{image}: cannot read scene ({exc})") from exc


def read_decimated_scene(image: str | os.PathLike, max_width: int = QUICKLOOK_WIDTH_PX) -> DecimatedScene:
    """The natural-colour bands of ``image`` at most ``max_width`` px wide, percentile-stretched."""
    data, transform, crs, full_shape = read_decimated_bands(image, max_width)
    valid = ~np.ma.getmaskarray(data).any(axis=0)
    rgb = percentile_stretch(np.ma.getdata(data), valid)
    return DecimatedScene(rgb=rgb, transform=transform, crs=crs, full_shape=full_shape)


# --- landslide polygons -------------------------------------------------------------------------

def read_landslides(path: str | os.PathLike | None, crs) -> "geopandas.GeoDataFrame | None":  # noqa: F821
    """The scene's landslide polygons in the scene CRS, or None when there is no file."""
    if path is None:
        return None
    import geopandas as gpd

    path = Path(path)
    if not path.exists():
        raise LsmapError(f"{path}: landslide polygons not found")
    try:
        gdf = gpd.read_file(path, layer="landslides", engine="pyogrio")
    except Exception as exc:  # pyogrio raises DataSourceError / DataLayerError
        raise LsmapError(f"{path}: cannot read layer 'landslides' ({str(exc).splitlines()[0]})") from exc
    if len(gdf) and gdf.crs is None:
        raise LsmapError(f"{path}: landslide layer has no CRS")
    return gdf.to_crs(crs) if len(gdf) else gdf


def polygons_in_pixels(gdf, transform: Affine) -> tuple[list[np.ndarray], np.ndarray]:
    """Outline rings as (N, 2) arrays of (col, row) display pixels, and the (M, 2) centroids of
    the polygons too small to outline at this scale (< MIN_OUTLINE_PX across)."""
    import shapely

    if gdf is None or not len(gdf):
        return [], np.zeros((0, 2))
    inverse = ~transform
    geoms = shapely.transform(gdf.geometry.values, lambda xy: np.column_stack(inverse @ (xy[:, 0], xy[:, 1])))
    xmin, ymin, xmax, ymax = shapely.bounds(geoms).T
    small = np.maximum(xmax - xmin, ymax - ymin) < MIN_OUTLINE_PX
    rings = []
    for geom in geoms[~small]:
        for part in shapely.get_parts(geom):
            rings.append(shapely.get_coordinates(part.exterior))
            rings.extend(shapely.get_coordinates(hole) for hole in part.interiors)
    dots = shapely.get_coordinates(shapely.centroid(geoms[small])) if small.any() else np.zeros((0, 2))
    return rings, dots


# --- map furniture: scale bar and north arrow ---------------------------------------------------

def ground_metres_per_pixel(transform: Affine, crs, shape: tuple[int, int]) -> float:
    """True ground distance (m, WGS84 geodesic) per display pixel along the middle row.

    Geodesic so that an EPSG:4326 scene (pixel size in degrees) gets a scale bar in metres too.
    """
    from pyproj import Geod, Transformer

    rows, cols = shape
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    xs, ys = transform @ (np.array([0.0, cols]), np.array([rows / 2, rows / 2]))
    lon, lat = to_lonlat.transform(xs, ys)
    distance_m = Geod(ellps="WGS84").inv(lon[0], lat[0], lon[1], lat[1])[2]
    return distance_m / cols


def nice_scale_length_m(max_length_m: float) -> float:
    """The largest 1, 2 or 5 x 10^n metres not above ``max_length_m``."""
    exponent = math.floor(math.log10(max_length_m))
    for mantissa in (5, 2, 1):
        if mantissa * 10**exponent <= max_length_m:
            return float(mantissa * 10**exponent)
    return float(10**exponent)


def format_distance(metres: float) -> str:
    return f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"


def true_north_angle_deg(transform: Affine, crs, shape: tuple[int, int]) -> float:
    """Angle of true north at the scene centre, degrees clockwise from the display's up.

    Differs from 0 by the grid convergence in projected CRSs (about 1-2 degrees near UTM zone edges).
    """
    from pyproj import Transformer

    rows, cols = shape
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x0, y0 = transform @ (cols / 2, rows / 2)
    lon, lat = to_lonlat.transform(x0, y0)
    x1, y1 = to_crs.transform(lon, min(lat + 0.01, 89.99))
    col0, row0 = ~transform @ (x0, y0)
    col1, row1 = ~transform @ (x1, y1)
    return math.degrees(math.atan2(col1 - col0, -(row1 - row0)))


# --- the PNG ------------------------------------------------------------------------------------

def caption_lines(scene_id: str, acquired: str | None, n_landslides: int, crs) -> list[str]:
    crs_name = crs.to_string() if crs is not None else "unknown CRS"
    return [
        scene_id,
        f"acquired {acquired or 'date unknown'}",
        f"{n_landslides} landslide{'s' if n_landslides != 1 else ''} · {crs_name}",
    ]


def draw_scale_bar(ax, figure_width_m: float) -> None:
    """A four-segment black/white bar, about a fifth of the figure wide, bottom left.

    ``figure_width_m``: ground metres that the figure's full width spans at the image's scale.
    """
    from matplotlib.patches import Rectangle

    length_m = nice_scale_length_m(0.22 * figure_width_m)
    frac = length_m / figure_width_m
    x0, y0 = 0.03, 0.035
    ax.add_patch(Rectangle((x0 - 0.02, y0 - 0.02), frac + 0.06, 0.075, transform=ax.figure.transFigure,
                           facecolor="white", alpha=0.8, edgecolor="none", zorder=5, clip_on=False))
    for i in range(4):
        ax.add_patch(Rectangle((x0 + i * frac / 4, y0), frac / 4, 0.012, transform=ax.figure.transFigure,
                               facecolor="black" if i % 2 == 0 else "white", edgecolor="black",
                               linewidth=0.8, zorder=6, clip_on=False))
    ax.text(x0, y0 + 0.02, "0", transform=ax.figure.transFigure, fontsize=11, ha="center", zorder=6)
    ax.text(x0 + frac, y0 + 0.02, format_distance(length_m), transform=ax.figure.transFigure, fontsize=11,
            ha="center", zorder=6)


def draw_north_arrow(ax, angle_deg: float, aspect: float) -> None:
    """An arrow towards true north with an N, top right. ``aspect`` = figure width / height, so
    that the arrow's angle and the disc are true on screen (figure fractions are anisotropic)."""
    from matplotlib.patches import Ellipse

    r = 0.03
    cx, cy = 0.955, 1 - 0.05 * aspect
    dx, dy = math.sin(math.radians(angle_deg)) * r, math.cos(math.radians(angle_deg)) * r * aspect
    ax.add_patch(Ellipse((cx, cy), 2 * 1.55 * r, 2 * 1.55 * r * aspect, transform=ax.figure.transFigure,
                         facecolor="white", alpha=0.8, edgecolor="none", zorder=5, clip_on=False))
    ax.annotate("", xy=(cx + dx * 0.8, cy + dy * 0.8), xytext=(cx - dx, cy - dy), xycoords="figure fraction",
                arrowprops=dict(arrowstyle="-|>,head_width=0.5,head_length=1.0", color="black", lw=2.5),
                zorder=6)
    ax.text(cx + dx * 1.2, cy + dy * 1.2, "N", transform=ax.figure.transFigure, fontsize=13,
            fontweight="bold", ha="center", va="center", zorder=6)


def figure_height_px(rows: int, cols: int, width_px: int) -> int:
    """Height that keeps the scene's aspect, within 0.4 - 3 x the width (letterboxed beyond)."""
    return int(np.clip(round(width_px * rows / cols), 0.4 * width_px, 3 * width_px))


def render_quicklook_png(scene: DecimatedScene, gdf, out_png: str | os.PathLike, scene_id: str,
                         acquired: str | None, width_px: int = QUICKLOOK_WIDTH_PX) -> None:
    """Draw the stretched scene, outlines, scale bar, north arrow and caption into a PNG
    exactly ``width_px`` wide."""
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib import patheffects

    rows, cols = scene.rgb.shape[:2]
    dpi = 100
    height_px = figure_height_px(rows, cols, width_px)
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi,
                 facecolor="#202020")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_facecolor("#202020")
    rgba = np.dstack([np.nan_to_num(scene.rgb, nan=0.0), scene.valid.astype(np.float32)])
    ax.imshow(rgba, extent=(0, cols, rows, 0), interpolation="antialiased", zorder=1)
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_aspect("equal")

    rings, dots = polygons_in_pixels(gdf, scene.transform)
    halo = [patheffects.Stroke(linewidth=3.2, foreground="black", alpha=0.7), patheffects.Normal()]
    outline_colour = tuple(c / 255 for c in OUTLINE_RGB)
    if rings:
        lines = LineCollection(rings, colors=[outline_colour], linewidths=1.4, zorder=3)
        lines.set_path_effects(halo)
        ax.add_collection(lines)
    if len(dots):
        ax.scatter(dots[:, 0], dots[:, 1], s=14, c=[outline_colour], edgecolors="black",
                   linewidths=0.6, zorder=3)

    # The axes are letterboxed when the aspect is extreme: furniture goes in figure coordinates.
    image_width_fraction = min(1.0, height_px / width_px * cols / rows)
    image_width_m = ground_metres_per_pixel(scene.transform, scene.crs, (rows, cols)) * cols
    draw_scale_bar(ax, image_width_m / image_width_fraction)
    draw_north_arrow(ax, true_north_angle_deg(scene.transform, scene.crs, (rows, cols)), width_px / height_px)
    n = 0 if gdf is None else len(gdf)
    ax.text(0.015, 0.985, "\n".join(caption_lines(scene_id, acquired, n, scene.crs)),
            transform=ax.figure.transFigure, va="top", ha="left", fontsize=13, linespacing=1.4, zorder=6,
            bbox=dict(boxstyle="round,pad=0.5", facecolor="white", alpha=0.85, edgecolor="none"))
    ax.text(0.985, 0.015, "landslide outline (red); dots: too small to outline at this scale",
            transform=ax.figure.transFigure, va="bottom", ha="right", fontsize=10, zorder=6,
            bbox=dict(boxstyle="round,pad=0.4", facecolor="white", alpha=0.8, edgecolor="none"))
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", facecolor=fig.get_facecolor())


# --- the small COG ------------------------------------------------------------------------------

def burn_outlines(rgb8: np.ndarray, gdf, transform: Affine) -> np.ndarray:
    """(H, W, 3) uint8 with the polygon boundaries (and small polygons' centroids) burned in red."""
    import shapely
    from rasterio.features import rasterize

    if gdf is None or not len(gdf):
        return rgb8
    shapes = [g for g in shapely.boundary(gdf.geometry.values) if g is not None and not g.is_empty]
    shapes += [g for g in shapely.centroid(gdf.geometry.values)]
    burned = rasterize(shapes, out_shape=rgb8.shape[:2], transform=transform, all_touched=True,
                       dtype="uint8")
    out = rgb8.copy()
    out[burned.astype(bool)] = OUTLINE_RGB
    return out


def write_quicklook_cog(scene: DecimatedScene, gdf, out_tif: str | os.PathLike) -> None:
    """3-band uint8 RGB COG (DEFLATE, internal overviews, nodata 0 outside the scene)."""
    rgb8 = (np.nan_to_num(scene.rgb, nan=0.0) * 254 + 1).round().astype(np.uint8)  # 1..255: 0 is nodata
    rgb8 = burn_outlines(rgb8, gdf, scene.transform)
    rgb8[~scene.valid] = 0
    rows, cols = rgb8.shape[:2]
    profile = dict(driver="COG", width=cols, height=rows, count=3, dtype="uint8", crs=scene.crs,
                   transform=scene.transform, nodata=0, compress="DEFLATE", blocksize=256,
                   overview_resampling="average")
    with atomic_output(out_tif) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.moveaxis(rgb8, -1, 0))
        dst.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)


# --- entry point --------------------------------------------------------------------------------

def acquisition_date(image: str | os.PathLike, gdf, acquired: str | None,
                     landslides: str | os.PathLike | None = None) -> str | None:
    """The acquisition date to print: given, else the polygons' ``acquired``, else the mapping
    provenance in ``scene_stats.json`` beside the polygons (a scene without landslides), else the
    image's TIFF tags (``ACQUIRED``/``ACQUISITION_DATE``/``TIFFTAG_DATETIME``), else None."""
    if acquired:
        return str(acquired)
    if gdf is not None and len(gdf) and "acquired" in gdf.columns:
        value = gdf["acquired"].dropna()
        value = value[value.astype(str) != ""]
        if len(value):
            return str(value.iloc[0])[:10]
    if landslides is not None and (Path(landslides).parent / "scene_stats.json").exists():
        import json

        try:
            scenes = json.loads((Path(landslides).parent / "scene_stats.json").read_text())["provenance"]["scenes"]
            if scenes and scenes[0].get("acquired"):
                return str(scenes[0]["acquired"])[:10]
        except (ValueError, KeyError, TypeError):
            pass  # a malformed sidecar only costs the date on the picture
    with rasterio.open(image) as src:
        tags = {k.upper(): v for k, v in src.tags().items()}
    for key in ("ACQUIRED", "ACQUISITION_DATE", "ACQUISITION_TIME", "TIFFTAG_DATETIME"):
        if tags.get(key):
            return tags[key].replace(":", "-", 2)[:10] if key == "TIFFTAG_DATETIME" else tags[key][:10]
    return None


def default_scene_id(image: str | os.PathLike) -> str:
    """results/<region>/<scene>/ard/reflectance.tif -> <scene>; any other file -> its stem."""
    path = Path(image)
    if path.stem == "reflectance":
        return (path.parent.parent if path.parent.name == "ard" else path.parent).name
    return path.stem


def make_quicklook(image: str | os.PathLike, landslides: str | os.PathLike | None,
                   out_png: str | os.PathLike, out_tif: str | os.PathLike | None = None,
                   scene_id: str | None = None, acquired: str | dt.date | None = None,
                   width_px: int = QUICKLOOK_WIDTH_PX) -> dict:
    """Render the quicklook PNG (and the small COG) of one scene; returns what was drawn."""
    scene = read_decimated_scene(image, max_width=width_px)
    gdf = read_landslides(landslides, scene.crs)
    scene_id = scene_id or default_scene_id(image)
    date = acquisition_date(image, gdf, None if acquired is None else str(acquired), landslides)
    render_quicklook_png(scene, gdf, out_png, scene_id, date, width_px=width_px)
    if out_tif is not None:
        write_quicklook_cog(scene, gdf, out_tif)
    return {"scene_id": scene_id, "acquired": date, "landslides": 0 if gdf is None else len(gdf),
            "display_shape": scene.rgb.shape[:2], "full_shape": scene.full_shape}
