"""Rule scheduled_pass: one scheduled pass over operations.inbox (lsmap.scheduled.run_scheduled).

Failed or quarantined deliveries are reported in the log and the run summary, not as a failed
job: they do not block the other deliveries and the next pass retries what can be retried. A pass
that finds another one running (the lock) logs one line and succeeds.
"""
import contextlib
import logging

import torch

from lsmap.scheduled import RunLocked, run_scheduled

sm = snakemake  # noqa: F821 (injected by Snakemake)
with open(sm.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(sm.threads)
    try:
        summary = run_scheduled(dict(sm.config), threads=sm.threads, echo=lambda line: print(line, flush=True))
    except RunLocked as exc:
        print(f"skipped: {exc}")
    else:
        if summary.failures:
            print(f"{len(summary.failures)} delivery(ies) failed or quarantined: see {summary.summary_markdown}")
