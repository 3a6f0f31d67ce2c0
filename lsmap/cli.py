"""The ``lsmap`` command: one verb per stage.

Verbs are registered in ``VERBS`` as (module, help). A verb's module is imported only when that
verb runs, so ``lsmap --help`` answers at once without importing torch. Each verb module defines
``build_parser(parser: argparse.ArgumentParser) -> None`` and ``run(args) -> int | None``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

import lsmap
from lsmap.errors import LsmapError

VERBS: dict[str, tuple[str, str]] = {
    "models": ("lsmap.models.cli", "list the segmentation models and their parameter counts"),
    "preprocess": ("lsmap.preprocess", "GF-6 PMS L1A delivery + DEM -> analysis-ready 2 m reflectance COG, DEM, slope, aspect"),
    "map": ("lsmap.mapping", "map landslides on an analysis-ready scene: probability, mask, polygons, statistics"),
    "dataset": ("lsmap.dataset", "make a training dataset in the paper layout (import chips, or build from scenes + polygons)"),
    "train": ("lsmap.train", "train a segmentation model on a dataset (resumes from last.pt)"),
    "evaluate": ("lsmap.evaluate", "score a checkpoint on a dataset split (whole-split and per-chip metrics)"),
    "benchmark": ("lsmap.benchmark", "Table 5: evaluate trained models, count parameters/GFLOPs, time tiles/s"),
    "report": ("lsmap.report", "HTML reports (region, benchmark), quicklooks, and a headless-browser check"),
    "export": ("lsmap.export", "share a region's landslides as GeoJSON (RFC 7946) and KML"),
    "scheduled-run": ("lsmap.scheduled", "map each new delivery of an inbox once; ledger, quarantine, cumulative inventory"),
}


class OneLineParser(argparse.ArgumentParser):
    """A wrong option or value is one line too (argparse prints the whole usage before it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see '{self.prog} --help')\n")


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lsmap",
        description="Map earthquake-triggered landslides on large high-resolution scenes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="verbs:\n" + "\n".join(f"  {verb:<16}{help_}" for verb, (_, help_) in VERBS.items())
        + "\n\nRun 'lsmap VERB --help' for a verb's options.",
    )
    parser.add_argument("--version", action="version", version=f"lsmap {lsmap.__version__}")
    parser.add_argument("verb", nargs="?", choices=sorted(VERBS), metavar="VERB")
    return parser


LIBRARY_LOGGERS = ("rasterio", "pyogrio", "fiona", "py.warnings")


def quiet_library_messages() -> None:
    """Python warnings and GDAL's messages (which rasterio forwards to its loggers) stay out of the
    terminal, so that a failure is the one ``lsmap VERB: error:`` line, whose message already carries
    GDAL's reason. ``LSMAP_DEBUG=1`` shows them all, as log lines."""
    logging.captureWarnings(True)  # warnings become records of the "py.warnings" logger
    debug = os.environ.get("LSMAP_DEBUG", "") not in ("", "0")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.CRITICAL + 1)
    if not debug:
        warnings.simplefilter("ignore")  # also those raised before logging is configured


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] not in VERBS:
        top.parse_args(argv[:1] or ["--help"])
        return 2
    verb, rest = argv[0], argv[1:]
    quiet_library_messages()
    module = importlib.import_module(VERBS[verb][0])
    parser = OneLineParser(prog=f"lsmap {verb}", description=VERBS[verb][1])
    module.build_parser(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except LsmapError as exc:
        print(f"lsmap {verb}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the user gave that the system refuses (permissions, a full disk, ...)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"lsmap {verb}: error: {where}{exc.strerror or ' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lsmap {verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
