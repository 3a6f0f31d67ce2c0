"""Progress of long work, one helper for every stage (preprocessing, inference, polygons, evaluation):
a tqdm bar on a terminal; otherwise one log line at most every ``LOG_INTERVAL_S`` seconds and one
at the end, which reads as a line per interval in a Snakemake log file."""

from __future__ import annotations

import logging
import sys
import time

LOG_INTERVAL_S = 30.0  # without a terminal, one progress line at most this often


class Progress:
    """Counts ``update(n)`` calls towards ``total`` (``None``: unknown); a context manager.

    On a terminal (stderr is a tty) it draws a tqdm bar. Otherwise it writes INFO records to
    ``logger`` (``desc: 3 of 12 blocks (25%), 0.8 blocks/s``); where logging is not set up to show
    them (no handler, or INFO filtered out), tqdm writes the same interval lines to stderr instead,
    so nothing goes silent.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "item", enabled: bool = True,
                 logger: logging.Logger | None = None, interval_s: float = LOG_INTERVAL_S):
        self.total, self.desc, self.unit, self.interval_s = total, desc, unit, interval_s
        self.log = logger or logging.getLogger("lsmap")
        self.done = self.logged = 0
        self.started = self.last_line = time.monotonic()
        terminal = sys.stderr.isatty()
        self.lines = enabled and not terminal and self.log.isEnabledFor(logging.INFO) and self.log.hasHandlers()
        self.bar = None
        if enabled and not self.lines:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, mininterval=1.0 if terminal else interval_s,
                            smoothing=0.1, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.lines:
            now = time.monotonic()
            if now - self.last_line >= self.interval_s or self.done == self.total:
                self.write_line(now)

    def write_line(self, now: float) -> None:
        self.last_line, self.logged = now, self.done
        self.log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        """``desc: done of total units (pct%), rate units/s``."""
        rate = self.done / max(now - self.started, 1e-9)
        units = self.unit if self.unit[-1:].isupper() else self.unit + "s"  # blocks, tiles; but MB
        if self.total:
            return (f"{self.desc}: {self.done} of {self.total} {units} ({100 * self.done / self.total:.0f}%), "
                    f"{rate:.3g} {units}/s")
        return f"{self.desc}: {self.done} {units}, {rate:.3g} {units}/s"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.lines and self.done != self.logged:  # the last count (a total not known ahead, or not reached)
            self.write_line(time.monotonic())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool = True,
                 logger: logging.Logger | None = None) -> Progress:
    """A :class:`Progress` over ``total`` units (the name the stages call)."""
    return Progress(total, desc, unit, enabled, logger)
