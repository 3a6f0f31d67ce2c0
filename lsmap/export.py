"""Exports for sharing: a region's landslide polygons as GeoJSON (RFC 7946) and KML.

Both are in WGS84 longitude/latitude (EPSG:4326), longitude first, 7 decimal places (about
1 cm, finer than the 2 m pixels), exterior rings counter-clockwise and holes clockwise (the
RFC 7946 section 3.1.6 right-hand rule; KML 2.2 asks for the same orientation). Attributes:
area (m², from the mapping stage's equal-area/UTM computation, not recomputed from degrees),
acquisition date, mean and maximum probability, and whatever else the layer carries.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output

COORDINATE_DECIMALS = 7
# Decimals kept per attribute when sharing: enough for the quantity, no float noise.
ATTRIBUTE_DECIMALS = {"area_m2": 1, "perimeter_m": 1, "prob_mean": 4, "prob_max": 4,
                      "centroid_lon": 7, "centroid_lat": 7, "slope_mean_deg": 2, "elevation_mean_m": 1}
KML_NS = "http://www.opengis.net/kml/2.2"


def read_region_landslides(path: str | os.PathLike):
    """The region's ``landslides`` layer (any projected CRS) as a GeoDataFrame."""
    import geopandas as gpd

    path = Path(path)
    if not path.exists():
        raise LsmapError(f"{path}: landslide polygons not found")
    try:
        gdf = gpd.read_file(path, layer="landslides", engine="pyogrio")
    except Exception as exc:  # pyogrio's DataSourceError / DataLayerError
        raise LsmapError(f"{path}: cannot read layer 'landslides' ({str(exc).splitlines()[0]})") from exc
    if gdf.crs is None:
        raise LsmapError(f"{path}: landslide layer has no CRS")
    return gdf


def to_wgs84_right_hand(gdf):
    """Reproject to EPSG:4326, orient rings by the right-hand rule (exterior CCW), and unwrap
    one-part MultiPolygons."""
    import shapely

    out = gdf.to_crs("EPSG:4326")
    geoms = shapely.orient_polygons(out.geometry.values, exterior_cw=False)
    # A GeoPackage layer promotes every polygon to MultiPolygon; share one-part ones as Polygon.
    single = (shapely.get_type_id(geoms) == 6) & (shapely.get_num_geometries(geoms) == 1)
    geoms[single] = shapely.get_geometry(geoms[single], 0)
    return out.set_geometry(geoms, crs="EPSG:4326")


def round_attributes(gdf):
    """Copy of ``gdf`` with known float attributes rounded and dates as ISO strings."""
    import pandas as pd

    out = gdf.copy()
    for column, decimals in ATTRIBUTE_DECIMALS.items():
        if column in out.columns:
            out[column] = out[column].astype(float).round(decimals)
    for column in out.columns:
        if column != out.geometry.name and pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].dt.strftime("%Y-%m-%d")
    return out


def write_geojson(gdf, out_path: str | os.PathLike) -> None:
    """RFC 7946 GeoJSON: EPSG:4326 lon/lat, 7 decimals, right-hand rule, no ``crs`` member.

    GDAL's RFC7946 mode also splits polygons that cross the antimeridian.
    """
    shared = round_attributes(to_wgs84_right_hand(gdf))
    with atomic_output(out_path) as tmp:
        shared.to_file(tmp, driver="GeoJSON", engine="pyogrio", RFC7946="YES",
                       COORDINATE_PRECISION=COORDINATE_DECIMALS, WRITE_NAME="NO")


# --- KML ----------------------------------------------------------------------------------------

def kml_coordinates(ring) -> str:
    """'lon,lat lon,lat ...' with 7 decimals (KML has no z here: clamped to ground)."""
    return " ".join(f"{x:.{COORDINATE_DECIMALS}f},{y:.{COORDINATE_DECIMALS}f}" for x, y in ring.coords)


def kml_polygon(parent: ET.Element, polygon) -> None:
    element = ET.SubElement(parent, "Polygon")
    ET.SubElement(element, "tessellate").text = "1"
    outer = ET.SubElement(ET.SubElement(element, "outerBoundaryIs"), "LinearRing")
    ET.SubElement(outer, "coordinates").text = kml_coordinates(polygon.exterior)
    for hole in polygon.interiors:
        inner = ET.SubElement(ET.SubElement(element, "innerBoundaryIs"), "LinearRing")
        ET.SubElement(inner, "coordinates").text = kml_coordinates(hole)


