"""Cost of the full-read check of a delivery image (lsmap.rasterread.verify_blocks).

``lsmap preprocess`` decodes every block of the PAN and MUX images once before orthorectifying them,
so that a corrupt block fails by name instead of passing through the GDAL warper as no data. This
prints what that costs on a GF-6-like PAN image (uint16, DEFLATE, 256 px tiles, textured like land
so that it compresses like real data), against two peers measured in the same run: the old check
(first and last block only) and a plain full read without the CRC (the decode alone).

    nice -n 10 .venv/bin/python benchmarks/bench_verify.py --size 8000
    nice -n 10 .venv/bin/python benchmarks/bench_verify.py --size 16000 --threads 2

Each measurement runs in its own process; peak RSS is that process's VmHWM (imports included).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_pan(path: Path, size: int) -> None:
    """SIZE x SIZE uint16 DN, written in strips (bounded memory): smooth terrain-like texture + noise."""
    import rasterio
    from rasterio.windows import Window
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    base = gaussian_filter(rng.normal(0, 1, (size // 16 + 2, size // 16 + 2)), 2.0)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint16", tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate", BIGTIFF="IF_SAFER") as dst:
        for row in range(0, size, 1024):
            n = min(1024, size - row)
            coarse = np.repeat(np.repeat(base[row // 16: row // 16 + n // 16 + 1], 16, 0), 16, 1)[:n, :size]
            strip = 600 + 150 * coarse + rng.normal(0, 12, (n, size))
            dst.write(np.clip(strip, 1, 4095).astype(np.uint16), 1, window=Window(0, row, size, n))


def measure(kind: str, path: str, threads: int) -> dict:
    import rasterio
    from rasterio.windows import Window

    from lsmap.rasterread import block_aligned_windows, verify_blocks

    started = time.perf_counter()
    if kind == "verify_blocks":
        result = verify_blocks(path, threads=threads)
        extra = {"windows": result.windows, "crc32": f"{result.crc32:08x}"}
    elif kind == "first_and_last_block":
        with rasterio.open(path) as src:
            for window in (Window(0, 0, 256, 256), Window(src.width - 256, src.height - 256, 256, 256)):
                src.read(window=window)
        extra = {}
    else:  # full_read_no_crc, single thread
        with rasterio.open(path) as src:
            for window in block_aligned_windows(src):
                src.read(window=window)
        extra = {}
    seconds = time.perf_counter() - started
    return {"kind": kind, "seconds": round(seconds, 3), "peak_rss_mb": peak_rss_mb(), **extra}


def peak_rss_mb() -> int:
    """VmHWM of this process (ru_maxrss would carry the forking parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.threads)))
        return
    with tempfile.TemporaryDirectory(prefix="bench_verify-") as tmp:
        pan = Path(tmp) / "pan.tif"
        make_pan(pan, args.size)
        mpx, mb_file = args.size ** 2 / 1e6, pan.stat().st_size / 1e6
        print(f"PAN {args.size}² uint16 DEFLATE: {mpx:.0f} Mpx, {mb_file:.0f} MB on disk, {2 * mpx:.0f} MB decoded; "
              f"{args.threads} threads")
        for kind in ("first_and_last_block", "full_read_no_crc", "verify_blocks"):
            out = subprocess.run([sys.executable, __file__, "--child", kind, str(pan), "--threads", str(args.threads)],
                                 capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rate = mpx / row["seconds"] if row["seconds"] > 0 else float("inf")
            print(f"  {kind:<22} {row['seconds']:8.2f} s  {rate:8.1f} Mpx/s  peak RSS {row['peak_rss_mb']} MB"
                  f"{'  ' + str(row.get('windows')) + ' windows' if 'windows' in row else ''}")


if __name__ == "__main__":
    main()
