"""Rule preprocess_synthetic_delivery: synthetic landscape -> GF-6-like L1A delivery folder (demo)."""
import logging
import zlib
from pathlib import Path

from lsmap.gf6 import synthetic_delivery_from_rasters

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
out = synthetic_delivery_from_rasters(snakemake.input.reflectance, snakemake.input.dem, Path(snakemake.output.delivery),
                                      name=f"GF6_PMS_{snakemake.wildcards.scene}_L1A0000000001",
                                      calibration=snakemake.params.settings, seed=zlib.crc32(snakemake.wildcards.scene.encode()))
logging.info("wrote %s", out)
