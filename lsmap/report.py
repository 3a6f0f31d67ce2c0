"""Self-contained HTML reports: one page per region, one for the training benchmark.

Each page is a single file that opens offline: images are embedded as base64 ``data:`` URLs, the
landslide polygons as GeoJSON in a ``<script type="application/json">`` block, and the map is
drawn client-side as inline SVG (pan with the mouse, zoom with the wheel or the buttons, hover
or click a polygon for its attributes). A strict Content-Security-Policy (``default-src 'none'``,
images only from ``data:``) guarantees that opening the page never makes a network request.

Also here: :func:`check_in_chromium`, which loads a report in headless Chromium through the
DevTools protocol (``--remote-debugging-pipe``, no extra dependency), records script errors and
every network request, reads the page text and takes a screenshot.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import lsmap
from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output
from lsmap.stats import SUMMARY_KEYS

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
SUMMARY_LABELS = {
    "landslide_count": "Landslides",
    "landslide_area_km2": "Landslide area (km²)",
    "observed_area_km2": "Observed area (km²)",
    "unobserved_area_km2": "Unobserved area (km²)",
    "areal_density_pct": "Areal density (%)",
    "count_density_per_km2": "Landslides per km²",
}
QUICKLOOK_JPEG_QUALITY = 85
MAP_COORD_DECIMALS = 6  # about 0.1 m: the map is for looking, the exports keep 7 decimals
# Polygons drawn on the page's map: 20,000 draw in about 2 s (benchmarks/render_reports.py --stress);
# a region's 200,000 would make a 150 MB page and hold 1.5 GB while it is written. Beyond it the
# map draws the largest ones and says so; every landslide stays in the exports and the statistics.
MAP_MAX_POLYGONS = 20_000


# --- small helpers ------------------------------------------------------------------------------

def esc(value) -> str:
    return html.escape(str(value), quote=True)


def fmt_number(value, decimals: int = 2) -> str:
    """Thousands separators, fixed decimals; integers stay integers; missing -> an en dash."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != number:  # NaN
        return "–"
    return f"{number:,.{decimals}f}"


def fmt_quantity(value) -> str:
    """A measured quantity with at least 3 significant digits: 1,234.5 / 12.3 / 1.23 / 0.00201
    (a 2,010 m² landslide area is 0.00201 km², not 0.002)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return fmt_number(value)
    if number != number:
        return "–"
    if abs(number) >= 10:
        return f"{number:,.1f}"
    if abs(number) >= 1 or number == 0:
        return f"{number:.2f}"
    return f"{number:.3g}"


def data_url(path: str | os.PathLike, jpeg: bool = False) -> str:
    """A file as a base64 ``data:`` URL; ``jpeg`` re-encodes a (large) PNG to keep the page small."""
    path = Path(path)
    if not path.exists():
        raise LsmapError(f"{path}: image for the report not found")
    if jpeg:
        from PIL import Image

        with Image.open(path) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=QUICKLOOK_JPEG_QUALITY, optimize=True)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
    kind = mime.get(path.suffix.lower())
    if kind is None:
        raise LsmapError(f"{path}: cannot embed a {path.suffix} file as an image")
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def figure_data_url(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def json_for_script(obj) -> str:
    """JSON safe inside ``<script type="application/json">``: no '</' can close the element."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise LsmapError(f"{path}: not found") from exc
    except (OSError, ValueError) as exc:
        raise LsmapError(f"{path}: not valid JSON ({exc})") from exc


