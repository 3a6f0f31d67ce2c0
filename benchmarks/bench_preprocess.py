"""Throughput (Mpx/s of PAN-grid pixels) and peak memory of each preprocessing step.

Generates a GF-6-like L1A delivery of about SIZE x SIZE PAN pixels on disk (ground truth at 16 m,
so generation itself stays light), then runs each step in its own process and reports its wall
time, PAN-grid megapixels per second and peak resident memory (ru_maxrss of that process).

    nice -n 10 .venv/bin/python benchmarks/bench_preprocess.py --size 20000   # the issue's scene
    nice -n 10 .venv/bin/python benchmarks/bench_preprocess.py --size 6000    # a few minutes on 2 cores
    nice -n 10 .venv/bin/python benchmarks/bench_preprocess.py --size 8000 --paired b2a9272 --rounds 2
        # the code before issue 17 (b2a9272) and this tree alternately on one delivery, medians

A step's child imports the lsmap of its tree (PYTHONPATH); the parent checks which one it got.

Peak memory should not grow with SIZE (every step streams windows or dask chunks). Two checks: the
highest RSS of each chunk write, by quarter of the scan (a step that accumulated memory would
rise along the scan), and two sizes compared (a large scene has more full interior blocks and fills
GDAL's block cache up to its cap, 256 MB; ``--gdal-cache-mb`` changes that cap).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("generate", "orthorectify", "reflectance", "terrain")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(work: Path, size: int) -> None:
    from affine import Affine
    from scipy.ndimage import gaussian_filter

    from lsmap.gf6 import write_synthetic_delivery

    truth_res = 16.0
    n = int(size * 2.0 * 1.12 / truth_res) + 8  # the inscribed, rotated image is ~SIZE PAN px wide
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:n, 0:n] / n
    dem = 1500 + 800 * np.sin(3 * xx + 1) * np.cos(2 * yy) + 400 * yy
    tex = gaussian_filter(rng.normal(0, 1, (n, n)), 1.0)
    refl = np.stack([0.05 + 0.01 * tex, 0.08 + 0.015 * tex, 0.09 + 0.02 * tex, 0.28 + 0.04 * tex]).astype(np.float32)
    transform = Affine(truth_res, 0, 400000.0, 0, -truth_res, 3600000.0 + n * truth_res)
    write_synthetic_delivery(work / "delivery", refl, transform, "EPSG:32648", dem, strip_rows=256, name="GF6_PMS_BENCH_L1A1")
    import rasterio

    with rasterio.open(work / "dem.tif", "w", driver="GTiff", width=n, height=n, count=1, dtype="float32",
                       crs="EPSG:32648", transform=transform) as dst:
        dst.write(dem.astype(np.float32), 1)


def watch_write_blocks() -> list[float]:
    """Highest RSS (MB, sampled every 10 ms) during each chunk write of the step, in write order.

    A step whose memory grew with the scene would show it here as a rising trend along the scan.
    Chunks are written by rioxarray's dask store target (``RasterioWriter.__setitem__``), or by
    ``_BandWriter`` in the code before issue 17 (paired runs; rioxarray is then not imported).
    """
    import os
    import threading

    from lsmap import preprocess

    if hasattr(preprocess, "_BandWriter"):
        RasterioWriter = preprocess._BandWriter
    else:
        from rioxarray.raster_writer import RasterioWriter

    peaks: list[float] = [0.0]  # [0]: outside any write
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20

    def sample() -> None:
        while True:
            with open("/proc/self/statm") as statm:
                rss = int(statm.read().split()[1]) * page_mb
            peaks[-1] = max(peaks[-1], rss)
            time.sleep(0.01)

    write = RasterioWriter.__setitem__

    def write_one_chunk(self, key, item):
        peaks.append(0.0)
        return write(self, key, item)

    RasterioWriter.__setitem__ = write_one_chunk
    threading.Thread(target=sample, daemon=True).start()
    return peaks


def by_quarter(blocks: list[float]) -> str:
    """'a / b / c / d': the highest per-block RSS in each quarter of the scan."""
    if len(blocks) < 4:
        return "-"
    edges = np.linspace(0, len(blocks), 5).astype(int)
    return " / ".join(f"{max(blocks[a:b]):.0f}" for a, b in zip(edges[:-1], edges[1:]))


def run_step(step: str, work: Path, threads: int, gdal_cache_mb: int | None, ard_name: str = "ard") -> dict:
    from lsmap.calibration import default_settings
    from lsmap import preprocess

    if gdal_cache_mb:
        preprocess.GDAL_CACHE_MB = gdal_cache_mb
    settings = default_settings()
    # orthorectification writes through GDAL's warper: no chunk writes to watch, and importing the
    # watcher's rioxarray there would add its own ~100 MB (xarray, pandas) to a step that never uses it
    blocks = watch_write_blocks() if step in ("reflectance", "terrain") else [0.0]
    ard = work / ard_name
    start = time.perf_counter()
    if step == "generate":
        generate(work, int((work / "size").read_text()))
    elif step == "orthorectify":
        preprocess.orthorectify_delivery(work / "delivery", work / "dem.tif", ard, settings, threads=threads)
    elif step == "reflectance":
        preprocess.make_reflectance(ard / "pan_dn.tif", ard / "mux_dn.tif", ard / "reflectance.tif", settings,
                                    threads=threads)
    elif step == "terrain":
        preprocess.make_terrain(work / "dem.tif", ard / "reflectance.tif", ard, settings, threads=threads)
    seconds = time.perf_counter() - start
    import rasterio

    pan = next((work / "delivery").glob("*-PAN.tiff")) if step == "generate" else ard / "pan_dn.tif"
    with rasterio.open(pan) as src:
        mpx = src.width * src.height / 1e6
    import lsmap

    return {"lsmap": str(Path(lsmap.__file__).parents[1]), "step": step, "seconds": round(seconds, 1), "pan_mpx": round(mpx, 1), "blocks": by_quarter(blocks[1:]),
            "mpx_per_s": round(mpx / seconds, 2), "peak_rss_mb": round(_peak_mb())}


def run_child(step: str, args, lsmap_root: Path, ard_name: str = "ard") -> dict:
    """One step in a fresh process with the lsmap of ``lsmap_root``; its figures."""
    import os

    cache = ["--gdal-cache-mb", str(args.gdal_cache_mb)] if args.gdal_cache_mb else []
    out = subprocess.run([sys.executable, __file__, "--step", step, "--workdir", str(args.workdir), "--ard", ard_name,
                          "--threads", str(args.threads), *cache], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(lsmap_root)})
    if out.returncode != 0:
        sys.exit(f"step {step} ({lsmap_root}) failed:\n{out.stderr[-3000:]}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(figures["lsmap"]).resolve() != lsmap_root.resolve():
        sys.exit(f"step {step} imported {figures['lsmap']}, not {lsmap_root}")
    return figures


def tree_at(revision: str) -> Path:
    """The lsmap package of a git revision, extracted once under .bench-cache/ (for paired runs)."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{revision}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    target = ROOT / ".bench-cache" / "preprocess-before" / commit[:12]
    if not (target / "lsmap" / "preprocess.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "lsmap"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def row(r: dict, label: str = "") -> str:
    return (f"{r['step'] + label:<22}{r['seconds']:>9}{r['pan_mpx']:>9}{r['mpx_per_s']:>8}{r['peak_rss_mb']:>13}   "
            f"{r['blocks']}")


def paired(args) -> None:
    """Old and new code alternately on one delivery, each tree with its own outputs, ``rounds`` times;
    then per step the medians and new / old."""
    trees = {"old": tree_at(args.paired), "new": ROOT}
    results: dict[tuple[str, str], list[dict]] = {}
    for round_ in range(args.rounds):
        order = ("old", "new") if round_ % 2 == 0 else ("new", "old")  # alternate who runs first
        for step in STEPS[1:]:
            for name in order:
                r = run_child(step, args, trees[name], f"ard_{name}")
                results.setdefault((step, name), []).append(r)
                print(row(r, f" ({name})"), flush=True)
    print(f"\nmedians over {args.rounds} round(s), old = {args.paired}:")
    for step in STEPS[1:]:
        med = {name: {k: float(np.median([r[k] for r in results[(step, name)]])) for k in ("mpx_per_s", "peak_rss_mb")}
               for name in trees}
        print(f"  {step:<13} old {med['old']['mpx_per_s']:.2f} Mpx/s {med['old']['peak_rss_mb']:.0f} MB, new "
              f"{med['new']['mpx_per_s']:.2f} Mpx/s {med['new']['peak_rss_mb']:.0f} MB: throughput "
              f"{med['new']['mpx_per_s'] / med['old']['mpx_per_s']:.2f}x, peak RSS "
              f"{med['new']['peak_rss_mb'] - med['old']['peak_rss_mb']:+.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20000, help="PAN pixels per side (approximately)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lsmap-bench-preprocess"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gdal-cache-mb", type=int, help="GDAL block cache per step (default: lsmap's, 256 MB)")
    parser.add_argument("--paired", metavar="REV", help="run each step for the lsmap of git revision REV (e.g. b2a9272, "
                        "before issue 17) and for this tree alternately, on one delivery")
    parser.add_argument("--rounds", type=int, default=2, help="with --paired: rounds of old+new per step")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--ard", default="ard", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    if args.step:  # child process: one step, print its figures as JSON
        print(json.dumps(run_step(args.step, args.workdir, args.threads, args.gdal_cache_mb, args.ard)))
        return
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    (args.workdir / "size").write_text(str(args.size))
    print(f"preprocessing benchmark, ~{args.size} x {args.size} PAN px, {args.threads} threads, work dir {args.workdir}")
    print(f"{'step':<22}{'seconds':>9}{'PAN Mpx':>9}{'Mpx/s':>8}{'peak RSS MB':>13}   peak RSS of the chunk writes by quarter of the scan")
    started = time.perf_counter()
    if args.paired:
        print(row(run_child("generate", args, ROOT)), flush=True)
        paired(args)
    else:
        for step in STEPS:
            print(row(run_child(step, args, ROOT)), flush=True)
        sizes = {p.name: p.stat().st_size / 1e6 for p in (args.workdir / "ard").glob("*.tif")}
        print("outputs (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(sizes.items())))
    print(f"{time.perf_counter() - started:.0f} s in all")
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
