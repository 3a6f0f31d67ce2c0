"""Rule synthetic_dataset: chips + labels from the training landscape (lsmap.dataset.build_dataset)."""
import contextlib
import json
from pathlib import Path

from lsmap.dataset import build_dataset

sm = snakemake  # noqa: F821 (injected by Snakemake)
with open(sm.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    summary = build_dataset([Path(sm.input.scene)], Path(sm.input.polygons), Path(sm.output[0]).parent,
                            chip_size=sm.params.chip_px, split="random", seed=42, overwrite=True)
    print(json.dumps({k: v for k, v in summary.items() if k != "chips"}, indent=1, default=str))
