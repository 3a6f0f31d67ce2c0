"""Rule preprocess_reflectance: orthorectified DN -> calibrated, pan-sharpened reflectance COG."""
import logging
from pathlib import Path

from lsmap.preprocess import make_reflectance

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
out = make_reflectance(Path(snakemake.input.pan), Path(snakemake.input.mux), Path(snakemake.output.reflectance),
                       snakemake.params.settings, threads=snakemake.threads)
logging.info("wrote %s", out)
