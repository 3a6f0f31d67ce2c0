"""The one checked raster-read path: GDAL read failures become one LsmapError naming the file and
the block, and a full-read pass that decodes every block of an input once.

GDAL reports a corrupt compressed block (``ZIPDecode: Decoding error``, a truncated strip) as a
failed read, which rasterio raises as ``RasterioIOError: Read failed. See previous exception``: the
message that says what went wrong is in the exception chain. Some readers never raise at all: the
GDAL warper behind orthorectification prints the error and carries on with the block as no data,
so a corrupt delivery used to come out as a reflectance product with 0 % valid pixels. Inputs read
by such a reader are therefore decoded in full first (:func:`verify_blocks`): every block is read
and folded into a CRC-32, so a block that does not decode fails here, by name, before any output
is written. Its cost is one decode of the file (README, "Bad input").
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from lsmap.errors import LsmapError

READ_ERRORS = (RasterioError, OSError)
VERIFY_WINDOW_PX = 1024  # windows of whole blocks, about this many px a side: few Python calls per GB
VERIFY_CACHE_MB = 64


def gdal_reason(exc: BaseException) -> str:
    """The most specific message in an exception chain (rasterio hides GDAL's behind 'Read failed')."""
    messages = []
    while exc is not None:
        text = " ".join(str(exc).split())
        if text and "see previous exception" not in text.lower():
            messages.append(text)
        exc = exc.__cause__ or exc.__context__
    reason = messages[-1] if messages else "read failed"
    return reason if len(reason) <= 200 else reason[:200] + "..."


def describe_window(window: Window) -> str:
    r0, c0 = int(window.row_off), int(window.col_off)
    return f"rows {r0}-{r0 + int(window.height) - 1}, cols {c0}-{c0 + int(window.width) - 1}"


def read_error(path: str | os.PathLike, window: Window | None, exc: BaseException) -> LsmapError:
    """The one-line error for a failed read of ``window`` (None: the whole raster) of ``path``."""
    where = f"block at {describe_window(window)}" if window is not None else "raster"
    return LsmapError(f"{path}: cannot read {where} ({gdal_reason(exc)})")


def read_window(src: rasterio.io.DatasetReader, window: Window, indexes=None, **kwargs) -> np.ndarray:
    """``src.read(indexes, window=window, **kwargs)``; a failed read is an LsmapError naming the file
    and the block."""
    try:
        return src.read(indexes, window=window, **kwargs)
    except READ_ERRORS as exc:
        raise read_error(src.name, window, exc) from exc


def check_complete(src: rasterio.io.DatasetReader) -> None:
    """A GeoTIFF cut short (a copy interrupted after its header) is named as such, at once, instead of
    failing later as a read error or being mistaken for a scene without CRS: the byte ranges of the
    first and last blocks of each band (GDAL's TIFF block offsets) must lie inside the file."""
    if src.driver != "GTiff" or not os.path.isfile(src.name):
        return
    size = os.path.getsize(src.name)
    block_h, block_w = src.block_shapes[0]
    last = (-(-src.width // block_w) - 1, -(-src.height // block_h) - 1)
    end = 0
    for band in range(1, src.count + 1):
        for x, y in ((0, 0), last):
            offset = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=band)
            length = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=band)
            if offset and length and int(offset) > 0:  # offset 0: a sparse block, never written
                end = max(end, int(offset) + int(length))
    if end > size:
        raise LsmapError(f"{src.name}: file is truncated ({size} bytes, its image data run to byte {end}); "
                         "copy it again")


def open_checked(path: str | os.PathLike) -> rasterio.io.DatasetReader:
    """``rasterio.open`` for input rasters: a missing file, a folder, a non-raster or a truncated
    GeoTIFF is one LsmapError naming the file."""
    path = str(path)
    if os.path.isdir(path):
        raise LsmapError(f"{path}: is a folder, not a raster file")
    if not os.path.exists(path):
        raise LsmapError(f"{path}: file not found")
    try:
        src = rasterio.open(path)
    except READ_ERRORS as exc:
        raise LsmapError(f"{path}: cannot open as a raster ({gdal_reason(exc)})") from exc
    try:
        if path.lower().endswith((".tif", ".tiff")) and src.driver not in ("GTiff", "COG"):
            raise LsmapError(f"{path}: is a {src.driver} file named .tif, not a GeoTIFF")
        check_complete(src)
    except BaseException:
        src.close()
        raise
    return src


def block_aligned_windows(src: rasterio.io.DatasetReader, target_px: int = VERIFY_WINDOW_PX) -> Iterator[Window]:
    """Windows made of whole blocks (band 1's block shape), about ``target_px`` a side."""
    block_h, block_w = src.block_shapes[0]
    step_h = max(1, target_px // block_h) * block_h
    step_w = max(1, target_px // block_w) * block_w
    for row in range(0, src.height, step_h):
        for col in range(0, src.width, step_w):
            yield Window(col, row, min(step_w, src.width - col), min(step_h, src.height - row))


@dataclass(frozen=True)
class Verification:
    path: str
    windows: int
    megabytes_decoded: float
    crc32: int
    seconds: float


def verify_blocks(path: str | os.PathLike, threads: int = 2) -> Verification:
    """Decode every block of every band of ``path`` once (CRC-32 of the decoded bytes, in window
    order); the first block that does not decode raises an LsmapError naming the file and the
    block. Memory: ``threads`` windows of about ``VERIFY_WINDOW_PX``² px × bands."""
    path = str(path)
    started = time.perf_counter()
    local = threading.local()
    opened: list = []

    def dataset():
        if not hasattr(local, "src"):  # rasterio datasets are not thread-safe: one per thread
            local.src = rasterio.open(path)
            opened.append(local.src)
        return local.src

    def crc_of(window: Window) -> tuple[int, int]:
        data = read_window(dataset(), window)
        return zlib.crc32(np.ascontiguousarray(data).view(np.uint8)), data.nbytes

    try:
        with rasterio.open(path) as src:
            windows = list(block_aligned_windows(src))
    except READ_ERRORS as exc:
        raise read_error(path, None, exc) from exc
    crc, nbytes = 0, 0
    try:  # a small block cache: every block is read once, caching them would only grow the process
        with rasterio.Env(GDAL_CACHEMAX=VERIFY_CACHE_MB), ThreadPoolExecutor(max(1, threads)) as pool:
            for block_crc, block_bytes in pool.map(crc_of, windows):
                crc = zlib.crc32(block_crc.to_bytes(4, "little"), crc)
                nbytes += block_bytes
    finally:
        for src in opened:
            src.close()
    return Verification(path, len(windows), nbytes / 1e6, crc, time.perf_counter() - started)