def kml_value(value) -> str | None:
    """Attribute value as KML text; None for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (dt.date, dt.datetime, np.datetime64)):
        return str(value)[:10]
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.10g}"
    return str(value)


def kml_when(text: str) -> str:
    """A TimeStamp value: lsmap's times are UTC, so a date-time without a zone (the inventory
    stores '2022-09-10T03:30:00') gets 'Z'; Google Earth would read it as local time otherwise."""
    time_part = text.partition("T")[2]
    if time_part and not (time_part.endswith("Z") or "+" in time_part or "-" in time_part):
        return text + "Z"
    return text


def kml_description(row) -> str:
    """The balloon text Google Earth shows on click (plain HTML, escaped by ElementTree)."""
    parts = []
    if "area_m2" in row:
        parts.append(f"Area: {row['area_m2']:,.0f} m² ({row['area_m2'] / 1e4:.2f} ha)")
    if "acquired" in row:
        parts.append(f"Acquired: {kml_value(row['acquired'])}")
    if "prob_mean" in row:
        parts.append(f"Probability: mean {row['prob_mean']:.2f}, max {row.get('prob_max', float('nan')):.2f}")
    for key in ("scene_id", "scene_ids"):
        if key in row and kml_value(row[key]):
            parts.append(f"Scene: {row[key]}")
            break
    return "<br/>".join(parts)


def kml_document(gdf, name: str) -> ET.ElementTree:
    """A KML 2.2 Document: one red-outlined Placemark per landslide with ExtendedData attributes
    and a TimeStamp (so Google Earth's time slider can filter by acquisition date)."""
    import shapely

    ET.register_namespace("", KML_NS)
    root = ET.Element("kml", xmlns=KML_NS)
    document = ET.SubElement(root, "Document")
    ET.SubElement(document, "name").text = name
    style = ET.SubElement(document, "Style", id="landslide")
    line = ET.SubElement(style, "LineStyle")
    ET.SubElement(line, "color").text = "ff2828ff"  # KML colours are aabbggrr: opaque red
    ET.SubElement(line, "width").text = "2"
    poly = ET.SubElement(style, "PolyStyle")
    ET.SubElement(poly, "color").text = "402828ff"  # 25 % red fill
    attributes = [c for c in gdf.columns if c != gdf.geometry.name]
    for _, row in gdf.iterrows():
        placemark = ET.SubElement(document, "Placemark")
        key = next((k for k in ("id", "landslide_id") if k in row), None)  # region layer / inventory
        ET.SubElement(placemark, "name").text = f"Landslide {row[key]}" if key else "Landslide"
        ET.SubElement(placemark, "description").text = kml_description(row)
        if "acquired" in row and kml_value(row["acquired"]):
            ET.SubElement(ET.SubElement(placemark, "TimeStamp"), "when").text = kml_when(kml_value(row["acquired"]))
        ET.SubElement(placemark, "styleUrl").text = "#landslide"
        extended = ET.SubElement(placemark, "ExtendedData")
        for column in attributes:
            text = kml_value(row[column])
            if text is not None:
                data = ET.SubElement(extended, "Data", name=column)
                ET.SubElement(data, "value").text = text
        parts = shapely.get_parts(row.geometry)
        container = placemark if len(parts) == 1 else ET.SubElement(placemark, "MultiGeometry")
        for part in parts:
            kml_polygon(container, part)
    ET.indent(root, space=" ")
    return ET.ElementTree(root)


def write_kml(gdf, out_path: str | os.PathLike, name: str = "lsmap landslides") -> None:
    shared = round_attributes(to_wgs84_right_hand(gdf))
    tree = kml_document(shared, name)
    with atomic_output(out_path) as tmp:
        tree.write(tmp, encoding="UTF-8", xml_declaration=True)


def parse_since(text: str) -> "pd.Timestamp":  # noqa: F821
    """``--since`` as a UTC instant: a date (its 00:00 UTC) or an ISO date-time."""
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise LsmapError(f"--since {text!r}: not a date (YYYY-MM-DD or an ISO date-time)") from exc
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def first_seen_since(gdf, since: str, source: str | os.PathLike = ""):
    """The landslides first seen on or after ``since`` (an instant, :func:`parse_since`).

    First seen = ``first_acquired`` (the inventory's first acquisition that mapped the landslide),
    else ``acquired`` (a region or scene layer). Times without a zone are UTC; a date alone is its
    00:00 UTC, so ``--since 2022-09-10`` keeps every landslide first imaged on the 10th or later.
    """
    import pandas as pd

    column = next((c for c in ("first_acquired", "acquired") if c in gdf.columns), None)
    if column is None:
        raise LsmapError(f"{source}: layer 'landslides' has no first_acquired or acquired column, cannot filter by date")
    seen = pd.to_datetime(gdf[column].astype(str).where(gdf[column].astype(str) != ""), utc=True, errors="coerce", format="ISO8601")
    return gdf[(seen >= parse_since(since)).to_numpy()]


def export_region(landslides: str | os.PathLike, out_geojson: str | os.PathLike | None = None,
                  out_kml: str | os.PathLike | None = None, name: str | None = None, since: str | None = None) -> int:
    """Write the region's polygons as GeoJSON and/or KML; returns the number of polygons.
    ``since``: only the landslides first seen on or after it (:func:`first_seen_since`)."""
    gdf = read_region_landslides(landslides)
    if since is not None:
        gdf = first_seen_since(gdf, since, landslides)
    if out_geojson is not None:
        write_geojson(gdf, out_geojson)
    if out_kml is not None:
        write_kml(gdf, out_kml, name=name or f"lsmap landslides: {Path(landslides).parent.name}")
    return len(gdf)


# --- the `lsmap export` verb --------------------------------------------------------------------

def build_parser(parser) -> None:
    parser.add_argument("landslides", help="a landslides.gpkg (layer 'landslides'), any projected CRS")
    parser.add_argument("--geojson", help="write RFC 7946 GeoJSON (EPSG:4326) here")
    parser.add_argument("--kml", help="write KML here")
    parser.add_argument("--name", help="KML document name")
    parser.add_argument("--since", metavar="DATE", help="only landslides first seen on or after DATE (YYYY-MM-DD = 00:00 UTC, "
                        "or an ISO date-time): first_acquired of an inventory.gpkg, else acquired")


def run(args) -> int:
    if not (args.geojson or args.kml):
        raise LsmapError(f"{args.landslides}: nothing to do: give --geojson and/or --kml")
    count = export_region(args.landslides, args.geojson, args.kml, name=args.name, since=args.since)
    which = f" first seen since {args.since}" if args.since else ""
    print(f"{args.landslides}: {count} polygons{which} exported to " + " and ".join(filter(None, [args.geojson, args.kml])))
    return 0
