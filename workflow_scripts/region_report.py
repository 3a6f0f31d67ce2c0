"""Rule region_report: results/<region>/report.html, one self-contained page."""
import contextlib

from lsmap.report import build_region_report

sm = snakemake  # noqa: F821 (injected by Snakemake)
with open(sm.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    scenes = list(sm.params.scenes)
    build_region_report(sm.input.stats, sm.output[0], frequency_area_png=sm.input.frequency_area,
                        landslides_geojson=sm.input.geojson,
                        quicklooks=dict(zip(scenes, sm.input.quicklooks)),
                        scene_rasters=dict(zip(scenes, sm.input.masks)),
                        description=sm.params.description)
    print(f"wrote {sm.output[0]}")
