"""Rule import_training_dataset: plain image/mask folders (+ split lists) -> the paper layout."""
import contextlib
import json
from pathlib import Path

from lsmap.dataset import import_dataset

sm = snakemake  # noqa: F821 (injected by Snakemake)
with open(sm.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    source = sm.params.source
    summary = import_dataset(Path(source["images"]), Path(source["masks"]), Path(sm.params.dataset),
                             splits_dir=Path(source["splits"]) if source.get("splits") else None,
                             seed=int(source.get("seed", 42)), bands=source.get("bands"), overwrite=True)
    print(json.dumps(summary, indent=2))
