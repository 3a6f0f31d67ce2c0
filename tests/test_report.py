"""Reports: self-contained pages that show the region's numbers and draw its polygons, checked in
headless Chromium (no script errors, no network requests), and the Snakemake report rules."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from PIL import Image
from rasterio.transform import from_origin
from scipy import ndimage

from lsmap.errors import LsmapError
from lsmap.export import export_region
from lsmap.quicklook import make_quicklook
from lsmap.report import (
    CSP,
    build_benchmark_report,
    build_region_report,
    build_region_report_from_dir,
    check_in_chromium,
    find_chromium,
    page,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
UTM48 = "EPSG:32648"
ORIGIN = (420000.0, 3700000.0)
SUMMARY = {"landslide_count": 3, "landslide_area_km2": 0.0123456, "observed_area_km2": 1.23456,
           "unobserved_area_km2": 0.34567, "areal_density_pct": 1.0, "count_density_per_km2": 2.43}
MODELS = ["fcn", "unet", "segnet", "deeplabv3plus", "improved_deeplabv3plus"]


def require_chromium() -> str:
    """Chromium's path; skipped without it, except in CI (LSMAP_REQUIRE_SHARED_DATA set)."""
    path = find_chromium()
    if path:
        return path
    message = "headless Chromium not found (apt-get install -y chromium, or set LSMAP_CHROMIUM)"
    if os.environ.get("LSMAP_REQUIRE_SHARED_DATA", "") not in ("", "0"):
        pytest.fail(message + "; CI must install it")
    pytest.skip(message)


def write_scene(path: Path, size=(600, 800)) -> None:
    rows, cols = size
    rng = np.random.default_rng(1)
    grey = rng.normal(900, 80, (rows, cols)).clip(1, None)
    data = np.stack([grey * f for f in (0.6, 0.8, 0.7, 2.0)]).astype("uint16")
    data[:, 100:160, 200:300] = 2500
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=4, dtype="uint16",
                       crs=UTM48, transform=from_origin(*ORIGIN, 2.0, 2.0), nodata=0) as dst:
        dst.write(data)
        dst.build_overviews([2, 4])


def make_region(root: Path, scene_id: str = "GF6_PMS_TEST_20220910") -> Path:
    """results/<region>/ as mapping leaves it: stats.json, frequency_area.png, landslides.gpkg,
    <scene>/landslides.gpkg + mask.tif; then quicklooks and exports as the report rules make them."""
    region = root / "demo"
    scene = region / scene_id
    scene.mkdir(parents=True)
    write_scene(scene / "reflectance.tif")
    with rasterio.open(scene / "mask.tif", "w", driver="GTiff", width=800, height=600, count=1, dtype="uint8",
                       crs=UTM48, transform=from_origin(*ORIGIN, 2.0, 2.0), nodata=255) as dst:
        mask = np.zeros((1, 600, 800), "uint8")
        mask[:, :300, :400] = 255  # a quarter of the scene not observed (nodata)
        dst.write(mask)
    x0, y0 = ORIGIN
    geoms = [shapely.box(x0 + 400, y0 - 320, x0 + 600, y0 - 200), shapely.box(x0 + 900, y0 - 700, x0 + 960, y0 - 640),
             shapely.Point(x0 + 1200, y0 - 1000).buffer(20)]
    frame = gpd.GeoDataFrame({"id": [1, 2, 3], "scene_id": [scene_id] * 3, "acquired": ["2022-09-10"] * 3,
                              "area_m2": [g.area for g in geoms], "prob_mean": [0.91, 0.75, 0.62],
                              "prob_max": [0.99, 0.88, 0.7]}, geometry=geoms, crs=UTM48)
    frame.to_file(scene / "landslides.gpkg", layer="landslides", driver="GPKG")
    frame.assign(scene_ids=scene_id).to_file(region / "landslides.gpkg", layer="landslides", driver="GPKG")
    stats = {"region": "demo",
             "provenance": {"lsmap_version": "0.1.0", "checkpoint": "results/demo/model/best.pt",
                            "checkpoint_sha256": "0123456789abcdef" * 4, "config_sha256": "fedcba9876543210" * 4,
                            "scenes": [{"scene_id": scene_id, "image": f"results/demo/{scene_id}/reflectance.tif",
                                        "acquired": "2022-09-10"}],
                            "created_utc": "2026-11-24T12:00:00Z"},
             "area_crs": "EPSG:32648", "summary": SUMMARY, "scenes": {scene_id: SUMMARY},
             "frequency_area": {"bin_edges_m2": [100, 1000, 10000, 100000], "counts": [1, 1, 1]}}
    (region / "stats.json").write_text(json.dumps(stats))
    Image.new("RGB", (320, 200), (240, 240, 255)).save(region / "frequency_area.png")
    make_quicklook(scene / "reflectance.tif", scene / "landslides.gpkg", scene / "quicklook.png", scene / "quicklook.tif",
                   scene_id=scene_id)
    export_region(region / "landslides.gpkg", region / "landslides.geojson", region / "landslides.kml")
    return region


