"""Rule map_scene: one analysis-ready scene -> probability/mask COGs, polygons, scene statistics."""
import logging
from pathlib import Path

import torch

from lsmap.mapping import MappingOptions, map_scene

sm = snakemake  # noqa: F821 (injected by Snakemake)
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
torch.set_num_threads(sm.threads)
options = MappingOptions.from_config(sm.params.options, workers=sm.threads, progress=False)
outputs = map_scene(Path(sm.input.image), Path(sm.input.checkpoint), Path(sm.output.probability_tif).parent,
                    options=options, dem=Path(sm.input.dem) if sm.input.dem else None,
                    scene_id=sm.wildcards.scene, acquired=sm.params.acquired or None)
logging.info("wrote %s", {k: str(v) for k, v in outputs.items()})
