"""Throughput (Mpx/s of PAN-grid pixels) and peak memory of each preprocessing step.

Generates a GF-6-like L1A delivery of about SIZE x SIZE PAN pixels on disk (ground truth at 16 m,
so generation itself stays light), then runs each step in its own process and reports its wall
time, PAN-grid megapixels per second and peak resident memory (ru_maxrss of that process).

    nice -n 10 .venv/bin/python benchmarks/bench_preprocess.py --size 20000   # the issue's scene
    nice -n 10 .venv/bin/python benchmarks/bench_preprocess.py --size 6000    # a few minutes on 2 cores

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
    Chunks are written by rioxarray's dask store target (``RasterioWriter.__setitem__``).
    """
    import os
    import threading

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


def run_step(step: str, work: Path, threads: int, gdal_cache_mb: int | None) -> dict:
    from lsmap.calibration import default_settings
    from lsmap import preprocess

    if gdal_cache_mb:
        preprocess.GDAL_CACHE_MB = gdal_cache_mb
    settings = default_settings()
    blocks = watch_write_blocks()
    start = time.perf_counter()
    if step == "generate":
        generate(work, int((work / "size").read_text()))
    elif step == "orthorectify":
        preprocess.orthorectify_delivery(work / "delivery", work / "dem.tif", work / "ard", settings, threads=threads)
    elif step == "reflectance":
        preprocess.make_reflectance(work / "ard" / "pan_dn.tif", work / "ard" / "mux_dn.tif",
                                    work / "ard" / "reflectance.tif", settings, threads=threads)
    elif step == "terrain":
        preprocess.make_terrain(work / "dem.tif", work / "ard" / "reflectance.tif", work / "ard", settings, threads=threads)
    seconds = time.perf_counter() - start
    import rasterio

    pan = next((work / "delivery").glob("*-PAN.tiff")) if step == "generate" else work / "ard" / "pan_dn.tif"
    with rasterio.open(pan) as src:
        mpx = src.width * src.height / 1e6
    return {"step": step, "seconds": round(seconds, 1), "pan_mpx": round(mpx, 1), "blocks": by_quarter(blocks[1:]),
            "mpx_per_s": round(mpx / seconds, 2), "peak_rss_mb": round(_peak_mb())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20000, help="PAN pixels per side (approximately)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lsmap-bench-preprocess"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gdal-cache-mb", type=int, help="GDAL block cache per step (default: lsmap's, 256 MB)")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    if args.step:  # child process: one step, print its figures as JSON
        print(json.dumps(run_step(args.step, args.workdir, args.threads, args.gdal_cache_mb)))
        return
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    (args.workdir / "size").write_text(str(args.size))
    print(f"preprocessing benchmark, ~{args.size} x {args.size} PAN px, {args.threads} threads, work dir {args.workdir}")
    print(f"{'step':<14}{'seconds':>9}{'PAN Mpx':>9}{'Mpx/s':>8}{'peak RSS MB':>13}   peak RSS of the chunk writes by quarter of the scan")
    for step in STEPS:
        cache = ["--gdal-cache-mb", str(args.gdal_cache_mb)] if args.gdal_cache_mb else []
        out = subprocess.run([sys.executable, __file__, "--step", step, "--workdir", str(args.workdir),
                              "--threads", str(args.threads), *cache], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"step {step} failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['step']:<14}{r['seconds']:>9}{r['pan_mpx']:>9}{r['mpx_per_s']:>8}{r['peak_rss_mb']:>13}   {r['blocks']}",
              flush=True)
    sizes = {p.name: p.stat().st_size / 1e6 for p in (args.workdir / "ard").glob("*.tif")}
    print("outputs (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(sizes.items())))
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