def make_benchmark(root: Path) -> tuple[Path, Path]:
    """table5.csv with lsmap.benchmark's exact header: model i scores 80.25 + 2i on every metric
    (so the improved model is best), has 30.5 - i M parameters, 100.0 + i GFLOPs, 12.5 - i tiles/s."""
    from lsmap.benchmark import MODEL_LABELS, table_columns

    bench, train = root / "benchmark", root / "train"
    bench.mkdir(parents=True)
    with open(bench / "table5.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=table_columns())
        writer.writeheader()
        for i, model in enumerate(MODELS):
            row = {c: 80.25 + 2 * i for c in table_columns() if c.endswith(("_global", "_perchip"))}
            row.update(model=model, label=MODEL_LABELS[model], params_m=30.5 - i, gflops_512=100.0 + i,
                       tiles_per_s=12.5 - i, device="cpu (test)", epoch=100, n_chips=154,
                       checkpoint=f"results/train/{model}/best.pt")
            writer.writerow(row)
    Image.new("RGB", (600, 200), (200, 230, 200)).save(bench / "samples.png")
    for m in MODELS[:3]:
        (train / m).mkdir(parents=True)
        with open(train / m / "history.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["epoch", "train_loss", "val_loss", "val_miou", "val_iou_landslide", "lr", "seconds"])
            for epoch in range(1, 6):
                writer.writerow([epoch, 1 / epoch, 1.1 / epoch, 0.5 + epoch / 20, 0.3 + epoch / 25, 1e-4, 60])
    return bench, train


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> Path:
    region = make_region(tmp_path_factory.mktemp("results"))
    build_region_report_from_dir(region)
    return region


@pytest.fixture(scope="module")
def benchmark_page(tmp_path_factory) -> Path:
    bench, train = make_benchmark(tmp_path_factory.mktemp("results"))
    return build_benchmark_report(bench / "table5.csv", bench / "report.html", train_dir=train,
                                  samples_png=bench / "samples.png")


def embedded_json(text: str, element_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', text, re.S)
    return json.loads(match.group(1))


def test_region_report_is_self_contained(region):
    text = (region / "report.html").read_text()
    assert f'content="{CSP}"' in text
    # Nothing is fetched: every image is a data: URL and no attribute points to http(s) or a file.
    assert re.findall(r'\b(?:src|href)="(?!data:)', text) == []
    assert len(re.findall(r'<img [^>]*src="data:image/(?:png|jpeg);base64,', text)) == 2  # plot + quicklook
    polygons = embedded_json(text, "landslide-geojson")
    assert len(polygons["features"]) == 3
    lon, lat = shapely.geometry.shape(polygons["features"][0]["geometry"]).centroid.coords[0]
    assert 104.0 < lon < 104.3 and 33.4 < lat < 33.5  # UTM 48N 420 km E / 3700 km N, lon first
    extent, observed = embedded_json(text, "scene-footprints")["features"]
    assert extent["properties"] == {"scene_id": "GF6_PMS_TEST_20220910", "kind": "extent"}
    assert observed["properties"]["kind"] == "observed"
    ratio = shapely.geometry.shape(observed["geometry"]).area / shapely.geometry.shape(extent["geometry"]).area
    assert ratio == pytest.approx(0.75, abs=0.01)  # the nodata quarter is outside the observed footprint


def test_region_report_shows_the_numbers(region):
    text = (region / "report.html").read_text()
    for shown in ("0.0123 km²", "1.23 km²", "0.346 km²", "21.9 %", "0123456789abcdef" * 4, "fedcba9876543210" * 4,
                  "results/demo/model/best.pt", "2022-09-10", "EPSG:32648", "10,000 – 100,000"):
        assert shown in text, shown
    # Unobserved share = 0.34567 / (1.23456 + 0.34567) = 21.9 %, in the highlighted note.
    assert re.search(r'id="unobserved-note"><strong>0\.346 km² \(21\.9 %\)', text)
    # Small areas keep 3 significant digits; the per-scene row shows the same values as the total.
    assert text.count("<td>0.0123</td><td>1.23</td><td>0.346</td><td>1.00</td><td>2.43</td>") == 2


def test_text_from_inputs_is_escaped(tmp_path):
    region = make_region(tmp_path, scene_id="S1")
    stats = json.loads((region / "stats.json").read_text())
    stats["provenance"]["checkpoint"] = "<script>alert(1)</script>"
    (region / "stats.json").write_text(json.dumps(stats))
    build_region_report(region / "stats.json", region / "r.html", landslides_geojson=region / "landslides.geojson")
    text = (region / "r.html").read_text()
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_bad_stats_name_the_file(tmp_path):
    (tmp_path / "stats.json").write_text(json.dumps({"region": "x", "provenance": {}, "scenes": {},
                                                     "summary": {"landslide_count": 1}}))
    with pytest.raises(LsmapError, match=r"stats.json: summary lacks landslide_area_km2"):
        build_region_report(tmp_path / "stats.json", tmp_path / "report.html")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(LsmapError, match="bad.json: not valid JSON"):
        build_region_report(tmp_path / "bad.json", tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_benchmark_report_marks_the_best_and_embeds_curves(benchmark_page):
    text = benchmark_page.read_text()
    assert f'content="{CSP}"' in text
    rows = re.findall(r"<tr><td>Improved DeepLabV3\+</td>(.*?)</tr>", text)
    assert len(rows) == 3  # whole split, per chip, cost
    whole, per_chip, cost = rows
    assert whole.count('<td class="best">88.25</td>') == 9 and per_chip.count('<td class="best">88.25</td>') == 9
    assert '<td class="best">26.50</td>' in cost  # fewest parameters (lower is better)
    assert "<td>100</td><td>154</td>" in cost  # epoch and chip count stay integers
    fcn_cost = re.findall(r"<tr><td>FCN</td>(.*?)</tr>", text)[2]
    assert '<td class="best">100.00</td>' in fcn_cost and '<td class="best">12.50</td>' in fcn_cost
    # The paper's published row sits under ours in the per-chip table: mIoU 87.24, PA 98.91.
    paper = re.search(r'<tr class="paper"><td>Improved DeepLabV3\+ \(Zhao et al. 2024, Table 5\)</td>(.*?)</tr>', text)
    assert "<td>87.24</td>" in paper.group(1) and "<td>98.91</td>" in paper.group(1)
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', text)) == 2  # curves + samples
    for model in MODELS[:3]:
        assert f"<td>{model}</td>" in text  # training-history table


def test_browser_check_sees_requests_and_errors(tmp_path):
    """The checker itself: a page that fetches from the network and throws must fail it."""
    require_chromium()
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<!DOCTYPE html><html><body><img src="http://192.0.2.1/tile.png">'
                     "<script>throw new Error('boom')</script>"
                     "<script>document.body.setAttribute('data-ready','1')</script></body></html>")
    result = check_in_chromium(leaky, timeout_s=30)
    assert "http://192.0.2.1/tile.png" in result.requests
    assert any("boom" in e for e in result.errors)
    # Our page skeleton: the CSP blocks the same image and the page reports it.
    guarded = tmp_path / "guarded.html"
    guarded.write_text(page("t", "s", '<img src="http://192.0.2.1/tile.png">'))
    result = check_in_chromium(guarded, timeout_s=30)
    assert result.errors and "192.0.2.1" in " ".join(result.errors + result.requests)


def test_region_report_in_chromium(region, tmp_path):
    require_chromium()
    probes = {  # what a user does: click a polygon, zoom in with the button
        "click": "document.querySelector('#map path.ls').dispatchEvent(new MouseEvent('click', {bubbles: true}));"
                 "document.getElementById('map-info').innerText",
        "zoom": "document.getElementById('zoom-in').click(); document.querySelector('#map g').getAttribute('transform')",
    }
    result = check_in_chromium(region / "report.html", screenshot=tmp_path / "region.png", timeout_s=60,
                               probes=probes)
    assert result.errors == [] and result.requests == []
    assert "area_m2\t24,000" in result.probes["click"] and "prob_mean\t0.91" in result.probes["click"]
    assert result.probes["zoom"].endswith("scale(1.5)")
    assert result.attributes["data-ready"] == "1" and result.attributes["map-polygons"] == "3"
    for shown in ("3 polygons drawn", "0.0123 km²", "0.346 km² (21.9 %) of the scenes' extent was not observed",
                  "GF6_PMS_TEST_20220910, acquired 2022-09-10"):
        assert shown in result.text, shown
    shot = np.asarray(Image.open(result.screenshot).convert("RGB"))
    assert shot.shape[1] == 1400 and shot.shape[0] > 1500
    # The map draws the polygons: its fill colour (rgba(220,30,30,.35) on #e9ebe4) is on screen.
    reddish = (shot[..., 0] > 200) & (shot[..., 1] < 190) & (shot[..., 1] > 130) & (shot[..., 2] < 190)
    assert reddish.sum() > 50


def test_benchmark_report_in_chromium(benchmark_page, tmp_path):
    require_chromium()
    result = check_in_chromium(benchmark_page, screenshot=tmp_path / "bench.png", timeout_s=60)
    assert result.errors == [] and result.requests == []
    assert "Improved DeepLabV3+" in result.text and "87.24" in result.text and "88.25" in result.text


@pytest.mark.workflow
def test_report_rules_and_snakemake_report(tmp_path):
    """rules/report.smk on its own (with common.smk): report_demo makes the page, exports and
    quicklooks from mapping-shaped inputs, and `snakemake --report` packs them."""
    region = make_region(tmp_path / "results")
    for name in ("report.html", "landslides.geojson", "landslides.kml"):
        (region / name).unlink(missing_ok=True)
    scene = next(p for p in region.iterdir() if p.is_dir())
    for name in ("quicklook.png", "quicklook.tif"):
        (scene / name).unlink()
    (tmp_path / "Snakefile").write_text(
        'configfile: "config.yaml"\n'
        f'include: "{PROJECT_ROOT}/rules/common.smk"\n'
        f'include: "{PROJECT_ROOT}/rules/report.smk"\n')
    (tmp_path / "config.yaml").write_text(
        "results_dir: results\nregions:\n  demo:\n    description: test region\n    scenes:\n"
        f"      {scene.name}: {{image: results/demo/{scene.name}/reflectance.tif, acquired: '2022-09-10'}}\n"
        "mapping: {checkpoint: none.pt}\nmodel: {name: unet}\ntraining: {dataset: none, models: [unet]}\n")
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "1", "--quiet=all"]
    run = subprocess.run(snakemake + ["report_demo"], cwd=tmp_path, capture_output=True, text=True, timeout=150)
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("report.html", "landslides.geojson", "landslides.kml", f"{scene.name}/quicklook.png",
                 f"{scene.name}/quicklook.tif"):
        assert (region / name).stat().st_size > 0, name
    assert (tmp_path / "logs" / "quicklook" / "demo" / f"{scene.name}.benchmark.tsv").exists()
    packed = subprocess.run(snakemake + ["--report", "report.zip", "report_demo"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=150)
    assert packed.returncode == 0, packed.stderr[-3000:]
    import zipfile

    names = zipfile.ZipFile(tmp_path / "report.zip").namelist()
    for name in ("report.html", "quicklook.png", "landslides.geojson", "landslides.kml"):
        assert any(n.endswith("/" + name) for n in names), name


def test_cli_report_region_and_missing_stats(region, tmp_path, capsys):
    from lsmap.cli import main

    assert main(["report", "region", str(region), "--out", str(tmp_path / "page.html")]) == 0
    assert (tmp_path / "page.html").read_text().count('id="landslide-geojson"') == 1
    assert main(["report", "region", str(tmp_path / "nowhere")]) == 2
    assert "nowhere/stats.json: not found" in capsys.readouterr().err


# --- imagery under the polygons -------------------------------------------------------------------

ISOLATE_LARGEST_OUTLINE = """(function(){
  var s=document.createElement('style');
  s.textContent='#map path.ls{fill:none!important;stroke:#f0f!important;stroke-width:1px!important}#map circle.dot,'+
    '#map-legend,#map-scale,#map-north,.map-tools,#map-toggles,#map-tooltip{display:none!important}';
  document.head.appendChild(s);
  var paths=Array.from(document.querySelectorAll('#map path.ls')), area=function(p){var b=p.getBBox();return b.width*b.height;};
  var target=paths.reduce(function(a,b){return area(a)>=area(b)?a:b;});
  paths.forEach(function(p){if(p!==target)p.style.display='none';});
  var r=target.getBoundingClientRect(), m=document.getElementById('map').getBoundingClientRect();
  return [r.left,r.top,r.right,r.bottom,m.left,m.top,m.right,m.bottom];
})()"""


def test_the_scene_picture_lies_under_the_map_with_each_outline_on_its_scar(region, tmp_path):
    """make_region's scene has one bright scar (rows 100-160, cols 200-300 of a 2 m UTM grid) and
    landslide 1 is its outline. In the browser the scar's white pixels must fill the outline's
    box: a picture placed or scaled wrongly by more than ~2 screen px (~5 m here) fails."""
    require_chromium()
    text = (region / "report.html").read_text()
    (background,) = embedded_json(text, "map-backgrounds")
    assert background["href"].startswith("data:image/webp;base64,")
    result = check_in_chromium(region / "report.html", screenshot=tmp_path / "map.png", timeout_s=60,
                               probes={"rects": ISOLATE_LARGEST_OUTLINE,
                                       "backgrounds": "document.getElementById('map').getAttribute('data-backgrounds')"})
    assert result.errors == [] and result.requests == []  # the picture is a data: URL, within the CSP
    assert result.probes["backgrounds"] == "1"
    left, top, right, bottom, mleft, mtop, mright, mbottom = result.probes["rects"]
    shot = np.asarray(Image.open(result.screenshot).convert("RGB")).astype(int)
    inside_map = shot[int(mtop) + 2:int(mbottom) - 2, int(mleft) + 2:int(mright) - 2]
    white = (inside_map > 235).all(axis=-1)  # the saturated scar (and single bright pixels of the noisy terrain)
    labels, _ = ndimage.label(white)
    rows, cols = np.nonzero(labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1)  # the scar: the largest white patch
    scar = (cols.min() + int(mleft) + 2, rows.min() + int(mtop) + 2, cols.max() + int(mleft) + 3, rows.max() + int(mtop) + 3)
    assert (right - left) > 40, "the outline is too small on screen for a pixel check"
    np.testing.assert_allclose(scar, (left, top, right, bottom), atol=2.5)
    # and the outline itself (magenta) runs along the scar's edge, not across the terrain
    magenta = (shot[..., 0] > 200) & (shot[..., 1] < 100) & (shot[..., 2] > 200)
    ys, xs = np.nonzero(magenta)
    assert len(xs) > 100
    near_edge = ((np.abs(xs - left) < 3) | (np.abs(xs - right) < 3) | (np.abs(ys - top) < 3) | (np.abs(ys - bottom) < 3))
    assert near_edge.mean() > 0.95


def test_map_backgrounds_are_on_a_lon_lat_grid_with_transparent_nodata(region):
    from pyproj import Transformer

    from lsmap.report import map_backgrounds

    (scene,) = [p for p in region.iterdir() if p.is_dir()]
    (background,) = map_backgrounds({scene.name: scene / "quicklook.tif"}, {scene.name: "2022-09-10"})
    to_lonlat = Transformer.from_crs(UTM48, "EPSG:4326", always_xy=True)
    x0, y0 = ORIGIN  # the scene: 800 x 600 px of 2 m from this corner
    corners = [to_lonlat.transform(x, y) for x in (x0, x0 + 1600) for y in (y0, y0 - 1200)]
    # the lon/lat box that holds the rotated UTM rectangle, to within a pixel (2 m ~ 2e-5 deg; GDAL's
    # output grid may reach a fraction of a pixel beyond it: its transform says so, the map uses it)
    assert background["west"] == pytest.approx(min(c[0] for c in corners), abs=2e-5)
    assert background["east"] == pytest.approx(max(c[0] for c in corners), abs=2e-5)
    assert background["south"] == pytest.approx(min(c[1] for c in corners), abs=2e-5)
    assert background["north"] == pytest.approx(max(c[1] for c in corners), abs=2e-5)
    import base64
    import io

    picture = Image.open(io.BytesIO(base64.b64decode(background["href"].split(",", 1)[1])))
    alpha = np.asarray(picture.convert("RGBA"))[..., 3]
    assert alpha[alpha.shape[0] // 2, alpha.shape[1] // 2] == 255  # the scene
    assert (alpha == 0).any()  # the corners of the lon/lat box outside the rotated scene


# --- the page lives in package data files ----------------------------------------------------------

def test_the_page_is_built_from_the_template_files(region):
    from importlib.resources import files

    import lsmap.report as report

    folder = files("lsmap").joinpath("report_templates")
    names = sorted(p.name for p in folder.iterdir())
    assert {"page.html", "page.css", "error_hook.js", "region.html", "benchmark.html", "map.html", "map.css",
            "map.js", "map_scripts.html"} <= set(names)
    text = (region / "report.html").read_text()
    for name in ("page.css", "map.css", "map.js", "error_hook.js"):  # inlined as written, not rewritten
        assert folder.joinpath(name).read_text() in text, name
    assert "${" not in text.replace(folder.joinpath("map.js").read_text(), "")
    source = Path(report.__file__).read_text()  # no page markup left in Python strings (the browser check's
    source = source[:source.index("# --- checking a report in headless Chromium")]  # probes are not the page)
    for markup in ("<style>", "<!DOCTYPE", "function(", "document.getElementById", "{font-family"):
        assert markup not in source, markup


def test_passes_section_lists_the_passes_newest_first(tmp_path, region):
    passes = [{"run_id": "r1", "started": "2022-09-08T06:00:00Z", "deliveries": ["A"], "failures": [],
               "new_landslides": 2, "updated_landslides": 0, "no_longer_seen": 0, "newly_observed_km2": 4.0, "new_landslide_ids": ["A/1", "A/2"]},
              {"run_id": "r2", "started": "2022-09-11T06:00:00Z", "deliveries": ["B", "C"],
               "failures": [{"name": "C", "state": "quarantined", "error": "C-MUX.rpb: RPC file is missing"}],
               "new_landslides": 1, "updated_landslides": 1, "no_longer_seen": 0, "newly_observed_km2": 0.25, "new_landslide_ids": ["B/2"]}]
    page_path = build_region_report(region / "stats.json", tmp_path / "report.html", landslides_gpkg=region / "landslides.gpkg",
                                    passes=passes)
    text = page_path.read_text()
    section = text[text.index('<section id="passes">'):text.index('<section id="statistics">')]
    assert section.index("2022-09-11 06:00") < section.index("2022-09-08 06:00")
    assert '<tr class="latest"><td>2022-09-11 06:00</td><td>B, C</td><td>1</td><td>1</td><td>0</td><td>0.25</td>' in section
    assert "C: quarantined (C-MUX.rpb: RPC file is missing)" in section
    features = embedded_json(text, "landslide-geojson")["features"]
    assert [f["properties"]["new_in_latest_pass"] for f in features] == [False, False, False]  # ids are not B/2


# --- dates everywhere -------------------------------------------------------------------------------

def test_the_acquisition_date_of_the_delivery_reaches_every_product(tmp_path):
    """The demo chain on a small GF-6-like L1A delivery acquired 2022-09-10 03:30 UTC, without any
    --acquired: preprocess -> map -> region summary -> exports -> quicklook -> report. The date
    comes from the delivery's metadata (CenterTime) and must be the same in every product."""
    from datetime import datetime, timezone

    from test_scheduled import constant_checkpoint

    from lsmap.gf6 import write_synthetic_delivery
    from lsmap.mapping import MappingOptions, map_scene, summarize_region
    from lsmap.preprocess import preprocess_delivery
    from lsmap.synthetic import generate_landscape

    land = generate_landscape(tmp_path / "landscape", seed=5, size_px=384, rotation_deg=0.0)
    with rasterio.open(land.reflectance) as src:
        window = rasterio.windows.Window(64, 64, 256, 256)
        reflectance, transform, crs = src.read(window=window).astype(np.float32) / 1e4, src.window_transform(window), src.crs
    with rasterio.open(land.dem) as src:
        dem, dem_transform = src.read(1).astype(np.float64), src.transform
    delivery = write_synthetic_delivery(tmp_path / "inbox" / "GF6_PMS_DEMO_L1A0001", reflectance, transform, crs, dem,
                                        dem_transform=dem_transform, name="GF6_PMS_DEMO_L1A0001",
                                        acquired=datetime(2022, 9, 10, 3, 30, tzinfo=timezone.utc))
    region = tmp_path / "results" / "demo"
    scene = region / "demo_scene"
    ard = preprocess_delivery(delivery, land.dem, scene / "ard", threads=2)
    options = MappingOptions(tile_size=128, overlap_px=16, chunk_px=256, batch_size=4, device="cpu", precision="fp32",
                             progress=False, workers=1)
    map_scene(ard["reflectance"], constant_checkpoint(tmp_path / "model.pt"), scene, options=options, scene_id="demo_scene")
    summarize_region("demo", {"demo_scene": scene}, region)
    export_region(region / "landslides.gpkg", region / "landslides.geojson", region / "landslides.kml")
    drawn = make_quicklook(ard["reflectance"], scene / "landslides.gpkg", scene / "quicklook.png", scene / "quicklook.tif",
                           scene_id="demo_scene")
    html = build_region_report_from_dir(region).read_text()

    when = "2022-09-10T03:30:00Z"
    assert json.loads((scene / "scene_stats.json").read_text())["provenance"]["scenes"][0]["acquired"] == when
    assert json.loads((region / "stats.json").read_text())["provenance"]["scenes"][0]["acquired"] == when
    for gpkg in (scene / "landslides.gpkg", region / "landslides.gpkg"):
        dates = gpd.read_file(gpkg, layer="landslides")["acquired"]
        assert len(dates) >= 1 and set(dates) == {when}, gpkg
    assert {f["properties"]["acquired"] for f in json.loads((region / "landslides.geojson").read_text())["features"]} == {when}
    stamps = re.findall(r"<when>(.*?)</when>", (region / "landslides.kml").read_text())
    assert len(stamps) >= 1 and set(stamps) == {when}
    assert drawn["acquired"] == "2022-09-10"
    assert f"demo_scene, acquired {when}" in html  # the scene's caption
    assert f"<td>demo_scene</td><td>{when}</td>" in html  # the provenance table
    assert "date unknown" not in html


def test_new_landslides_have_their_own_style_legend_and_toggle_in_chromium(region, tmp_path):
    require_chromium()
    frame = gpd.read_file(region / "landslides.gpkg", layer="landslides").assign(landslide_id=["A/1", "A/2", "B/1"])
    frame.to_file(tmp_path / "inventory.gpkg", layer="landslides", driver="GPKG")
    export_region(tmp_path / "inventory.gpkg", tmp_path / "landslides.geojson")
    passes = [{"started": "2022-09-08T06:00:00Z", "deliveries": ["A"], "new_landslide_ids": ["A/1", "A/2"]},
              {"started": "2022-09-11T06:00:00Z", "deliveries": ["B"], "new_landslide_ids": ["B/1"]}]
    out = build_region_report(region / "stats.json", tmp_path / "report.html", landslides_geojson=tmp_path / "landslides.geojson",
                              passes=passes)
    visible = ("Array.from(document.querySelectorAll('#map path.ls')).filter(function(p){"
               "return getComputedStyle(p).display!=='none';}).map(function(p){return p.getAttribute('class');})")
    result = check_in_chromium(out, timeout_s=60, probes={
        "before": visible,
        "legend": "document.getElementById('map-legend').innerText",
        "new_colour": "getComputedStyle(document.querySelector('#map path.ls.new')).stroke",
        "earlier_colour": "getComputedStyle(document.querySelector('#map path.ls.earlier')).stroke",
        "uncheck": "var b=document.getElementById('toggle-earlier');b.click();b.checked",
        "after": visible,
    })
    assert result.errors == [] and result.requests == []
    assert sorted(result.probes["before"]) == ["ls earlier", "ls earlier", "ls new"]
    assert "new in the latest pass (1)" in result.probes["legend"] and "earlier" in result.probes["legend"]
    assert result.probes["new_colour"] != result.probes["earlier_colour"]
    assert result.probes["uncheck"] is False and result.probes["after"] == ["ls new"]


def test_a_large_region_map_draws_its_largest_landslides_and_says_so(region, tmp_path, monkeypatch):
    """Above MAP_MAX_POLYGONS the map embeds only the largest polygons (here 2 of 3), with the same
    attributes and geometry as when it embeds them all, in file order, and a note under the map."""
    import lsmap.report as report

    everything = report.landslides_geojson_for_map(region / "landslides.geojson", None)
    largest = report.landslides_geojson_for_map(region / "landslides.geojson", None, max_polygons=2)
    assert largest["lsmap_map_subset"]["drawn"] == 2 and largest["lsmap_map_subset"]["total"] == 3
    areas = [f["properties"]["area_m2"] for f in everything["features"]]
    kept = sorted(sorted(range(3), key=lambda i: -areas[i])[:2])
    assert [f["properties"] for f in largest["features"]] == [everything["features"][i]["properties"] for i in kept]
    for feature, i in zip(largest["features"], kept):
        assert feature["geometry"]["type"] == everything["features"][i]["geometry"]["type"]
        np.testing.assert_allclose(np.asarray(feature["geometry"]["coordinates"][0], float),
                                   np.asarray(everything["features"][i]["geometry"]["coordinates"][0], float), atol=0)
    monkeypatch.setattr(report, "MAP_MAX_POLYGONS", 2)
    monkeypatch.setattr(report.landslides_geojson_for_map, "__defaults__", (2,))
    out = build_region_report(region / "stats.json", tmp_path / "report.html",
                              landslides_geojson=region / "landslides.geojson")
    text = out.read_text()
    assert len(embedded_json(text, "landslide-geojson")["features"]) == 2
    assert "lsmap_map_subset" not in text
    assert "The map draws the 2 largest of the region's 3 landslides" in text
    assert "The map draws" not in (region / "report.html").read_text()  # all 3 drawn: no note
