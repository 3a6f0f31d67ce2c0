"""Rule preprocess_terrain: DEM -> DEM, slope, aspect, hillshade COGs on the scene grid."""
import logging
from pathlib import Path

from lsmap.preprocess import make_terrain

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
out = make_terrain(Path(snakemake.input.dem), Path(snakemake.input.scene), Path(snakemake.output.dem).parent,
                   snakemake.params.settings, threads=snakemake.threads)
logging.info("wrote %s", out)
