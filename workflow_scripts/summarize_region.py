"""Rule summarize_region: merge a region's mapped scenes into polygons, statistics and a plot."""
import logging
from pathlib import Path

from lsmap.region import summarize_region

sm = snakemake  # noqa: F821 (injected by Snakemake)
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
outputs = summarize_region(sm.wildcards.region, {k: Path(v) for k, v in sm.params.scene_dirs.items()},
                           Path(sm.output.stats_json).parent)
logging.info("wrote %s", {k: str(v) for k, v in outputs.items()})
