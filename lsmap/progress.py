"""Progress for long steps: a tqdm bar on a terminal, a log line every 30 s otherwise (as inference)."""

from __future__ import annotations

import os


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool = True):
    """A tqdm bar over ``total`` units; when stderr is not a terminal it redraws at most every 30 s,
    which in a log file reads as one line per interval."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, mininterval=1.0 if os.isatty(2) else 30.0,
                smoothing=0.1, dynamic_ncols=True)