def read_csv_rows(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except FileNotFoundError as exc:
        raise LsmapError(f"{path}: not found") from exc


def html_table(headers: list[str] | None, rows: list[list[str]], cls: str = "") -> str:
    """A table of escaped text cells; no header row when ``headers`` is None."""
    head = "" if headers is None else "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>"
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{esc(cls)}">{head}<tbody>{body}</tbody></table>'


# --- region report: inputs ----------------------------------------------------------------------

def validate_region_stats(stats: dict, source: str) -> dict:
    """Check the stats.json contract (region, provenance, summary, scenes, frequency_area)."""
    for key in ("region", "provenance", "summary", "scenes"):
        if key not in stats:
            raise LsmapError(f"{source}: missing key '{key}'")
    missing = [k for k in SUMMARY_KEYS if k not in stats["summary"]]
    if missing:
        raise LsmapError(f"{source}: summary lacks {', '.join(missing)}")
    return stats


def scene_footprints_geojson(rasters: dict[str, str | os.PathLike]) -> dict:
    """Per scene, in lon/lat for the map: its raster extent (kind "extent") and its valid-data
    footprint (kind "observed", lsmap.stats.valid_footprint on a decimated read of the mask), so
    that the unobserved part of a scene shows on the map as extent minus observed."""
    import rasterio
    import shapely
    from pyproj import CRS
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping

    from lsmap.stats import valid_footprint

    features = []
    for scene_id, path in rasters.items():
        try:
            with rasterio.open(path) as src:
                extent = shapely.segmentize(box(*src.bounds), max(src.res) * max(src.width, src.height) / 32)
                extent_lonlat = transform_geom(src.crs, "EPSG:4326", mapping(extent), precision=MAP_COORD_DECIMALS)
            observed = valid_footprint(path, CRS.from_epsg(4326))
        except rasterio.errors.RasterioError as exc:
            raise LsmapError(f"{path}: cannot read scene extent ({exc})") from exc
        # Staircase edges of the decimated mask: simplify to ~1/1000 of the extent's size.
        minx, miny, maxx, maxy = shapely.geometry.shape(extent_lonlat).bounds
        observed = shapely.set_precision(shapely.simplify(observed, max(maxx - minx, maxy - miny) / 1000), 1e-6)
        features.append({"type": "Feature", "properties": {"scene_id": scene_id, "kind": "extent"},
                         "geometry": extent_lonlat})
        if not observed.is_empty:
            features.append({"type": "Feature", "properties": {"scene_id": scene_id, "kind": "observed"},
                             "geometry": mapping(observed)})
    return {"type": "FeatureCollection", "features": features}


def landslides_geojson_for_map(geojson_path: str | os.PathLike | None,
                               landslides_gpkg: str | os.PathLike | None,
                               max_polygons: int = MAP_MAX_POLYGONS) -> dict:
    """The polygons in lon/lat for the map: the region's exported GeoJSON when given, else made
    from the GeoPackage through lsmap.export (the same RFC 7946 writer). At most ``max_polygons``
    of them (see :func:`largest_for_map`); the collection then carries ``lsmap_map_subset``."""
    if geojson_path is None:
        if landslides_gpkg is None:
            return {"type": "FeatureCollection", "features": []}
        from lsmap.export import read_region_landslides, write_geojson

        with tempfile.TemporaryDirectory() as tmp:
            geojson_path = Path(tmp) / "landslides.geojson"
            write_geojson(read_region_landslides(landslides_gpkg), geojson_path)
            return read_map_geojson(geojson_path, max_polygons)
    return read_map_geojson(geojson_path, max_polygons)


def read_map_geojson(path: str | os.PathLike, max_polygons: int) -> dict:
    """The GeoJSON as dicts (coordinates rounded) when it has at most ``max_polygons`` features, else
    only its largest (:func:`largest_for_map`), without parsing the whole file into Python objects."""
    import pyogrio

    try:
        count = int(pyogrio.read_info(path)["features"])
    except Exception as exc:  # pyogrio's DataSourceError: not GeoJSON
        raise LsmapError(f"{path}: cannot read the landslide GeoJSON ({str(exc).splitlines()[0]})") from exc
    if count <= max_polygons:
        return round_geojson(read_json(path))
    return round_geojson(largest_for_map(path, max_polygons, count))


def largest_for_map(path: str | os.PathLike, max_polygons: int, count: int) -> dict:
    """The ``max_polygons`` largest features of a GeoJSON (by ``area_m2``, ties in file order), in
    file order, read through GDAL (shapely geometries, ~1 KB a polygon, not ~8 KB of dicts) with
    attributes as written (dates kept as strings). ``lsmap_map_subset``: drawn, total, smallest
    area drawn (m2)."""
    import numpy as np
    import pyogrio

    frame = pyogrio.read_dataframe(path, DATE_AS_STRING="YES")
    if "area_m2" in frame:
        areas = frame["area_m2"].to_numpy(dtype=float)
    else:  # ranking only: degrees² order the polygons of one region well enough
        areas = frame.geometry.area.to_numpy()
    largest = np.argsort(-areas, kind="stable")[:max_polygons]
    subset = frame.iloc[np.sort(largest)]
    collection = json.loads(subset.to_json(na="null", drop_id=True))
    collection["lsmap_map_subset"] = {"drawn": len(subset), "total": count, "min_area_m2": float(areas[largest[-1]])}
    return collection


def map_subset_note(landslides: dict) -> str:
    """One line under the map when it draws only the largest landslides ('' when it draws all)."""
    subset = landslides.pop("lsmap_map_subset", None)
    if not subset:
        return ""
    return (f'<p class="note">The map draws the {subset["drawn"]:,} largest of the region\'s {subset["total"]:,} '
            f'landslides (those of at least {fmt_number(subset["min_area_m2"], 0)} m²), so that the page stays small '
            "and quick; every landslide is in the statistics and in landslides.geojson / landslides.kml.</p>")


def round_geojson(collection: dict, decimals: int = MAP_COORD_DECIMALS) -> dict:
    """Coordinates rounded to ``decimals`` (keeps the embedded map small)."""
    def round_coords(coords):
        if coords and isinstance(coords[0], (int, float)):
            return [round(c, decimals) for c in coords]
        return [round_coords(c) for c in coords]

    for feature in collection.get("features", []):
        geometry = feature.get("geometry")
        if geometry:
            geometry["coordinates"] = round_coords(geometry["coordinates"])
    collection.pop("xy_coordinate_resolution", None)
    return collection


# --- region report: sections --------------------------------------------------------------------

def summary_cards(summary: dict) -> str:
    cards = [
        ("Landslides", fmt_number(int(summary["landslide_count"])), "landslide_count"),
        ("Landslide area", f"{fmt_quantity(summary['landslide_area_km2'])} km²", "landslide_area_km2"),
        ("Areal density", f"{fmt_quantity(summary['areal_density_pct'])} %", "areal_density_pct"),
        ("Observed", f"{fmt_quantity(summary['observed_area_km2'])} km²", "observed_area_km2"),
        ("Unobserved", f"{fmt_quantity(summary['unobserved_area_km2'])} km²", "unobserved_area_km2"),
    ]
    return "".join(f'<div class="card" data-key="{key}"><div class="value">{esc(value)}</div>'
                   f'<div class="label">{esc(label)}</div></div>' for label, value, key in cards)


def summary_row(name: str, values: dict) -> list[str]:
    return [name] + [fmt_number(int(values[k])) if k == "landslide_count" else
                     fmt_quantity(values.get(k)) for k in SUMMARY_KEYS]


def stats_table(stats: dict) -> str:
    rows = [summary_row(f"{stats['region']} (all scenes)", stats["summary"])]
    rows += [summary_row(scene_id, values) for scene_id, values in stats["scenes"].items()]
    return html_table(["Scene"] + [SUMMARY_LABELS[k] for k in SUMMARY_KEYS], rows, cls="stats")


def unobserved_note(summary: dict) -> str:
    observed, unobserved = float(summary["observed_area_km2"]), float(summary["unobserved_area_km2"])
    total = observed + unobserved
    share = 100 * unobserved / total if total > 0 else 0.0
    return (f'<p class="note" id="unobserved-note"><strong>{fmt_quantity(unobserved)} km² '
            f'({share:.1f} %) of the scenes\' extent was not observed</strong> (no valid image data: '
            f'outside the imaged strip, nodata or masked pixels). Landslides there are unknown, not '
            f'absent; densities are per observed km².</p>')


def frequency_area_section(stats: dict, plot_png: str | os.PathLike | None) -> str:
    parts = []
    if plot_png is not None:
        parts.append(f'<img class="plot" alt="frequency-area distribution" src="{data_url(plot_png)}">')
    fa = stats.get("frequency_area")
    if fa and fa.get("counts"):
        edges = fa["bin_edges_m2"]
        rows = [[f"{fmt_number(edges[i], 0)} – {fmt_number(edges[i + 1], 0)}", fmt_number(int(c))]
                for i, c in enumerate(fa["counts"])]
        parts.append("<details><summary>Bins</summary>"
                     + html_table(["Area (m²)", "Landslides"], rows, cls="bins") + "</details>")
    return "".join(parts) or "<p>No frequency–area data.</p>"


def provenance_section(stats: dict) -> str:
    prov = stats["provenance"]
    rows = [[label, prov.get(key, "–")] for label, key in (
        ("lsmap version", "lsmap_version"), ("Model checkpoint", "checkpoint"),
        ("Checkpoint SHA-256", "checkpoint_sha256"), ("Configuration SHA-256", "config_sha256"),
        ("Statistics created (UTC)", "created_utc"))]
    rows.append(["Area CRS", stats.get("area_crs", "–")])
    scenes = [[s.get("scene_id") or "–", s.get("acquired") or "–", s.get("image") or "–"]
              for s in prov.get("scenes", [])]
    return (html_table(None, rows, cls="provenance")
            + "<h3>Scenes</h3>" + html_table(["Scene", "Acquired", "Image"], scenes, cls="scenes"))


def quicklook_section(quicklooks: dict[str, str | os.PathLike], stats: dict) -> str:
    if not quicklooks:
        return "<p>No quicklooks.</p>"
    acquired = scene_acquisitions(stats)
    figures = []
    for scene_id, path in quicklooks.items():
        caption = f"{scene_id}, acquired {acquired.get(scene_id) or 'date unknown'}"
        figures.append(f'<figure><img alt="quicklook {esc(scene_id)}" src="{data_url(path, jpeg=True)}">'
                       f"<figcaption>{esc(caption)}</figcaption></figure>")
    return "".join(figures)


# --- page skeleton ------------------------------------------------------------------------------
# The page's HTML, CSS and JavaScript live in lsmap/report_templates/ (package data) where a web
# developer can edit them; here Python only fills in data. ${name} placeholders
# (string.Template) take escaped text, the inlined CSS/JS files, or HTML fragments built below.

TEMPLATES = "report_templates"


def template_text(name: str) -> str:
    """The text of one file of lsmap/report_templates/."""
    from importlib.resources import files

    return files("lsmap").joinpath(TEMPLATES, name).read_text(encoding="utf-8")


def fill_template(name: str, **values: str) -> str:
    """A template with every ${placeholder} filled (KeyError names a missing one)."""
    from string import Template

    return Template(template_text(name)).substitute(values)


def page(title: str, subtitle: str, body: str, scripts: str = "") -> str:
    """The HTML document (page.html): CSP first, then the error hook, so even early failures are caught."""
    return fill_template("page.html", csp=CSP, version=esc(lsmap.__version__), title=esc(title), subtitle=esc(subtitle),
                         error_hook_js=template_text("error_hook.js"), page_css=template_text("page.css"),
                         body=body, scripts=scripts)


# --- the interactive map ------------------------------------------------------------------------

def map_section(landslides: dict, footprints: dict, backgrounds: list[dict] | None = None) -> tuple[str, str]:
    """(HTML for the map section, the scripts block that draws it: map.html, map_scripts.html)."""
    scripts = fill_template("map_scripts.html", landslides=json_for_script(landslides),
                            footprints=json_for_script(footprints), backgrounds=json_for_script(backgrounds or []),
                            map_js=template_text("map.js"))
    return fill_template("map.html", map_css=template_text("map.css")), scripts


# --- region report ------------------------------------------------------------------------------

def build_region_report(stats_json: str | os.PathLike, out_html: str | os.PathLike, *,
                        frequency_area_png: str | os.PathLike | None = None,
                        landslides_geojson: str | os.PathLike | None = None,
                        landslides_gpkg: str | os.PathLike | None = None,
                        quicklooks: dict[str, str | os.PathLike] | None = None,
                        scene_rasters: dict[str, str | os.PathLike] | None = None,
                        backgrounds: dict[str, str | os.PathLike] | None = None,
                        passes: list[dict] | None = None,
                        description: str | None = None) -> Path:
    """Write ``report.html`` for one region (template region.html).

    stats_json: the region's stats.json (contract in README "Mapping"); landslides_geojson: the
    exported RFC 7946 polygons (or landslides_gpkg, exported on the fly); quicklooks: scene id ->
    quicklook PNG; scene_rasters: scene id -> any raster of the scene (mask.tif), for the extents;
    backgrounds: scene id -> georeferenced picture (quicklook.tif) drawn under the polygons;
    passes: the scheduled passes (passes.json, oldest first) for the "Passes" section and the
    new-in-the-latest-pass styling.
    """
    stats = validate_region_stats(read_json(stats_json), str(stats_json))
    landslides = mark_new_landslides(landslides_geojson_for_map(landslides_geojson, landslides_gpkg), passes)
    subset_note = map_subset_note(landslides)
    footprints = scene_footprints_geojson(scene_rasters or {})
    acquired = scene_acquisitions(stats)
    map_html, map_scripts = map_section(landslides, footprints, map_backgrounds(backgrounds or {}, acquired))
    map_html += subset_note
    summary = stats["summary"]
    region = stats["region"]
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = " · ".join(filter(None, [description, f"{len(stats['scenes'])} scene(s)",
                                        f"report made {created} by lsmap {lsmap.__version__}"]))
    body = fill_template(
        "region.html", summary_cards=summary_cards(summary), unobserved_note=unobserved_note(summary), map=map_html,
        passes=passes_section(passes), stats_table=stats_table(stats), area_crs=esc(stats.get("area_crs", "an equal-area CRS")),
        frequency_area=frequency_area_section(stats, frequency_area_png),
        quicklooks=quicklook_section(quicklooks or {}, stats), provenance=provenance_section(stats))
    document = page(f"Landslides – {region}", subtitle, body, map_scripts)
    with atomic_output(out_html) as tmp:
        tmp.write_text(document, encoding="utf-8")
    return Path(out_html)


def scene_acquisitions(stats: dict) -> dict[str, str]:
    """scene id -> acquisition date/time as recorded in the provenance ('' when unknown)."""
    return {s.get("scene_id"): s.get("acquired") or "" for s in stats["provenance"].get("scenes", [])}


# --- what changed: the scheduled passes ---------------------------------------------------------

def mark_new_landslides(collection: dict, passes: list[dict] | None) -> dict:
    """With a pass list, each feature gets ``new_in_latest_pass`` (its ``landslide_id`` is among
    the latest pass's ``new_landslide_ids``); without one the features are left as they are."""
    if not passes:
        return collection
    new_ids = set(passes[-1].get("new_landslide_ids", []))
    for feature in collection.get("features", []):
        properties = feature.setdefault("properties", {})
        properties["new_in_latest_pass"] = properties.get("landslide_id") in new_ids
    return collection


def passes_section(passes: list[dict] | None) -> str:
    """The pass list, newest first: date, deliveries, new/updated/no-longer-seen landslides,
    newly observed km², failures."""
    if not passes:
        return "<p>No scheduled passes recorded (this report was made by the batch workflow).</p>"
    rows = []
    for i, item in enumerate(reversed(passes)):
        failures = "; ".join(f"{f['name']}: {f['state']} ({f['error']})" for f in item.get("failures", []))
        deliveries = item.get("deliveries", [])
        rows.append((i == 0, [item.get("started", "–")[:16].replace("T", " "), ", ".join(deliveries) or "–",
                              fmt_number(int(item.get("new_landslides", 0))), fmt_number(int(item.get("updated_landslides", 0))),
                              fmt_number(int(item.get("no_longer_seen", 0))), fmt_quantity(item.get("newly_observed_km2", 0.0)),
                              failures or "–"]))
    head = ["Pass (UTC)", "Deliveries", "New", "Updated", "No longer seen", "Newly observed (km²)", "Failures"]
    latest_row = ' class="latest"'
    body = "".join(f"<tr{latest_row if latest else ''}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>"
                   for latest, cells in rows)
    return ('<table class="passes"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{body}</tbody></table>"
            + '<p class="small">Newest first. <em>Updated</em>: a newer acquisition now stands for a known landslide; '
              "<em>no longer seen</em>: a newer clear view did not map it again (kept in the inventory's history).</p>")


# --- imagery under the polygons -----------------------------------------------------------------

BACKGROUND_MAX_PX = 1200  # per scene; the map is at most ~1400 px wide for the whole region
BACKGROUND_WEBP_QUALITY = 80


def map_backgrounds(pictures: dict[str, str | os.PathLike], acquired: dict[str, str] | None = None) -> list[dict]:
    """Each scene picture (an RGB GeoTIFF such as quicklook.tif, nodata 0) resampled onto a
    lon/lat grid, as {scene_id, acquired, href (WebP data: URL, transparent outside the data),
    west, south, east, north}. On the map's projection a lon/lat grid is axis-aligned, so four
    bounds place it exactly."""
    return [scene_background(scene_id, path, (acquired or {}).get(scene_id, "")) for scene_id, path in pictures.items()]


def scene_background(scene_id: str, path: str | os.PathLike, acquired: str = "") -> dict:
    import numpy as np
    import rasterio
    from PIL import Image
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    try:
        with rasterio.open(path) as src:
            if src.count < 3 or src.crs is None:
                raise LsmapError(f"{path}: a map background needs 3 bands and a CRS")
            scale = max(1.0, max(src.width, src.height) / BACKGROUND_MAX_PX)
            width, height = max(1, round(src.width / scale)), max(1, round(src.height / scale))
            transform, cols, rows = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds,
                                                                dst_width=width, dst_height=height)
            picture = src.read((1, 2, 3), out_shape=(3, height, width))  # from the overviews when larger
            source_transform = src.transform * src.transform.scale(src.width / width, src.height / height)
            rgb = np.zeros((3, rows, cols), np.uint8)
            reproject(picture, rgb, src_transform=source_transform, src_crs=src.crs, dst_transform=transform,
                      dst_crs="EPSG:4326", src_nodata=src.nodata if src.nodata is not None else 0, dst_nodata=0,
                      resampling=Resampling.bilinear, num_threads=2)
    except rasterio.errors.RasterioError as exc:
        raise LsmapError(f"{path}: cannot read the scene picture ({exc})") from exc
    alpha = np.where(rgb.any(axis=0), 255, 0).astype(np.uint8)  # 0 in every band = no data
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([*rgb, alpha]), "RGBA").save(buffer, format="WEBP", quality=BACKGROUND_WEBP_QUALITY, method=3)
    west, north = transform @ (0, 0)
    east, south = transform @ (cols, rows)
    return {"scene_id": scene_id, "acquired": acquired, "href": "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"),
            "west": round(west, 8), "south": round(south, 8), "east": round(east, 8), "north": round(north, 8)}


