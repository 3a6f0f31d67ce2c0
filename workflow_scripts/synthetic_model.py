"""Rule synthetic_model: a small model trained briefly on the demo dataset (lsmap.train)."""
import contextlib
import shutil
from pathlib import Path

import torch

from lsmap.train import TrainConfig, train

sm = snakemake  # noqa: F821 (injected by Snakemake)
with open(sm.log[0], "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    torch.set_num_threads(sm.threads)
    out = Path(sm.output[0])
    best = train(TrainConfig(**sm.params.train, progress=False), Path(sm.input[0]).parent, out.parent)
    if Path(best) != out:
        shutil.copyfile(best, out)
    print(f"best checkpoint: {out}")
