"""Batched inference over a scene of any size, with smooth blending and bounded memory.

Flow (see :mod:`lsmap.tiling` for the grid): the scene is read block by block (a window of a few
thousand pixels, never the whole scene). Each block goes to the model's device once, in its
on-disk dtype (uint16 is half the bytes of float32; on CUDA from pinned memory on a copy stream,
so the next block uploads while the model runs this one). On the device its tiles are cut out,
normalised with the checkpoint's mean/std, run through the model in batches, weighted by the
blending window and summed into the block's ``sum(w * p)`` and ``sum(w)`` tensors, which come
back to the host once per block. The :class:`BlockAssembler` adds each block's sums into the
cores they reach and, once every contributor of a core has arrived, hands ``sum(w * p) / sum(w)``
for that core to a writer thread. Memory therefore holds a few blocks and the thin spill strips
between them, whatever the scene size.

Threads of a local run: several readers decode blocks ahead in block order (GDAL releases the
GIL), one model worker per device takes the next block when it is free (``--device cuda``: one
per visible GPU; ``cpu_workers`` CPU workers), the main thread assembles, a writer thread writes.
Distributed run (``--scheduler``): blocks are dask.distributed tasks, each worker loads the model
once on its own GPU. A batch never spans two blocks, so every run feeds the model identical
batches and gives the same probabilities, whatever the number of workers.

Tiles that are entirely nodata are not run; pixels that are nodata in the scene stay nodata.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from lsmap.checkpoint import Checkpoint, load_checkpoint
from lsmap.device import autocast_dtype, available_cores, default_reader_threads, pick_device, resolve_devices
from lsmap.errors import LsmapError
from lsmap.rasterread import READ_ERRORS, read_error
from lsmap.tiling import Block, TileGrid, fit_block_px, intersection
from lsmap.tta import parse_tta, with_tta

PROBABILITY_NODATA = -1.0
MASK_NODATA = 255
READ_CACHE_MB = 256  # GDAL block cache while reading, unless the caller set one (GDAL default: 5 % of RAM)
ROW_PIXELS = 128  # pixels per row of the vectorised channels_last normalisation
OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

log = logging.getLogger("lsmap.predict")


@dataclass
class InferenceOptions:
    """How the model is run over the scene (defaults: see the README, section Mapping)."""

    tile_size: int = 512
    overlap_px: int = 128
    chunk_px: int = 4096
    batch_size: int = 8
    device: str = "auto"  # auto, cpu, cuda (every visible GPU), cuda:N, or a list cuda:0,cuda:2
    precision: str = "auto"
    scheduler: str | None = None  # None: threads here; "local": a LocalCluster; else a scheduler address
    dask_workers: int = 1
    progress: bool = True
    reader_threads: int | None = None  # None: from the cores (lsmap.device.default_reader_threads)
    torch_threads: int | None = None  # CPU threads of each model worker; None: the cores / CPU workers
    cpu_workers: int = 1  # model workers on the CPU device (each holds its own copy of the model)
    tta: str | None = None  # test-time augmentation (lsmap.tta.parse_tta): None, flip, flips, 8, or names


# ----------------------------------------------------------------------------------------- input


@dataclass(frozen=True)
class SceneInfo:
    """What inference needs to know about a scene, checked once up front."""

    path: str
    height: int
    width: int
    band_indexes: tuple[int, ...]  # 1-based, in the checkpoint's band order
    nodata: float | None
    profile: dict = field(hash=False, compare=False)
    mask_source: str = "gdal"  # "nodata": validity from the pixels; "all_valid"; "gdal": dataset_mask()


def inspect_scene(path: str | os.PathLike, checkpoint: Checkpoint) -> SceneInfo:
    """Open ``path`` and check it can be mapped by ``checkpoint``; one-line LsmapError if not."""
    path = str(path)
    try:
        src = rasterio.open(path)
    except Exception as exc:
        raise LsmapError(f"{path}: cannot open as a raster ({str(exc).splitlines()[0]})") from exc
    with src:
        if src.crs is None:
            raise LsmapError(f"{path}: scene has no CRS (georeference it first)")
        if src.transform.is_identity:
            raise LsmapError(f"{path}: scene has no geotransform (pixel grid not georeferenced)")
        bands = select_bands(path, list(src.descriptions), src.count, checkpoint.input.bands)
        return SceneInfo(path, src.height, src.width, bands, src.nodata, dict(src.profile), mask_source(src, bands))


def mask_source(src, bands: tuple[int, ...]) -> str:
    """How a block's validity is found. When every band's mask is its nodata value (the common
    case) it is computed from the pixels already read: GDAL's dataset_mask() would decode every
    block a second time once the block cache is smaller than the blocks in flight."""
    flags = [list(f) for f in src.mask_flag_enums]
    if len(bands) == src.count and all(f == [MaskFlags.all_valid] for f in flags):
        return "all_valid"
    if len(bands) == src.count and src.nodata is not None and all(f == [MaskFlags.nodata] for f in flags):
        return "nodata"
    return "gdal"


def select_bands(path: str, descriptions: list[str | None], count: int, wanted: list[str]) -> tuple[int, ...]:
    """1-based band indexes feeding the model: by band name when the scene names its bands,
    else all bands in file order when the count matches."""
    names = [(d or "").strip().lower() for d in descriptions]
    if all(w.lower() in names for w in wanted):
        return tuple(names.index(w.lower()) + 1 for w in wanted)
    if count == len(wanted):
        return tuple(range(1, count + 1))
    raise LsmapError(
        f"{path}: scene has {count} bands {names if any(names) else ''} but the model expects "
        f"{len(wanted)} ({', '.join(wanted)})".replace("  ", " ")
    )


def valid_from_pixels(pixels: np.ndarray, nodata: float) -> np.ndarray:
    """(h, w) bool: valid where any band is not nodata (GDAL's dataset mask of per-band nodata)."""
    if np.isnan(nodata):
        valid = ~np.isnan(pixels[0])
        for band in pixels[1:]:
            valid |= ~np.isnan(band)
        return valid
    valid = pixels[0] != nodata
    for band in pixels[1:]:  # band by band: no (C, h, w) bool temporary
        valid |= band != nodata
    return valid


def read_in_strips(src, bands: tuple[int, ...], window: Window) -> np.ndarray:
    """``src.read(bands, window)`` as strips of whole file-block rows.

    A read of a whole block window of a pixel-interleaved file goes through GDAL's block cache
    band by band: once the cache is smaller than the windows in flight (two readers x 143 MB
    here), every file block is decoded once per band (4x the decode). Strips of one block row
    (~18 MB) stay in a small cache, so each file block is decoded once.
    """
    r0, c0, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
    block_rows = src.block_shapes[0][0] if src.block_shapes else h
    strip = block_rows * max(1, -(-256 // block_rows))  # whole file blocks, >= 256 rows (striped files)
    pixels = np.empty((len(bands), h, w), dtype=src.dtypes[bands[0] - 1])
    row = r0
    while row < r0 + h:
        end = min(r0 + h, (row // strip + 1) * strip)  # up to the next file-block boundary
        src.read(list(bands), window=Window(c0, row, w, end - row), out=pixels[:, row - r0:end - r0])  # in place (strided)
        row = end
    return pixels


def read_block(src: rasterio.io.DatasetReader, info: SceneInfo, block: Block, tile_size: int):
    """Pixels and validity of a block's extent, padded to at least one tile.

    Returns ``(pixels (C, h, w) in the on-disk dtype and units, valid (h, w) bool)``; ``h, w >=
    tile_size``. Kept in the on-disk dtype (half the memory of float32 for uint16 scenes), which
    is also what goes to the device.
    """
    r0, r1, c0, c1 = block.extent
    h, w = max(r1 - r0, tile_size), max(c1 - c0, tile_size)
    window = Window(c0, r0, w, h)
    boundless = (r0 + h > info.height) or (c0 + w > info.width)
    try:  # a corrupt or truncated block: one LsmapError naming the file and the block
        if boundless:
            pixels = src.read(list(info.band_indexes), window=window, boundless=True,
                              fill_value=info.nodata if info.nodata is not None else 0)
        else:
            pixels = read_in_strips(src, info.band_indexes, window)
        if info.mask_source == "nodata":
            valid = valid_from_pixels(pixels, info.nodata)
        elif info.mask_source == "all_valid":
            valid = np.ones((h, w), bool)
        else:
            valid = src.dataset_mask(window=window, boundless=boundless) > 0
    except READ_ERRORS as exc:
        raise read_error(info.path, window, exc) from exc
    if boundless:  # GDAL may report padding as valid when the scene has no nodata value
        valid[r1 - r0:, :] = False
        valid[:, c1 - c0:] = False
    return pixels, valid


# ----------------------------------------------------------------------------------------- model


def build_network(checkpoint: Checkpoint, device: torch.device) -> torch.nn.Module:
    """The one place where the torch model is made from the checkpoint (model wrappers, such as
    test-time augmentation, hook in here)."""
    return checkpoint.build_model(device)


class TileModel:
    """The checkpoint's model on a device at a precision: (B, C, H, W) float32 -> (B, H, W) float32 0..1.

    ``probabilities`` keeps the result on the device (the engine); ``__call__`` returns numpy.
    Both CPU and CUDA run the model in ``channels_last`` (oneDNN and cuDNN pick their fast
    kernels for it: 2.2x on this CPU for the improved DeepLabV3+ in bf16).
    """

    def __init__(self, checkpoint: Checkpoint, device: str = "auto", precision: str = "auto", threads: int | None = None,
                 tta: str | None = None):
        self.device = pick_device(device)
        self.dtype = autocast_dtype(self.device, precision)
        self.threads = threads if threads and self.device.type == "cpu" else None
        if self.threads:
            torch.set_num_threads(self.threads)
        # lsmap.tta: the mean over flips/rotations, inside the same tiling and blending
        self.model = with_tta(build_network(checkpoint, self.device), tta).to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.mean = np.asarray(checkpoint.input.mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(checkpoint.input.std, dtype=np.float32)[:, None, None]
        self.mean_t = torch.from_numpy(self.mean[None]).to(self.device)  # (1, C, 1, 1)
        self.std_t = torch.from_numpy(self.std[None]).to(self.device)

    def normalise(self, pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(C, h, w) on-disk units -> model input; nodata pixels become 0 (the training mean)."""
        out = (pixels.astype(np.float32) - self.mean) / self.std
        out[:, ~valid] = 0.0
        return out

    def normalise_(self, batch: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """In place on the device: (B, C, T, T) float32 on-disk units -> model input, 0 where
        ``valid`` (B, T, T) is False. The same operations as :meth:`normalise`, so the same values."""
        channels = batch.shape[1]
        if batch.is_contiguous(memory_format=torch.channels_last) and batch[0, 0].numel() % ROW_PIXELS == 0:
            # channels_last: per-channel broadcasting over an innermost axis of C=4 does not
            # vectorise (4x slower on the CPU); rows of ROW_PIXELS pixels with mean/std tiled do
            rows = batch.permute(0, 2, 3, 1).reshape(-1, channels * ROW_PIXELS)
            rows.sub_(self.mean_t.view(-1).repeat(ROW_PIXELS)).div_(self.std_t.view(-1).repeat(ROW_PIXELS))
        else:
            batch.sub_(self.mean_t).div_(self.std_t)
        # on the CPU most batches are all valid: skip the fill (the test costs a fifth of it); on
        # CUDA the test would wait for the GPU, the fill does not
        if self.device.type != "cpu" or not bool(valid.all()):
            batch.masked_fill_(~valid[:, None], 0.0)
        return batch

    def as_input(self, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(batch)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W) float32 probabilities, on the model's device."""
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            logits = self.model(x)
        return torch.sigmoid(logits.float())[:, 0]

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        return self.probabilities(x).cpu().numpy()


# ------------------------------------------------------------------------------------ one block


@dataclass
class BlockResult:
    """A block's weighted sums over its extent and the scene validity over its core."""

    index: tuple[int, int]
    weighted_sum: np.ndarray  # (h, w) float32, sum(w * p) over the extent
    weight_sum: np.ndarray  # (h, w) float32, sum(w)
    core_valid: np.ndarray  # (core h, core w) bool
    tiles_run: int


@dataclass
class StagedBlock:
    """A block whose pixels are on (or on their way to) the model's device."""

    block: Block
    pixels: torch.Tensor  # (C, h, w) on-disk dtype (uint16 travels as int16), on the device
    valid: torch.Tensor  # (h, w) bool, on the device
    runnable: list  # the block's tiles that touch valid data
    core_valid: np.ndarray
    ready: object = None  # CUDA event: the upload has finished


def uint16_as_int16(pixels: np.ndarray) -> np.ndarray:
    """uint16 reinterpreted as int16 (same bytes): CUDA kernels cover int16 fully, uint16 barely."""
    return pixels.view(np.int16) if pixels.dtype == np.uint16 else pixels


class BlockRunner:
    """One model worker: a block's tiles through the model on its device, blended into device sums.

    Holds the batch buffers, the blending windows on the device, and on CUDA two pinned staging
    buffers and a copy stream. A CUDA out-of-memory at the current batch size halves the batch
    and retries (logged once per halving) instead of failing a long run.
    """

    def __init__(self, model: TileModel, grid: TileGrid, batch_size: int, name: str = "worker 0"):
        self.model, self.grid, self.batch_size, self.name = model, grid, batch_size, name
        self.device = model.device
        self.cuda = self.device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.staging: deque = deque()  # (pinned buffer, event of its last upload)
        self.windows: dict[tuple, torch.Tensor] = {}
        self.inputs: torch.Tensor | None = None
        self.input_valid: torch.Tensor | None = None

    # -- threads: on the CPU the cheap per-tile work runs on one thread; several OpenMP threads
    # for 512^2 copies cost more in synchronisation than they gain (20x slower on a busy 2-core host)
    def _pipeline_threads(self) -> None:
        if self.model.threads:
            torch.set_num_threads(1)

    def _model_threads(self) -> None:
        if self.model.threads:
            torch.set_num_threads(self.model.threads)

    # -- upload
    def stage(self, block: Block, pixels: np.ndarray, valid: np.ndarray) -> StagedBlock:
        t = self.grid.tile_size
        r0, c0 = block.extent[0], block.extent[2]
        cr0, cr1, cc0, cc1 = block.core
        runnable = [tile for tile in block.tiles if valid[tile.row - r0:tile.row - r0 + t, tile.col - c0:tile.col - c0 + t].any()]
        core_valid = valid[cr0 - r0:cr1 - r0, cc0 - c0:cc1 - c0].copy()
        host_pixels = torch.from_numpy(uint16_as_int16(pixels) if self.cuda else pixels)
        host_valid = torch.from_numpy(valid)
        if not self.cuda:
            return StagedBlock(block, host_pixels, host_valid, runnable, core_valid)
        return self._upload(block, host_pixels, host_valid, runnable, core_valid)

    def _pinned(self, nbytes: int) -> tuple[torch.Tensor, object]:
        """A pinned staging buffer whose previous upload has finished (two are kept, alternating)."""
        if len(self.staging) == 2:
            buffer, event = self.staging.popleft()
            event.synchronize()
            if buffer.numel() >= nbytes:
                return buffer, event
        return torch.empty(nbytes, dtype=torch.uint8, pin_memory=True), torch.cuda.Event()

    def _upload(self, block, host_pixels, host_valid, runnable, core_valid) -> StagedBlock:
        sizes = (host_pixels.numel() * host_pixels.element_size(), host_valid.numel())
        buffer, event = self._pinned(sum(sizes))
        pixels_pinned = buffer[:sizes[0]].view(host_pixels.dtype).view(host_pixels.shape)
        valid_pinned = buffer[sizes[0]:sum(sizes)].view(torch.bool).view(host_valid.shape)
        pixels_pinned.copy_(host_pixels)
        valid_pinned.copy_(host_valid)
        with torch.cuda.stream(self.copy_stream):
            pixels = pixels_pinned.to(self.device, non_blocking=True)
            valid = valid_pinned.to(self.device, non_blocking=True)
            event.record(self.copy_stream)
        self.staging.append((buffer, event))
        return StagedBlock(block, pixels, valid, runnable, core_valid, ready=event)

    # -- one block
    @torch.inference_mode()
    def compute(self, staged: StagedBlock) -> BlockResult:
        """Run a staged block: the sums come back to the host once, at the end."""
        if staged.ready is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(staged.ready)
            staged.pixels.record_stream(stream)  # allocated on the copy stream, used on this one
            staged.valid.record_stream(stream)
        r0, r1, c0, c1 = staged.block.extent
        sums = torch.zeros((2, r1 - r0, c1 - c0), dtype=torch.float32, device=self.device)
        tiles, done = staged.runnable, 0
        while done < len(tiles):
            chunk = tiles[done:done + self.batch_size]
            self._pipeline_threads()
            batch = self._normalised_batch(staged, chunk)
            self._model_threads()
            probabilities = self._forward(batch)
            self._pipeline_threads()
            self._blend(sums, staged.block, chunk, probabilities)
            done += len(chunk)
        self._model_threads()
        host = sums.cpu().numpy()
        return BlockResult(staged.block.index, host[0], host[1], staged.core_valid, len(tiles))

    def _normalised_batch(self, staged: StagedBlock, tiles: list) -> torch.Tensor:
        t, n = self.grid.tile_size, len(tiles)
        channels = staged.pixels.shape[0]
        if self.inputs is None or self.inputs.shape[0] < n or self.inputs.shape[1] != channels:
            size = max(n, self.batch_size)
            self.inputs = torch.empty((size, channels, t, t), dtype=torch.float32, device=self.device,
                                      memory_format=torch.channels_last)
            self.input_valid = torch.empty((size, t, t), dtype=torch.bool, device=self.device)
        r0, c0 = staged.block.extent[0], staged.block.extent[2]
        batch, valid = self.inputs[:n], self.input_valid[:n]
        for k, tile in enumerate(tiles):
            rows, cols = slice(tile.row - r0, tile.row - r0 + t), slice(tile.col - c0, tile.col - c0 + t)
            batch[k].copy_(staged.pixels[:, rows, cols])  # on-disk dtype -> float32 on the device
            valid[k].copy_(staged.valid[rows, cols])
        if self.cuda and staged.pixels.dtype == torch.int16 and staged.block is not None:
            unwrap_uint16_(batch)
        return self.model.normalise_(batch, valid)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The model on ``batch`` in sub-batches of at most ``batch_size``; halves it on OOM."""
        while True:
            try:
                if len(batch) <= self.batch_size:
                    return self.model.probabilities(batch)
                return torch.cat([self.model.probabilities(batch[i:i + self.batch_size])
                                  for i in range(0, len(batch), self.batch_size)])
            except OUT_OF_MEMORY:
                if self.batch_size <= 1:
                    raise
                halved = max(1, self.batch_size // 2)
                log.warning("%s (%s): out of memory at batch %d, batch halved to %d", self.name, self.device,
                            self.batch_size, halved)
                self.batch_size = halved
                if self.cuda:
                    torch.cuda.empty_cache()

    def _window(self, tile, h: int, w: int) -> torch.Tensor:
        i, j = tile.index
        key = (i > 0, i < len(self.grid.row_origins) - 1, j > 0, j < len(self.grid.col_origins) - 1, h, w)
        if key not in self.windows:
            self.windows[key] = torch.from_numpy(np.ascontiguousarray(self.grid.weights(tile)[:h, :w])).to(self.device)
        return self.windows[key]

    def _blend(self, sums: torch.Tensor, block: Block, tiles: list, probabilities: torch.Tensor) -> None:
        r0, r1, c0, c1 = block.extent
        for tile, probability in zip(tiles, probabilities):
            h = min(tile.size, r1 - tile.row)  # a tile only overhangs the scene when it is smaller than a tile
            w = min(tile.size, c1 - tile.col)
            weights = self._window(tile, h, w)
            rows, cols = slice(tile.row - r0, tile.row - r0 + h), slice(tile.col - c0, tile.col - c0 + w)
            sums[0, rows, cols].addcmul_(weights, probability[:h, :w])
            sums[1, rows, cols].add_(weights)

    def run(self, block: Block, pixels: np.ndarray, valid: np.ndarray) -> BlockResult:
        return self.compute(self.stage(block, pixels, valid))


def unwrap_uint16_(batch: torch.Tensor) -> torch.Tensor:
    """Float values of uint16 pixels that travelled as int16: negative values are x - 65536."""
    return batch.remainder_(65536.0)


def worker_failure(path: str, block_index, worker: str, exc: BaseException) -> LsmapError:
    """The one line a run fails with when a worker dies: the file, the block and the worker."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, LsmapError):
        reason = f"{type(exc).__name__}: {reason}"
    return LsmapError(f"{path}: block {tuple(block_index)} failed on {worker}: {reason}"[:600])


# -------------------------------------------------------------------------------------- assembly


class BlockAssembler:
    """Adds block results into the cores they reach; hands each core on once it is complete.

    A core waits only for its contributors (itself and the blocks just above/left of it); what
    waits is the spill strips, never whole blocks of the next row, so memory stays bounded.
    """

    def __init__(self, grid: TileGrid, sink: Callable[[Block, np.ndarray], None]):
        self.grid, self.sink = grid, sink
        self.blocks = {b.index: b for b in grid.blocks}
        self.waiting = {k: set(v) for k, v in grid.contributors().items()}
        self.pieces: dict[tuple[int, int], list] = {k: [] for k in self.blocks}
        self.valid: dict[tuple[int, int], np.ndarray] = {}

    def add(self, result: BlockResult) -> None:
        source = self.blocks[result.index]
        self.valid[result.index] = result.core_valid
        sr0, _, sc0, _ = source.extent
        for target_index in list(self.waiting):
            if result.index not in self.waiting[target_index]:
                continue
            target = self.blocks[target_index]
            r0, r1, c0, c1 = intersection(source.extent, target.core)
            rows, cols = slice(r0 - sr0, r1 - sr0), slice(c0 - sc0, c1 - sc0)
            # spill strips are copied, so the block's full arrays go once its own core is done
            own = target_index == result.index
            self.pieces[target_index].append(((r0, c0), *(a[rows, cols] if own else a[rows, cols].copy()
                                                           for a in (result.weighted_sum, result.weight_sum))))
            self.waiting[target_index].discard(result.index)
            if not self.waiting[target_index]:
                self._finish(target)

    def _finish(self, block: Block) -> None:
        cr0, cr1, cc0, cc1 = block.core
        weighted = np.zeros((cr1 - cr0, cc1 - cc0), np.float32)
        weights = np.zeros_like(weighted)
        # sum pieces in a fixed order (source block index) so the result does not depend on arrival order
        for (r0, c0), ws, w in sorted(self.pieces.pop(block.index), key=lambda p: p[0]):
            weighted[r0 - cr0:r0 - cr0 + ws.shape[0], c0 - cc0:c0 - cc0 + ws.shape[1]] += ws
            weights[r0 - cr0:r0 - cr0 + w.shape[0], c0 - cc0:c0 - cc0 + w.shape[1]] += w
        valid = self.valid.pop(block.index) & (weights > 0)
        probability = np.full(weighted.shape, PROBABILITY_NODATA, np.float32)
        np.divide(weighted, weights, out=probability, where=valid)
        np.clip(probability, 0.0, 1.0, out=probability, where=valid)
        del self.waiting[block.index]
        self.sink(block, probability)

    @property
    def done(self) -> bool:
        return not self.waiting


# ------------------------------------------------------------------------------- local threads


def read_cache_env() -> rasterio.Env:
    """GDAL's block cache for the run: READ_CACHE_MB unless the caller chose a size. GDAL's default
    (5 % of RAM, 1.2 GB here) fills with blocks that are never read again: it was most of the growth
    of inference's peak RSS from 8,192² to 16,384² (1.7 -> 2.75 GB)."""
    try:
        chosen = "GDAL_CACHEMAX" in rasterio.env.getenv() or "GDAL_CACHEMAX" in os.environ
    except Exception:  # no Env active
        chosen = "GDAL_CACHEMAX" in os.environ
    return rasterio.Env() if chosen else rasterio.Env(GDAL_CACHEMAX=READ_CACHE_MB * 1024**2)  # bytes: rasterio passes an int as bytes


class BlockReader:
    """Several threads decode blocks ahead, in block order, at most ``ahead`` blocks in flight.

    ``take()`` hands out the next block and its pending read; each thread keeps its own dataset.
    """

    def __init__(self, info: SceneInfo, grid: TileGrid, threads: int, ahead: int):
        self.info, self.grid = info, grid
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="lsmap-read")
        self.local = threading.local()
        self.datasets: list = []
        self.order = iter(grid.blocks)
        self.pending: deque[tuple[Block, Future]] = deque()
        self.lock = threading.Lock()
        self.closed = False
        for _ in range(ahead):
            self._submit()

    def _submit(self) -> None:
        block = next(self.order, None)
        if block is not None:
            self.pending.append((block, self.pool.submit(self._read, block)))

    def _read(self, block: Block):
        src = getattr(self.local, "src", None)
        if src is None:
            src = self.local.src = rasterio.open(self.info.path)
            with self.lock:
                self.datasets.append(src)
        return read_block(src, self.info, block, self.grid.tile_size)

    def take(self) -> tuple[Block, Future] | None:
        with self.lock:
            if self.closed or not self.pending:
                return None
            item = self.pending.popleft()
        with self.lock:
            if not self.closed:
                self._submit()
        return item

    def close(self) -> None:
        with self.lock:
            self.closed = True
            for _, future in self.pending:
                future.cancel()
        self.pool.shutdown(wait=True)
        for src in self.datasets:
            src.close()


class CoreWriter:
    """Calls the sink from one thread, so that compressing and writing cores overlaps the model."""

    def __init__(self, sink: Callable[[Block, np.ndarray], None], depth: int = 4):
        self.sink = sink
        self.items: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._write, name="lsmap-write", daemon=True)
        self.thread.start()

    def _write(self) -> None:
        while True:
            item = self.items.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self.sink(*item)
                except BaseException as exc:  # handed to the main thread at the next submit/close
                    self.error = exc

    def submit(self, block: Block, probability: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self.items.put((block, probability))

    def close(self) -> None:
        self.items.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


_WORKER_DONE = object()


@dataclass
class _WorkerFailed:
    error: LsmapError


def _model_worker(info, grid, checkpoint, device, options, threads, name, reader: BlockReader, results: queue.Queue, stop):
    """Thread body: take blocks from the reader until none is left; results (or the failure) go to ``results``."""
    block = None
    try:
        model = TileModel(checkpoint, str(device), options.precision, threads, tta=options.tta)
        runner = BlockRunner(model, grid, options.batch_size, name)
        lookahead = 1 if runner.cuda else 0  # CUDA: upload block k+1 while the model runs block k
        staged: deque[StagedBlock] = deque()
        while True:
            item = None if stop.is_set() else reader.take()
            if item is not None:
                block, pending = item
                staged.append(runner.stage(block, *pending.result()))
            if not staged:
                break
            if item is not None and len(staged) <= lookahead:
                continue
            current = staged.popleft()
            block = current.block
            results.put(runner.compute(current))
    except BaseException as exc:
        where = block.index if block is not None else ("none", "none")
        results.put(_WorkerFailed(worker_failure(info.path, where, f"worker {name} ({device})", exc)))
    finally:
        results.put(_WORKER_DONE)


def make_grid(info: SceneInfo, options: InferenceOptions, workers: int) -> TileGrid:
    """The scene's grid with blocks small enough for at least two blocks per worker."""
    block_px = fit_block_px(info.height, info.width, options.tile_size, options.overlap_px, options.chunk_px, 2 * workers) \
        if workers > 1 else options.chunk_px
    return TileGrid(info.height, info.width, options.tile_size, options.overlap_px, block_px)


def run_local(info: SceneInfo, checkpoint: Checkpoint, options: InferenceOptions, sink, progress) -> tuple[TileGrid, int, str]:
    """Reader threads -> one model worker per device -> assembly here -> a writer thread."""
    devices = resolve_devices(options.device, options.cpu_workers)
    if not devices:
        raise LsmapError(f"device {options.device!r}: torch sees no CUDA device")
    cores = available_cores()
    cpu_workers = sum(d.type == "cpu" for d in devices)
    threads = options.torch_threads or max(1, cores // max(1, cpu_workers))
    readers = options.reader_threads or default_reader_threads(cores)
    grid = make_grid(info, options, len(devices))
    # in flight, each ~170 MB at the default chunk_px: a block per reader, one per worker, one result
    # per worker waiting for assembly; cores (67 MB) wait for the writer two deep
    reader = BlockReader(info, grid, readers, ahead=readers)
    writer = CoreWriter(sink, depth=2)
    assembler = BlockAssembler(grid, writer.submit)
    results: queue.Queue = queue.Queue(maxsize=len(devices))
    stop = threading.Event()
    names = [f"{d.type}#{i}" for i, d in enumerate(devices)]
    workers = [threading.Thread(target=_model_worker, name=f"lsmap-model-{n}", daemon=True,
                                args=(info, grid, checkpoint, d, options, threads, n, reader, results, stop))
               for d, n in zip(devices, names)]
    for worker in workers:
        worker.start()
    running, tiles_run, failure = len(workers), 0, None
    try:
        while running:
            item = results.get()
            if item is _WORKER_DONE:
                running -= 1
            elif isinstance(item, _WorkerFailed):
                failure = failure or item.error
                stop.set()
            elif failure is None:
                progress.update(len(assembler.blocks[item.index].tiles))
                tiles_run += item.tiles_run
                assembler.add(item)
        if failure is not None:
            raise failure
        writer.close()
    finally:
        stop.set()
        while running:  # let blocked workers put their last result and end
            if results.get() is _WORKER_DONE:
                running -= 1
        reader.close()
        if writer.thread.is_alive():
            writer.items.put(None)
    if not assembler.done:
        raise AssertionError("blending finished with cores still waiting")
    described = ",".join(str(d) for d in devices) if cpu_workers <= 1 else f"cpu x{cpu_workers}"
    return grid, tiles_run, described


# ---------------------------------------------------------------------------------- distributed


_WORKER_CACHE: dict[tuple, tuple[BlockRunner, SceneInfo]] = {}


def worker_plan(nthreads: dict[str, int], cores: dict[str, int], pinned: dict[str, bool] | None = None) -> dict[str, tuple[int, int]]:
    """Per dask worker address: (torch threads, rank among the workers of its host).

    A worker's torch threads are its host's cores shared in proportion to its own dask threads
    (two 1-thread workers on a 16-core node get 8 each, whatever the rest of the cluster); a
    worker pinned to its own cores (``srun --cpus-per-task``: its affinity is smaller than the
    node) takes all of those. The rank picks its GPU when several are visible to it.
    """
    from urllib.parse import urlparse

    hosts: dict[str, list[str]] = {}
    for address in nthreads:
        hosts.setdefault(urlparse(address).hostname or address, []).append(address)
    plan = {}
    for addresses in hosts.values():
        host_threads = sum(nthreads[a] for a in addresses)
        for rank, address in enumerate(sorted(addresses)):
            own = cores.get(address, 1)
            share = own if (pinned or {}).get(address) else own * nthreads[address] // max(1, host_threads)
            plan[address] = (max(1, share), rank)
    return plan


def worker_device(requested: str, rank: int) -> str:
    """The GPU of the ``rank``-th worker of a host when it sees several (``dask worker --nworkers N``);
    with one visible GPU per worker (SLURM ``--gpus-per-task=1``) simply that one."""
    if requested in ("auto", "cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return f"cuda:{rank % torch.cuda.device_count()}"
    return requested


def _distributed_block(scene: str, checkpoint_path: str, grid: TileGrid, block_index: int, batch_size: int,
                       device: str, precision: str, plan: dict, tta: str | None = None) -> BlockResult:
    """A dask task: one block, with the model (and its test-time augmentation) loaded once per
    worker process and scene."""
    try:
        from distributed import get_worker

        address = get_worker().address
    except (ImportError, ValueError):
        address = "local"
    threads, rank = plan.get(address, (None, 0))
    device = worker_device(device, rank)
    block = grid.blocks[block_index]
    try:
        key = (scene, checkpoint_path, os.path.getmtime(checkpoint_path), device, precision, grid, batch_size, tta)
        if key not in _WORKER_CACHE:
            _WORKER_CACHE.clear()
            checkpoint = load_checkpoint(checkpoint_path)
            model = TileModel(checkpoint, device, precision, threads, tta=tta)
            _WORKER_CACHE[key] = (BlockRunner(model, grid, batch_size, address), inspect_scene(scene, checkpoint))
        runner, info = _WORKER_CACHE[key]
        with rasterio.open(scene) as src:
            pixels, valid = read_block(src, info, block, grid.tile_size)
        return runner.run(block, pixels, valid)
    except Exception as exc:
        raise worker_failure(scene, block.index, f"dask worker {address} ({device})", exc) from None


def _visible_cores() -> tuple[int, bool]:
    """This worker's cores and whether it is pinned to fewer than the machine has."""
    cores = available_cores()
    return cores, cores < (os.cpu_count() or cores)


def connect(scheduler: str):
    """A dask Client for an address (tcp://host:8786) or a scheduler file (``dask scheduler --scheduler-file``)."""
    from distributed import Client

    if scheduler.endswith(".json") and Path(scheduler).is_file():
        return Client(scheduler_file=scheduler)
    return Client(scheduler)


def run_distributed(info: SceneInfo, checkpoint_path: str, options: InferenceOptions, sink, progress) -> tuple[TileGrid, int, str]:
    """Blocks as dask.distributed tasks; at most two per worker thread in flight (bounded memory)."""
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if options.scheduler in (None, "", "local"):
        cluster = LocalCluster(n_workers=options.dask_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = connect(options.scheduler)
    writer = None
    try:
        nthreads = client.nthreads()
        threads = max(1, sum(nthreads.values()))
        visible = client.run(_visible_cores)
        plan = worker_plan(nthreads, {a: v[0] for a, v in visible.items()}, {a: v[1] for a, v in visible.items()})
        grid = make_grid(info, options, threads)
        writer = CoreWriter(sink)
        assembler = BlockAssembler(grid, writer.submit)
        pending = iter(range(len(grid.blocks)))
        futures = as_completed()
        block_of = {}

        def submit_next() -> bool:
            index = next(pending, None)
            if index is None:
                return False
            future = client.submit(_distributed_block, info.path, str(checkpoint_path), grid, index, options.batch_size,
                                   options.device, options.precision, plan, options.tta, pure=False)
            block_of[future.key] = grid.blocks[index].index
            futures.add(future)
            return True

        for _ in range(2 * threads):
            submit_next()
        tiles_run = 0
        for future in futures:
            try:
                result = future.result()
            except LsmapError:
                raise
            except Exception as exc:  # the worker process died (KilledWorker) or the task could not run
                last = getattr(getattr(exc, "last_worker", None), "address", "unknown")
                raise worker_failure(info.path, block_of[future.key], f"dask worker {last}", exc) from None
            future.release()
            progress.update(len(assembler.blocks[result.index].tiles))
            tiles_run += result.tiles_run
            assembler.add(result)
            submit_next()
        writer.close()
        writer = None
        if not assembler.done:
            raise AssertionError("blending finished with cores still waiting")
        return grid, tiles_run, f"dask x{threads} ({options.device})"
    finally:
        if writer is not None and writer.thread.is_alive():
            writer.items.put(None)
        client.close()
        if cluster is not None:
            cluster.close()


# ------------------------------------------------------------------------------------- top level


@dataclass
class PredictionRun:
    """Figures of one inference run (for logs, provenance and the benchmarks)."""

    tiles_total: int
    tiles_run: int
    seconds: float
    device: str
    precision: str

    @property
    def tiles_per_s(self) -> float:
        return self.tiles_run / self.seconds if self.seconds > 0 else float("nan")


def make_progress(total: int, enabled: bool, desc: str):
    from lsmap.progress import progress_bar

    return progress_bar(total, desc, "tile", enabled)


def predict_scene(scene: str | os.PathLike, checkpoint_path: str | os.PathLike,
                  sink: Callable[[Block, np.ndarray], None], options: InferenceOptions,
                  checkpoint: Checkpoint | None = None) -> PredictionRun:
    """Blend the model's probabilities over the whole scene, core by core.

    ``sink(block, probability)`` receives each block core's (h, w) float32 probabilities in 0..1
    (``PROBABILITY_NODATA`` where the scene is nodata) exactly once, from one writer thread;
    cores arrive in no fixed order. A worker that fails ends the run with one LsmapError naming
    the block and the worker.
    """
    checkpoint = checkpoint or load_checkpoint(checkpoint_path)
    info = inspect_scene(scene, checkpoint)
    dtype = autocast_dtype(pick_device(options.device.split(",")[0]), options.precision)
    started = time.perf_counter()
    with make_progress(len(TileGrid(info.height, info.width, options.tile_size, options.overlap_px)), options.progress,
                       Path(scene).name) as progress:
        if options.scheduler is None:
            with read_cache_env():  # set here, in the calling thread: the cache is process-wide
                grid, tiles_run, devices = run_local(info, checkpoint, options, sink, progress)
        else:
            parse_tta(options.tta)  # a bad --tta fails here, not once per dask task
            grid, tiles_run, devices = run_distributed(info, str(checkpoint_path), options, sink, progress)
    return PredictionRun(len(grid), tiles_run, time.perf_counter() - started, devices,
                         str(dtype).replace("torch.", "") if dtype else "fp32")


def predict_array(scene: str | os.PathLike, checkpoint_path: str | os.PathLike, options: InferenceOptions) -> np.ndarray:
    """The whole probability raster in memory, (H, W) float32 (tests and small scenes only)."""
    with rasterio.open(scene) as src:
        out = np.full((src.height, src.width), PROBABILITY_NODATA, np.float32)

    def sink(block: Block, probability: np.ndarray) -> None:
        r0, r1, c0, c1 = block.core
        out[r0:r1, c0:c1] = probability

    predict_scene(scene, checkpoint_path, sink, options)
    return out