# --- benchmark report ---------------------------------------------------------------------------

METRIC_NAMES = ("recall", "precision", "f1", "pa", "iou", "miou", "accuracy", "tiles_per_s")
LOWER_IS_BETTER = ("params_m", "gflops", "seconds", "loss")


def best_direction(column: str) -> str | None:
    """'max', 'min' or None: which value of a Table-5 column is the best."""
    name = column.lower()
    if any(name.startswith(k) for k in LOWER_IS_BETTER) or "gflops" in name:
        return "min"
    if any(k in name for k in METRIC_NAMES):
        return "max"
    return None


def paper_improved_values() -> dict[str, float]:
    """The paper's published Table-5 values for the improved model (kept in lsmap.benchmark)."""
    from lsmap.benchmark import PAPER_IMPROVED

    return PAPER_IMPROVED


def best_values(rows: list[dict], columns: list[str]) -> dict[str, float]:
    """column -> its best numeric value over ``rows`` (max or min by :func:`best_direction`)."""
    best = {}
    for column in columns:
        direction = best_direction(column)
        values = []
        for row in rows:
            try:
                values.append(float(row[column]))
            except (TypeError, ValueError, KeyError):
                pass
        if direction and values:
            best[column] = max(values) if direction == "max" else min(values)
    return best


