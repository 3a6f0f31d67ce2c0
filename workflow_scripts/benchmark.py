"""Rule benchmark_models: Table 5 (both metric protocols, cost) and the sample-chip figure."""
import contextlib
from pathlib import Path

import torch

from lsmap.benchmark import run_benchmark

sm = snakemake  # noqa: F821 (injected by Snakemake)
with open(sm.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    torch.set_num_threads(sm.threads)
    settings = sm.config.get("benchmark", {})
    checkpoints = dict(zip(sm.params.models, map(Path, sm.input.checkpoints)))
    run_benchmark(checkpoints, Path(sm.params.dataset), Path(sm.output.table).parent,
                  split=settings.get("split", "Test"), device=settings.get("device", "auto"),
                  sample_chips=int(settings.get("sample_chips", 6)))
    print(Path(sm.output.markdown).read_text())
