"""Rule benchmark_report: results/benchmark/report.html (Table 5, training curves, samples)."""
import contextlib
from pathlib import Path

from lsmap.report import build_benchmark_report

sm = snakemake  # noqa: F821 (injected by Snakemake)
with open(sm.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    train_dir = Path(sm.input.histories[0]).parent.parent
    build_benchmark_report(sm.input.table5, sm.output[0], train_dir=train_dir, models=list(sm.params.models),
                           samples_png=sm.input.samples)
    print(f"wrote {sm.output[0]}")