def model_table(rows: list[dict], columns: list[str], suffix: str = "", extra_rows: list[str] = ()) -> str:
    """One table of table5.csv's ``columns`` (header without ``suffix``), best per column in bold."""
    best = best_values(rows, columns)
    head = "<th>Model</th>" + "".join(f"<th>{esc(c.removesuffix(suffix).replace('_', ' '))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = [f"<td>{esc(row.get('label') or row.get('model') or next(iter(row.values())))}</td>"]
        for column in columns:
            value = row.get(column, "")
            try:
                number = float(value)
                text = fmt_number(int(value) if str(value).lstrip("-").isdigit() else number, 2)
            except (TypeError, ValueError):
                number, text = None, value
            cls = ' class="best"' if number is not None and best.get(column) == number else ""
            cells.append(f"<td{cls}>{esc(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    body.extend(extra_rows)
    return f'<table class="table5"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def table5_html(rows: list[dict]) -> str:
    """table5.csv as three tables: whole-split metrics, per-chip metrics (the paper's protocol,
    with the paper's published row for the improved model beneath ours) and cost."""
    if not rows:
        return "<p>table5.csv has no rows.</p>"
    first = next(iter(rows[0]))
    columns = [c for c in rows[0] if c not in ("model", "label", first)]
    glob = [c for c in columns if c.endswith("_global")]
    chip = [c for c in columns if c.endswith("_perchip")]
    cost = [c for c in columns if c not in glob and c not in chip]
    paper = paper_improved_values()
    paper_cells = "".join(f"<td>{paper[c.removesuffix('_perchip')]:.2f}</td>" if c.removesuffix("_perchip") in paper
                          else "<td></td>" for c in chip)
    paper_row = [f'<tr class="paper"><td>Improved DeepLabV3+ (Zhao et al. 2024, Table 5)</td>{paper_cells}</tr>']
    parts = []
    if glob:
        parts.append("<h3>Whole test split (one confusion matrix)</h3>" + model_table(rows, glob, "_global"))
    if chip:
        parts.append("<h3>Per chip (mean over chips: the paper's protocol)</h3>"
                     + model_table(rows, chip, "_perchip", paper_row))
    if cost:
        parts.append("<h3>Cost</h3>" + model_table(rows, cost))
    return "".join(parts)


def read_histories(train_dir: str | os.PathLike, models: list[str] | None = None) -> dict[str, list[dict]]:
    """model -> rows of results/train/<model>/history.csv (numbers as floats)."""
    train_dir = Path(train_dir)
    paths = ([train_dir / m / "history.csv" for m in models] if models
             else sorted(train_dir.glob("*/history.csv")))
    histories = {}
    for path in paths:
        rows = read_csv_rows(path)
        try:
            histories[path.parent.name] = [{k: float(v) for k, v in row.items() if v not in ("", None)}
                                           for row in rows]
        except ValueError as exc:
            raise LsmapError(f"{path}: non-numeric value ({exc})") from exc
    return histories


def training_curves_figure(histories: dict[str, list[dict]]):
    """Three panels over epochs: train/val loss, validation mIoU, validation landslide IoU."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.2), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3)
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    for colour, (model, rows) in zip(colours * 3, histories.items()):
        epochs = [r.get("epoch") for r in rows]
        axes[0].plot(epochs, [r.get("train_loss") for r in rows], color=colour, ls="--", lw=1)
        axes[0].plot(epochs, [r.get("val_loss") for r in rows], color=colour, lw=1.6, label=model)
        axes[1].plot(epochs, [r.get("val_miou") for r in rows], color=colour, lw=1.6, label=model)
        axes[2].plot(epochs, [r.get("val_iou_landslide") for r in rows], color=colour, lw=1.6, label=model)
    titles = ("Loss (dashed: train, solid: validation)", "Validation mIoU", "Validation IoU, landslide class")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=9)
    return fig


def build_benchmark_report(table5_csv: str | os.PathLike, out_html: str | os.PathLike, *,
                           train_dir: str | os.PathLike | None = None, models: list[str] | None = None,
                           samples_png: str | os.PathLike | None = None) -> Path:
    """Write results/benchmark/report.html: Table 5, training curves, sample predictions."""
    rows = read_csv_rows(table5_csv)
    histories = read_histories(train_dir, models) if train_dir is not None else {}
    curves = ""
    if histories:
        fig = training_curves_figure(histories)
        curves = f'<img class="plot" alt="training curves" src="{figure_data_url(fig)}">'
        last = [[m, fmt_number(int(r[-1].get("epoch", len(r)))), fmt_number(r[-1].get("val_miou"), 4),
                 fmt_number(max(x.get("val_miou", float("nan")) for x in r), 4),
                 fmt_number(sum(x.get("seconds", 0.0) for x in r) / 3600, 2)]
                for m, r in histories.items() if r]
        curves += html_table(["Model", "Epochs", "Last val mIoU", "Best val mIoU", "Training hours"], last,
                             cls="histories")
    samples = (f'<img class="plot" alt="sample predictions" src="{data_url(samples_png)}">'
               if samples_png is not None else "<p>No sample figure.</p>")
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = fill_template("benchmark.html", table5=table5_html(rows), curves=curves or "<p>No training histories.</p>",
                         samples=samples)
    document = page("lsmap benchmark: Table 5", f"report made {created} by lsmap {lsmap.__version__}", body)
    with atomic_output(out_html) as tmp:
        tmp.write_text(document, encoding="utf-8")
    return Path(out_html)


# --- checking a report in headless Chromium -----------------------------------------------------

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars")


def find_chromium() -> str | None:
    """Path of a Chromium binary (``LSMAP_CHROMIUM`` overrides), or None."""
    for candidate in (os.environ.get("LSMAP_CHROMIUM"), *CHROMIUM_CANDIDATES):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class BrowserCheck:
    """What a page did in the browser. requests: every URL the page asked for besides itself
    and data: URLs; errors: script exceptions, console errors, CSP violations."""

    url: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    text: str = ""
    attributes: dict = field(default_factory=dict)
    probes: dict = field(default_factory=dict)
    load_seconds: float = float("nan")
    screenshot: Path | None = None


class _DevToolsPipe:
    """The Chrome DevTools protocol over --remote-debugging-pipe (fd 3: commands in, fd 4:
    replies out, each JSON message ended by a NUL byte)."""

    def __init__(self, chromium: str, user_data_dir: str, width: int, height: int):
        import subprocess

        self._to_child_r, self._to_child_w = os.pipe()
        self._from_child_r, self._from_child_w = os.pipe()
        to_r, from_w = self._to_child_r, self._from_child_w

        def place_pipes_on_3_and_4():  # runs in the child between fork and exec
            import fcntl

            high_r, high_w = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        args = [chromium, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={user_data_dir}",
                f"--window-size={width},{height}", "about:blank"]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, close_fds=False,
                                        preexec_fn=place_pipes_on_3_and_4)
        os.close(to_r)
        os.close(from_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no reply from Chromium")
            ready, _, _ = select.select([self._from_child_r], [], [], remaining)
            if ready:
                chunk = os.read(self._from_child_r, 1 << 16)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float = 30.0) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def pump(self, seconds: float) -> None:
        """Collect events for ``seconds`` (network requests made late, errors)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout_s=5)
        except Exception:  # already gone: nothing to close
            pass
        try:
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()
            self.process.wait()
        os.close(self._to_child_w)
        os.close(self._from_child_r)


def check_in_chromium(html_path: str | os.PathLike, screenshot: str | os.PathLike | None = None,
                      width: int = 1400, height: int = 900, timeout_s: float = 60.0,
                      attributes: tuple[str, ...] = ("data-ready", "data-errors"),
                      probes: dict[str, str] | None = None) -> BrowserCheck:
    """Load ``html_path`` in headless Chromium; return its errors, requests, text and timing.

    ``probes``: name -> JavaScript expression, evaluated in order once the page is ready (to
    click, zoom, read back); their values land in ``result.probes``.

    The load time runs from navigation to the page's ``data-ready`` mark (set by the last script,
    after the map is drawn). The screenshot (PNG) covers the full page height (capped at 8000 px).
    """
    chromium = find_chromium()
    if chromium is None:
        raise LsmapError(f"{html_path}: no Chromium found (apt-get install chromium, or set LSMAP_CHROMIUM)")
    html_path = Path(html_path).resolve()
    url = html_path.as_uri()
    result = BrowserCheck(url=url)
    with tempfile.TemporaryDirectory(prefix="lsmap-chromium-") as profile:
        devtools = _DevToolsPipe(chromium, profile, width, height)
        try:
            target = devtools.call("Target.createTarget", {"url": "about:blank"}, timeout_s=timeout_s)
            session = devtools.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})["sessionId"]
            for domain in ("Network", "Runtime", "Log", "Page"):
                devtools.call(f"{domain}.enable", session=session)
            devtools.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                          "deviceScaleFactor": 1, "mobile": False}, session=session)
            start = time.monotonic()
            devtools.call("Page.navigate", {"url": url}, session=session, timeout_s=timeout_s)
            evaluate = lambda expression: devtools.call(  # noqa: E731
                "Runtime.evaluate", {"expression": expression, "returnByValue": True},
                session=session)["result"].get("value")
            while evaluate("document.body && document.body.getAttribute('data-ready')") != "1":
                if time.monotonic() - start > timeout_s:
                    result.errors.append(f"page not ready within {timeout_s:.0f} s")
                    break
                time.sleep(0.02)
            result.load_seconds = time.monotonic() - start
            devtools.pump(0.5)
            result.text = evaluate("document.body.innerText") or ""
            result.attributes = {a: evaluate(f"document.body.getAttribute('{a}')") for a in attributes}
            result.attributes["map-polygons"] = evaluate(
                "(document.getElementById('map')||{getAttribute:function(){return null;}}).getAttribute('data-polygons')")
            result.probes = {name: evaluate(expression) for name, expression in (probes or {}).items()}
            result.errors += [e for e in (evaluate(
                "Array.from(document.querySelectorAll('#report-errors li')).map(function(l){return l.textContent;})") or [])]
            if screenshot is not None:
                full_height = evaluate("document.documentElement.scrollHeight") or height
                devtools.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": min(int(full_height), 8000),
                              "deviceScaleFactor": 1, "mobile": False}, session=session)
                shot = devtools.call("Page.captureScreenshot", {"format": "png"}, session=session, timeout_s=timeout_s)
                with atomic_output(screenshot) as tmp:
                    tmp.write_bytes(base64.b64decode(shot["data"]))
                result.screenshot = Path(screenshot)
        except (TimeoutError, RuntimeError, OSError) as exc:
            raise LsmapError(f"{html_path}: headless Chromium failed ({exc})") from exc
        finally:
            devtools.close()
    result.errors += browser_errors(devtools.events)
    result.requests = browser_requests(devtools.events, url)
    return result


