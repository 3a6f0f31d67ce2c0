"""Rule synthetic_landscape: a procedural landscape with landslide scars and its ground truth (demo)."""
import logging
from pathlib import Path

from lsmap.synthetic import generate_landscape

sm = snakemake  # noqa: F821 (injected by Snakemake)
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
landscape = generate_landscape(Path(sm.output.reflectance).parent, seed=sm.params.seed, size_px=sm.params.size_px,
                               scars_per_km2=sm.params.scars_per_km2)
logging.info("wrote %s (landslide fraction %.3f)", landscape, landscape.landslide_fraction)
