"""Rule preprocess_orthorectify: delivery + DEM (+ GCPs) -> orthorectified PAN/MUX DN."""
import logging
from pathlib import Path

from lsmap.preprocess import orthorectify_delivery

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
gcps = Path(snakemake.input.gcps) if snakemake.input.get("gcps") else None
out = orthorectify_delivery(Path(snakemake.input.delivery), Path(snakemake.input.dem),
                            Path(snakemake.output.geometry).parent, snakemake.params.settings,
                            gcps=gcps, threads=snakemake.threads)
logging.info("wrote %s", out)
