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
                               landslides_gpkg: str | os.PathLike | None) -> dict:
    """The polygons in lon/lat for the map: the region's exported GeoJSON when given, else made
    from the GeoPackage through lsmap.export (the same RFC 7946 writer)."""
    if geojson_path is None:
        if landslides_gpkg is None:
            return {"type": "FeatureCollection", "features": []}
        from lsmap.export import read_region_landslides, write_geojson

        with tempfile.TemporaryDirectory() as tmp:
            geojson_path = Path(tmp) / "landslides.geojson"
            write_geojson(read_region_landslides(landslides_gpkg), geojson_path)
            return round_geojson(read_json(geojson_path))
    return round_geojson(read_json(geojson_path))


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
    scenes = [[s.get("scene_id", "–"), s.get("acquired", "–"), s.get("image", "–")]
              for s in prov.get("scenes", [])]
    return (html_table(None, rows, cls="provenance")
            + "<h3>Scenes</h3>" + html_table(["Scene", "Acquired", "Image"], scenes, cls="scenes"))


def quicklook_section(quicklooks: dict[str, str | os.PathLike], stats: dict) -> str:
    if not quicklooks:
        return "<p>No quicklooks.</p>"
    acquired = {s.get("scene_id"): s.get("acquired") for s in stats["provenance"].get("scenes", [])}
    figures = []
    for scene_id, path in quicklooks.items():
        caption = f"{scene_id}, acquired {acquired.get(scene_id) or 'date unknown'}"
        figures.append(f'<figure><img alt="quicklook {esc(scene_id)}" src="{data_url(path, jpeg=True)}">'
                       f"<figcaption>{esc(caption)}</figcaption></figure>")
    return "".join(figures)


# --- page skeleton ------------------------------------------------------------------------------

