"""Rule train_model: train one model with the workflow's training settings (resumes from last.pt)."""
import contextlib
from pathlib import Path

import torch

from lsmap.train import TrainConfig, train

sm = snakemake  # noqa: F821 (injected by Snakemake)
# append: an interrupted run's log stays above the resumed run's
with open(sm.log[0], "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    torch.set_num_threads(sm.threads)
    config = TrainConfig.from_workflow_config(sm.config, sm.wildcards.model, progress=False)
    best = train(config, Path(sm.params.dataset), Path(sm.params.out_dir))
    print(f"best checkpoint: {best}")