def browser_errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            errors.append("exception: " + (details.get("exception", {}).get("description") or details.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append("log: " + params["entry"].get("text", ""))
    return errors


def browser_requests(events: list[dict], page_url: str) -> list[str]:
    """URLs requested other than the page itself and data: URLs (which need no network)."""
    urls = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    return [u for u in urls if u != page_url and not u.startswith("data:")]


# --- the `lsmap report` verb --------------------------------------------------------------------

def build_region_report_from_dir(region_dir: str | os.PathLike, out_html: str | os.PathLike | None = None) -> Path:
    """A region report from the standard layout results/<region>/ (what the workflow writes):
    stats.json, frequency_area.png, landslides.geojson (else .gpkg), <scene>/quicklook.png,
    <scene>/quicklook.tif (map background), <scene>/mask.tif and passes.json (scheduled runs);
    missing optional pieces are left out of the page."""
    region_dir = Path(region_dir)
    stats = validate_region_stats(read_json(region_dir / "stats.json"), str(region_dir / "stats.json"))
    scenes = list(stats["scenes"])
    existing = lambda p: p if p.exists() else None  # noqa: E731
    geojson = existing(region_dir / "landslides.geojson")
    return build_region_report(
        region_dir / "stats.json", out_html or region_dir / "report.html",
        frequency_area_png=existing(region_dir / "frequency_area.png"),
        landslides_geojson=geojson,
        landslides_gpkg=None if geojson else existing(region_dir / "landslides.gpkg"),
        quicklooks={s: region_dir / s / "quicklook.png" for s in scenes if (region_dir / s / "quicklook.png").exists()},
        scene_rasters={s: region_dir / s / "mask.tif" for s in scenes if (region_dir / s / "mask.tif").exists()},
        backgrounds={s: region_dir / s / "quicklook.tif" for s in scenes if (region_dir / s / "quicklook.tif").exists()},
        passes=read_json(region_dir / "passes.json")["passes"] if (region_dir / "passes.json").exists() else None)


def build_parser(parser) -> None:
    sub = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    region = sub.add_parser("region", help="results/<region>/report.html from a region's results folder")
    region.add_argument("region_dir", help="the region's results folder, e.g. results/luding")
    region.add_argument("--out", help="output HTML (default: REGION_DIR/report.html)")
    bench = sub.add_parser("benchmark", help="results/benchmark/report.html: Table 5, training curves, samples")
    bench.add_argument("--benchmark-dir", default="results/benchmark")
    bench.add_argument("--train-dir", default="results/train")
    bench.add_argument("--out", help="output HTML (default: BENCHMARK_DIR/report.html)")
    quick = sub.add_parser("quicklook", help="a scene's quicklook PNG (+ small COG) with landslide outlines")
    quick.add_argument("image", help="the analysis-ready scene (any size: read through its overviews)")
    quick.add_argument("--landslides", help="the scene's landslides.gpkg")
    quick.add_argument("--png", required=True)
    quick.add_argument("--cog", help="also write a small georeferenced RGB COG")
    quick.add_argument("--scene-id")
    quick.add_argument("--acquired", help="acquisition date to print (default: from the polygons or tags)")
    check = sub.add_parser("check", help="load an HTML report in headless Chromium: errors, requests, screenshot")
    check.add_argument("html")
    check.add_argument("--screenshot", help="write a full-page PNG screenshot here")


def run(args) -> int:
    if args.what == "region":
        print(build_region_report_from_dir(args.region_dir, args.out))
    elif args.what == "benchmark":
        bench = Path(args.benchmark_dir)
        samples = bench / "samples.png"
        print(build_benchmark_report(bench / "table5.csv", args.out or bench / "report.html",
                                     train_dir=args.train_dir, samples_png=samples if samples.exists() else None))
    elif args.what == "quicklook":
        from lsmap.quicklook import make_quicklook

        drawn = make_quicklook(args.image, args.landslides, args.png, args.cog, scene_id=args.scene_id,
                               acquired=args.acquired)
        print(f"{args.png}: {drawn['landslides']} landslides drawn on {drawn['display_shape'][1]} px "
              f"of a {drawn['full_shape'][1]} px wide scene")
    elif args.what == "check":
        result = check_in_chromium(args.html, args.screenshot)
        print(f"{args.html}: ready in {result.load_seconds:.2f} s, {len(result.errors)} error(s), "
              f"{len(result.requests)} network request(s)")
        for line in result.errors + [f"request: {u}" for u in result.requests]:
            print("  " + line)
        return 1 if result.errors or result.requests else 0
    return 0