PAGE_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d1d1d;background:#f5f5f2}
header{background:#2b2b2b;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cfcfcf;font-size:13px}
main{max-width:1400px;margin:0 auto;padding:8px 24px 40px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px 18px;margin:16px 0}
h2{font-size:18px;margin:4px 0 10px}h3{font-size:15px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{flex:1 1 160px;background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px}
.card .value{font-size:24px;font-weight:600}.card .label{color:#555;font-size:13px}
.card[data-key=unobserved_area_km2]{border-color:#d08a00;background:#fff8e8}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{border-bottom:1px solid #e2e2e2;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#f0f0ec}
table.provenance td{text-align:left;font-family:ui-monospace,monospace;word-break:break-all}
table.scenes td{text-align:left}td.best{font-weight:700;background:#eef6e8}tr.paper td{font-style:italic;color:#555}
.note{background:#fff8e8;border-left:4px solid #d08a00;padding:8px 12px}
img.plot{max-width:100%;height:auto}figure{margin:10px 0}figure img{width:100%;height:auto;border:1px solid #ccc}
figcaption{font-size:13px;color:#444}
#errors-box{background:#fde8e8;border:1px solid #c00;padding:8px 16px}
"""

ERROR_HOOK_JS = """
(function(){
  function note(msg){
    var list=document.getElementById('report-errors');
    if(!list){(window.__lsmapEarlyErrors=window.__lsmapEarlyErrors||[]).push(msg);return;}
    var li=document.createElement('li');li.textContent=msg;list.appendChild(li);
    document.getElementById('errors-box').hidden=false;document.body.setAttribute('data-errors',String(list.children.length));
  }
  window.__lsmapNote=note;
  window.addEventListener('error',function(e){note('script error: '+e.message+' ('+(e.filename||'')+':'+(e.lineno||0)+')');});
  document.addEventListener('securitypolicyviolation',function(e){note('blocked request: '+e.blockedURI+' ('+e.violatedDirective+')');});
  document.addEventListener('DOMContentLoaded',function(){(window.__lsmapEarlyErrors||[]).forEach(note);});
})();
"""


def page(title: str, subtitle: str, body: str, scripts: str = "") -> str:
    """The HTML document: CSP first, then the error hook, so even early failures are caught."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="generator" content="lsmap {esc(lsmap.__version__)}">
<title>{esc(title)}</title>
<script>{ERROR_HOOK_JS}</script>
<style>{PAGE_CSS}</style></head>
<body>
<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>
<main>
<div id="errors-box" hidden><strong>Problems while showing this page:</strong><ul id="report-errors"></ul></div>
{body}
</main>
{scripts}
<script>document.body.setAttribute('data-ready','1');</script>
</body></html>
"""


# --- the interactive map ------------------------------------------------------------------------

MAP_HTML = """
<div class="map-wrap">
 <div class="map-tools"><button type="button" id="zoom-in" title="zoom in">+</button><button type="button" id="zoom-out" title="zoom out">−</button><button type="button" id="zoom-reset" title="whole region">⤢</button>
 <span id="map-status">map not drawn</span></div>
 <svg id="map" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="map of landslide polygons"></svg>
 <div id="map-tooltip" hidden></div>
 <div id="map-scale"><div id="map-scale-bar"></div><span id="map-scale-label"></span></div>
 <div id="map-north">N ↑</div>
 <div id="map-legend"><i style="background:rgba(220,30,30,.35);border-color:#c00"></i>landslide<i style="background:#fbfbf8"></i>observed<i style="background:#c4c4c0"></i>not observed (no data)</div>
</div>
<div id="map-info"><em>Click a polygon for its attributes.</em></div>
"""

MAP_CSS = """
.map-wrap{position:relative;border:1px solid #bbb;border-radius:4px;background:#e9ebe4;overflow:hidden}
#map{display:block;width:100%;height:560px;cursor:grab;touch-action:none}#map.dragging{cursor:grabbing}
#map path.ls{fill:rgba(220,30,30,.35);stroke:#c00;stroke-width:1.2px;vector-effect:non-scaling-stroke}
#map path.ls:hover,#map path.ls.selected{fill:rgba(255,200,0,.6);stroke:#000;stroke-width:2px}
#map circle.dot{fill:#c00;stroke:#fff;vector-effect:non-scaling-stroke;stroke-width:.8px}
#map circle.dot:hover{fill:#ffc800}
#map path.footprint.extent{fill:#c4c4c0;stroke:#555;stroke-dasharray:6 4;stroke-width:1.2px;vector-effect:non-scaling-stroke}
#map path.footprint.observed{fill:#fbfbf8;stroke:none}
#map-legend{position:absolute;right:10px;bottom:10px;background:rgba(255,255,255,.85);padding:3px 8px;font-size:12px;border-radius:3px}
#map-legend i{display:inline-block;width:12px;height:10px;margin:0 4px 0 8px;vertical-align:middle;border:1px solid #777}
#map text.fplabel{fill:#444;font-size:12px}
.map-tools{position:absolute;top:8px;left:8px;z-index:2;display:flex;gap:4px;align-items:center}
.map-tools button{width:30px;height:30px;font-size:18px;border:1px solid #888;background:#fff;border-radius:4px;cursor:pointer}
#map-status{background:rgba(255,255,255,.85);padding:3px 8px;border-radius:4px;font-size:12px}
#map-tooltip{position:absolute;z-index:3;pointer-events:none;background:rgba(20,20,20,.88);color:#fff;padding:5px 8px;border-radius:4px;font-size:12px;white-space:nowrap}
#map-scale{position:absolute;left:10px;bottom:10px;background:rgba(255,255,255,.85);padding:3px 6px;font-size:12px;border-radius:3px}
#map-scale-bar{height:6px;border:1px solid #000;border-top:none;margin-bottom:2px}
#map-north{position:absolute;right:10px;top:8px;background:rgba(255,255,255,.85);padding:3px 6px;font-weight:700;border-radius:3px}
#map-info{font-size:13px;margin-top:6px}#map-info table td{text-align:left}
"""

MAP_JS = r"""
(function(){
  var NS='http://www.w3.org/2000/svg';
  var data=JSON.parse(document.getElementById('landslide-geojson').textContent);
  var foot=JSON.parse(document.getElementById('scene-footprints').textContent);
  var svg=document.getElementById('map'), status=document.getElementById('map-status');
  var tip=document.getElementById('map-tooltip'), info=document.getElementById('map-info');
  var feats=data.features||[], fps=foot.features||[];
  function polys(g){if(!g)return[];return g.type==='Polygon'?[g.coordinates]:(g.type==='MultiPolygon'?g.coordinates:[]);}
  var minx=Infinity,miny=Infinity,maxx=-Infinity,maxy=-Infinity;
  feats.concat(fps).forEach(function(f){polys(f.geometry).forEach(function(p){p[0].forEach(function(c){
    if(c[0]<minx)minx=c[0];if(c[0]>maxx)maxx=c[0];if(c[1]<miny)miny=c[1];if(c[1]>maxy)maxy=c[1];});});});
  if(!isFinite(minx)){status.textContent='0 polygons drawn (nothing to map)';svg.setAttribute('data-polygons','0');return;}
  // Local equirectangular projection in metres around the centre: shapes and the scale bar are true
  // to well under 1 % across a region of a few tens of km.
  var lat0=(miny+maxy)/2, lon0=(minx+maxx)/2, M=6371008.8*Math.PI/180, kx=Math.cos(lat0*Math.PI/180)*M;
  function xy(c){return[(c[0]-lon0)*kx,-(c[1]-lat0)*M];}
  // Path data plus the projected bounding box (computed here: getBBox() would force a layout per polygon).
  var bb;
  function pathData(g){var d='';bb=[Infinity,Infinity,-Infinity,-Infinity];
    polys(g).forEach(function(p){p.forEach(function(r){r.forEach(function(c,i){var q=xy(c);
      if(q[0]<bb[0])bb[0]=q[0];if(q[1]<bb[1])bb[1]=q[1];if(q[0]>bb[2])bb[2]=q[0];if(q[1]>bb[3])bb[3]=q[1];
      d+=(i?'L':'M')+q[0].toFixed(1)+' '+q[1].toFixed(1);});d+='Z';});});return d;}
  var a=xy([minx,maxy]), b=xy([maxx,miny]), w=Math.max(b[0]-a[0],1), h=Math.max(b[1]-a[1],1), pad=0.05*Math.max(w,h);
  svg.setAttribute('viewBox',[a[0]-pad,a[1]-pad,w+2*pad,h+2*pad].join(' '));
  svg.setAttribute('preserveAspectRatio','xMidYMid meet');
  var layer=document.createElementNS(NS,'g'); svg.appendChild(layer);
  // Scene extents first (grey: unobserved), their observed footprints on top (light).
  ['extent','observed'].forEach(function(kind){fps.forEach(function(f){if((f.properties.kind||'extent')!==kind)return;
    var p=document.createElementNS(NS,'path');p.setAttribute('class','footprint '+kind);p.setAttribute('d',pathData(f.geometry));p.setAttribute('fill-rule','evenodd');
    var t=document.createElementNS(NS,'title');t.textContent='scene '+f.properties.scene_id+(kind==='extent'?' (grey: not observed)':' (observed)');p.appendChild(t);layer.appendChild(p);});});
  var dots=document.createElementNS(NS,'g'), shapes=document.createElementNS(NS,'g'); layer.appendChild(dots); layer.appendChild(shapes);
  function fmt(v,d){return (typeof v==='number')?v.toLocaleString('en-US',{maximumFractionDigits:d}):String(v);}
  function label(p){return 'Landslide '+(p.id!==undefined?p.id:'')+': '+fmt(p.area_m2,0)+' m²'+(p.prob_mean!==undefined?', p̄ '+fmt(p.prob_mean,2):'')+(p.acquired?', '+p.acquired:'');}
  var selected=null;
  function show(f,el){ if(selected)selected.classList.remove('selected'); selected=el.tagName==='path'?el:null; if(selected)selected.classList.add('selected');
    var rows=Object.keys(f.properties).map(function(k){return '<tr><th>'+k+'</th><td></td></tr>';}).join('');
    info.innerHTML='<table>'+rows+'</table>'; var tds=info.querySelectorAll('td');
    Object.keys(f.properties).forEach(function(k,i){tds[i].textContent=fmt(f.properties[k],7);}); }
  function hover(f,el){el.addEventListener('mousemove',function(e){tip.textContent=label(f.properties);tip.hidden=false;
      var r=svg.getBoundingClientRect();tip.style.left=(e.clientX-r.left+12)+'px';tip.style.top=(e.clientY-r.top+12)+'px';});
    el.addEventListener('mouseleave',function(){tip.hidden=true;});
    el.addEventListener('click',function(e){e.stopPropagation();show(f,el);});}
  var drawn=0, dotEls=[];
  feats.forEach(function(f){var d=pathData(f.geometry);if(!d)return;
    var p=document.createElementNS(NS,'path');p.setAttribute('class','ls');p.setAttribute('d',d);p.setAttribute('fill-rule','evenodd');shapes.appendChild(p);hover(f,p);
    var c=document.createElementNS(NS,'circle');c.setAttribute('class','dot');c.setAttribute('cx',((bb[0]+bb[2])/2).toFixed(1));c.setAttribute('cy',((bb[1]+bb[3])/2).toFixed(1));
    c._size=Math.max(bb[2]-bb[0],bb[3]-bb[1]);dots.appendChild(c);dotEls.push(c);hover(f,c);drawn++;});
  // View state: layer transform translate(tx,ty) scale(s), in viewBox units.
  var view={s:1,tx:0,ty:0};
  function unitsPerPx(){var r=svg.getBoundingClientRect();return Math.max((w+2*pad)/r.width,(h+2*pad)/r.height);}
  function apply(){layer.setAttribute('transform','translate('+view.tx+' '+view.ty+') scale('+view.s+')');
    var upp=unitsPerPx()/view.s, r=2*upp;  // dots: 2 screen px, hidden once the polygon itself is 8 px wide
    dotEls.forEach(function(c){c.setAttribute('r',r);c.style.display=(c._size/upp>8)?'none':'';});
    var target=110*upp, e=Math.pow(10,Math.floor(Math.log10(target))), n=[5,2,1].map(function(m){return m*e;}).filter(function(v){return v<=target;})[0]||e;
    document.getElementById('map-scale-bar').style.width=(n/upp)+'px';
    document.getElementById('map-scale-label').textContent=n>=1000?(n/1000)+' km':n+' m';}
  function toUser(e){var pt=svg.createSVGPoint();pt.x=e.clientX;pt.y=e.clientY;return pt.matrixTransform(svg.getScreenCTM().inverse());}
  function zoomAt(u,f){view.tx=u.x-(u.x-view.tx)*f;view.ty=u.y-(u.y-view.ty)*f;view.s*=f;apply();}
  function centre(){var vb=svg.viewBox.baseVal;return{x:vb.x+vb.width/2,y:vb.y+vb.height/2};}
  svg.addEventListener('wheel',function(e){e.preventDefault();zoomAt(toUser(e),e.deltaY<0?1.25:0.8);},{passive:false});
  var drag=null;
  svg.addEventListener('pointerdown',function(e){drag={u:toUser(e),tx:view.tx,ty:view.ty};svg.classList.add('dragging');svg.setPointerCapture(e.pointerId);});
  svg.addEventListener('pointermove',function(e){if(!drag)return;var u=toUser(e);view.tx=drag.tx+u.x-drag.u.x;view.ty=drag.ty+u.y-drag.u.y;apply();});
  svg.addEventListener('pointerup',function(){drag=null;svg.classList.remove('dragging');});
  document.getElementById('zoom-in').onclick=function(){zoomAt(centre(),1.5);};
  document.getElementById('zoom-out').onclick=function(){zoomAt(centre(),1/1.5);};
  document.getElementById('zoom-reset').onclick=function(){view={s:1,tx:0,ty:0};apply();};
  window.addEventListener('resize',apply); apply();
  svg.setAttribute('data-polygons',String(drawn));
  status.textContent=drawn+' polygon'+(drawn===1?'':'s')+' drawn · drag to pan, wheel to zoom';
})();
"""


def map_section(landslides: dict, footprints: dict) -> tuple[str, str]:
    """(HTML for the map section, the scripts block that draws it)."""
    scripts = (f'<script type="application/json" id="landslide-geojson">{json_for_script(landslides)}</script>\n'
               f'<script type="application/json" id="scene-footprints">{json_for_script(footprints)}</script>\n'
               f"<script>{MAP_JS}</script>")
    return f"<style>{MAP_CSS}</style>{MAP_HTML}", scripts


# --- region report ------------------------------------------------------------------------------

def build_region_report(stats_json: str | os.PathLike, out_html: str | os.PathLike, *,
                        frequency_area_png: str | os.PathLike | None = None,
                        landslides_geojson: str | os.PathLike | None = None,
                        landslides_gpkg: str | os.PathLike | None = None,
                        quicklooks: dict[str, str | os.PathLike] | None = None,
                        scene_rasters: dict[str, str | os.PathLike] | None = None,
                        description: str | None = None) -> Path:
    """Write ``report.html`` for one region.

    stats_json: the region's stats.json (contract in README "Mapping"); landslides_geojson: the
    exported RFC 7946 polygons (or landslides_gpkg, exported on the fly); quicklooks: scene id ->
    quicklook PNG; scene_rasters: scene id -> any raster of the scene (mask.tif), for the extents.
    """
    stats = validate_region_stats(read_json(stats_json), str(stats_json))
    landslides = landslides_geojson_for_map(landslides_geojson, landslides_gpkg)
    footprints = scene_footprints_geojson(scene_rasters or {})
    map_html, map_scripts = map_section(landslides, footprints)
    summary = stats["summary"]
    region = stats["region"]
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = " · ".join(filter(None, [description, f"{len(stats['scenes'])} scene(s)",
                                        f"report made {created} by lsmap {lsmap.__version__}"]))
    body = f"""
<section id="summary"><h2>Summary</h2><div class="cards">{summary_cards(summary)}</div>{unobserved_note(summary)}</section>
<section id="map-section"><h2>Landslide map</h2>{map_html}</section>
<section id="statistics"><h2>Statistics</h2>{stats_table(stats)}
<p class="small">Areas computed on {esc(stats.get('area_crs', 'an equal-area CRS'))}; densities are per observed km².</p></section>
<section id="frequency-area"><h2>Frequency–area distribution</h2>{frequency_area_section(stats, frequency_area_png)}</section>
<section id="quicklooks"><h2>Scenes</h2>{quicklook_section(quicklooks or {}, stats)}</section>
<section id="provenance"><h2>Provenance</h2>{provenance_section(stats)}</section>
"""
    document = page(f"Landslides – {region}", subtitle, body, map_scripts)
    with atomic_output(out_html) as tmp:
        tmp.write_text(document, encoding="utf-8")
    return Path(out_html)


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
    body = f"""
<section id="table5"><h2>Table 5: test-split comparison</h2>{table5_html(rows)}
<p class="small">Metrics in percent; precision, recall and F1 are means over the two classes (the paper's definition), *_landslide columns the landslide class alone. Best value per column in bold; the paper's published values (their data, 256 px inputs) in italics.</p></section>
<section id="training"><h2>Training curves</h2>{curves or '<p>No training histories.</p>'}</section>
<section id="samples"><h2>Sample predictions</h2>{samples}</section>
"""
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
    stats.json, frequency_area.png, landslides.geojson (else .gpkg), <scene>/quicklook.png and
    <scene>/mask.tif; missing optional pieces are left out of the page."""
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
        scene_rasters={s: region_dir / s / "mask.tif" for s in scenes if (region_dir / s / "mask.tif").exists()})


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
