"""Rule region_report: results/<region>/report.html, one self-contained page."""
import contextlib
from pathlib import Path

from lsmap.report import build_region_report

sm = snakemake  # noqa: F821 (injected by Snakemake)
with open(sm.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    scenes = list(sm.params.scenes)
    build_region_report(sm.input.stats, sm.output[0], frequency_area_png=sm.input.frequency_area,
                        landslides_geojson=sm.input.geojson,
                        quicklooks=dict(zip(scenes, sm.input.quicklooks)),
                        scene_rasters=dict(zip(scenes, sm.input.masks)),
                        # quicklook.tif is written by the same rule as quicklook.png: the map's background
                        backgrounds={s: Path(q).with_suffix(".tif") for s, q in zip(scenes, sm.input.quicklooks)},
                        description=sm.params.description)
    print(f"wrote {sm.output[0]}")
