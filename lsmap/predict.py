"""Batched inference over a scene of any size, with smooth blending and bounded memory.

Flow (see :mod:`lsmap.tiling` for the grid): the scene is read block by block (a window of a few
thousand pixels, never the whole scene); each block's tiles are normalised with the checkpoint's
mean/std (on-disk units), run through the model in batches, weighted by the blending window and
summed into the block's ``sum(w * p)`` and ``sum(w)`` arrays. The :class:`BlockAssembler` adds
each block's sums into the cores they reach and, once every contributor of a core has arrived,
writes ``sum(w * p) / sum(w)`` for that core and frees it. Memory therefore holds a few blocks
and the thin spill strips between them, whatever the scene size.

Threaded run (default): a prefetch thread reads and normalises the next block's batches while
the main thread runs the model (torch and GDAL both release the GIL). Distributed run: blocks are
dask.distributed tasks (each worker loads the model once); results are assembled in the same way
and, because a batch never spans two blocks, both runs feed the model identical batches and give
identical probabilities.

Tiles that are entirely nodata are not run; pixels that are nodata in the scene stay nodata.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from lsmap.checkpoint import Checkpoint, load_checkpoint
from lsmap.rasterread import READ_ERRORS, read_error
from lsmap.device import autocast_dtype, pick_device
from lsmap.errors import LsmapError
from lsmap.tiling import Block, TileGrid, intersection
from lsmap.tta import with_tta

PROBABILITY_NODATA = -1.0
MASK_NODATA = 255


@dataclass
class InferenceOptions:
    """How the model is run over the scene (defaults: see the README, section Mapping)."""

    tile_size: int = 512
    overlap_px: int = 128
    chunk_px: int = 4096
    batch_size: int = 8
    device: str = "auto"
    precision: str = "auto"
    scheduler: str | None = None  # None: threads here; "local": a LocalCluster; else a scheduler address
    dask_workers: int = 1
    progress: bool = True
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
        return SceneInfo(path, src.height, src.width, bands, src.nodata, dict(src.profile))


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


def read_block(src: rasterio.io.DatasetReader, info: SceneInfo, block: Block, tile_size: int):
    """Pixels and validity of a block's extent, padded to at least one tile.

    Returns ``(pixels (C, h, w) in the on-disk dtype and units, valid (h, w) bool)``; ``h, w >=
    tile_size``. Kept in the on-disk dtype (half the memory of float32 for uint16 scenes);
    tiles are converted when they are normalised.
    """
    r0, r1, c0, c1 = block.extent
    h, w = max(r1 - r0, tile_size), max(c1 - c0, tile_size)
    window = Window(c0, r0, w, h)
    boundless = (r0 + h > info.height) or (c0 + w > info.width)
    try:  # a corrupt or truncated block: one LsmapError naming the file and the block
        pixels = src.read(list(info.band_indexes), window=window, boundless=boundless,
                          fill_value=info.nodata if info.nodata is not None else 0)
        valid = src.dataset_mask(window=window, boundless=boundless) > 0
    except READ_ERRORS as exc:
        raise read_error(info.path, window, exc) from exc
    if boundless:  # GDAL may report padding as valid when the scene has no nodata value
        valid[r1 - r0:, :] = False
        valid[:, c1 - c0:] = False
    return pixels, valid


# ----------------------------------------------------------------------------------------- model


class TileModel:
    """The checkpoint's model on a device at a precision: (B, C, H, W) float32 -> (B, H, W) float32 0..1."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto", precision: str = "auto", threads: int | None = None,
                 tta: str | None = None):
        self.device = pick_device(device)
        self.dtype = autocast_dtype(self.device, precision)
        if threads and self.device.type == "cpu":
            torch.set_num_threads(threads)
        self.model = with_tta(checkpoint.build_model(self.device), tta)  # lsmap.tta: mean over flips/rotations
        if self.device.type == "cuda":
            # channels_last lets cuDNN use tensor-core kernels under autocast
            self.model = self.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.mean = np.asarray(checkpoint.input.mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(checkpoint.input.std, dtype=np.float32)[:, None, None]

    def normalise(self, pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(C, h, w) on-disk units -> model input; nodata pixels become 0 (the training mean)."""
        out = (pixels.astype(np.float32) - self.mean) / self.std
        out[:, ~valid] = 0.0
        return out

    def as_input(self, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(batch)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        return x

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            logits = self.model(x)
        return torch.sigmoid(logits.float())[:, 0].cpu().numpy()


# ------------------------------------------------------------------------------------ one block


@dataclass
class Batch:
    block: Block
    tiles: list  # the Tiles in this batch
    input: torch.Tensor  # (B, C, T, T) float32
    last: bool  # the block's last batch


@dataclass
class BlockResult:
    """A block's weighted sums over its extent and the scene validity over its core."""

    index: tuple[int, int]
    weighted_sum: np.ndarray  # (h, w) float32, sum(w * p) over the extent
    weight_sum: np.ndarray  # (h, w) float32, sum(w)
    core_valid: np.ndarray  # (core h, core w) bool
    tiles_run: int


def block_batches(src, info: SceneInfo, grid: TileGrid, block: Block, model: TileModel, batch_size: int) -> Iterator[Batch | BlockResult]:
    """The batches of one block (nodata tiles left out), then an empty result shell to fill."""
    pixels, valid = read_block(src, info, block, grid.tile_size)
    r0, c0 = block.extent[0], block.extent[2]
    cr0, cr1, cc0, cc1 = block.core
    shell = BlockResult(block.index, None, None, valid[cr0 - r0:cr1 - r0, cc0 - c0:cc1 - c0].copy(), 0)
    t = grid.tile_size
    runnable = [tile for tile in block.tiles if valid[tile.row - r0:tile.row - r0 + t, tile.col - c0:tile.col - c0 + t].any()]
    for start in range(0, len(runnable), batch_size):
        chunk = runnable[start:start + batch_size]
        arrays = [model.normalise(pixels[:, tile.row - r0:tile.row - r0 + t, tile.col - c0:tile.col - c0 + t],
                                  valid[tile.row - r0:tile.row - r0 + t, tile.col - c0:tile.col - c0 + t]) for tile in chunk]
        yield Batch(block, chunk, model.as_input(np.stack(arrays)), start + batch_size >= len(runnable))
    yield shell


class BlockAccumulator:
    """Sums weighted tile probabilities of one block over its extent."""

    def __init__(self, grid: TileGrid, block: Block):
        self.grid, self.block = grid, block
        r0, r1, c0, c1 = block.extent
        self.weighted_sum = np.zeros((r1 - r0, c1 - c0), np.float32)
        self.weight_sum = np.zeros((r1 - r0, c1 - c0), np.float32)
        self.tiles_run = 0

    def add(self, tiles, probabilities: np.ndarray) -> None:
        r0, r1, c0, c1 = self.block.extent
        for tile, prob in zip(tiles, probabilities):
            h = min(tile.size, r1 - tile.row)  # a tile only overhangs the scene when it is smaller than a tile
            w = min(tile.size, c1 - tile.col)
            weights = self.grid.weights(tile)[:h, :w]
            rows = slice(tile.row - r0, tile.row - r0 + h)
            cols = slice(tile.col - c0, tile.col - c0 + w)
            self.weighted_sum[rows, cols] += weights * prob[:h, :w]
            self.weight_sum[rows, cols] += weights
            self.tiles_run += 1

    def result(self, shell: BlockResult) -> BlockResult:
        shell.weighted_sum, shell.weight_sum, shell.tiles_run = self.weighted_sum, self.weight_sum, self.tiles_run
        return shell


def predict_block(src, info: SceneInfo, grid: TileGrid, block: Block, model: TileModel, batch_size: int) -> BlockResult:
    """Run one block without prefetching (the unit of work of a dask worker)."""
    accumulator = BlockAccumulator(grid, block)
    for item in block_batches(src, info, grid, block, model, batch_size):
        if isinstance(item, BlockResult):
            return accumulator.result(item)
        accumulator.add(item.tiles, model(item.input))
    raise AssertionError("block_batches always ends with a result shell")


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
            # copies, so the block's full arrays can be freed once its own core is done
            self.pieces[target_index].append(((r0, c0), result.weighted_sum[rows, cols].copy(), result.weight_sum[rows, cols].copy()))
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


# ---------------------------------------------------------------------------------------- runners


def _prefetching(iterator: Iterator, depth: int) -> Iterator:
    """Run ``iterator`` in a thread, ``depth`` items ahead of the consumer."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    sentinel = object()

    def produce():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(sentinel)
        except BaseException as exc:  # hand the reader's error to the consumer
            items.put(exc)

    thread = threading.Thread(target=produce, name="lsmap-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is sentinel:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def run_threaded(info: SceneInfo, grid: TileGrid, model: TileModel, batch_size: int, assembler: BlockAssembler, progress) -> int:
    """Blocks in row-major order; reading/normalising runs ahead in a prefetch thread."""
    def all_batches():
        with rasterio.open(info.path) as src:
            for block in grid.blocks:
                yield from block_batches(src, info, grid, block, model, batch_size)

    tiles_run = 0
    accumulator = None
    for item in _prefetching(all_batches(), depth=3):
        if isinstance(item, BlockResult):
            block = assembler.blocks[item.index]
            result = (accumulator or BlockAccumulator(grid, block)).result(item)
            progress.update(len(block.tiles) - result.tiles_run)  # skipped nodata tiles
            tiles_run += result.tiles_run
            assembler.add(result)
            accumulator = None
            continue
        accumulator = accumulator or BlockAccumulator(grid, item.block)
        accumulator.add(item.tiles, model(item.input))
        progress.update(len(item.tiles))
    return tiles_run


_WORKER_CACHE: dict[tuple, tuple[TileModel, SceneInfo]] = {}


def _distributed_block(scene: str, checkpoint_path: str, grid: TileGrid, block_index: int, batch_size: int,
                       device: str, precision: str, threads: int) -> BlockResult:
    """A dask task: one block, with the model loaded once per worker process and scene."""
    key = (scene, checkpoint_path, os.path.getmtime(checkpoint_path), device, precision)
    if key not in _WORKER_CACHE:
        _WORKER_CACHE.clear()
        checkpoint = load_checkpoint(checkpoint_path)
        _WORKER_CACHE[key] = (TileModel(checkpoint, device, precision, threads), inspect_scene(scene, checkpoint))
    model, info = _WORKER_CACHE[key]
    with rasterio.open(scene) as src:
        return predict_block(src, info, grid, grid.blocks[block_index], model, batch_size)


def run_distributed(info: SceneInfo, checkpoint_path: str, grid: TileGrid, options: InferenceOptions,
                    assembler: BlockAssembler, progress) -> int:
    """Blocks as dask.distributed tasks; at most two per worker thread in flight (bounded memory)."""
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if options.scheduler in (None, "", "local"):
        cluster = LocalCluster(n_workers=options.dask_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(options.scheduler)
    try:
        threads = max(1, sum(client.nthreads().values()))
        torch_threads = max(1, (os.cpu_count() or 1) // threads)
        pending = iter(range(len(grid.blocks)))
        futures = as_completed()

        def submit_next() -> bool:
            index = next(pending, None)
            if index is None:
                return False
            futures.add(client.submit(_distributed_block, info.path, str(checkpoint_path), grid, index,
                                      options.batch_size, options.device, options.precision, torch_threads,
                                      pure=False))
            return True

        for _ in range(2 * threads):
            submit_next()
        tiles_run = 0
        for future in futures:
            result = future.result()
            future.release()
            progress.update(len(assembler.blocks[result.index].tiles))
            tiles_run += result.tiles_run
            assembler.add(result)
            submit_next()
        return tiles_run
    finally:
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
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="tile", disable=not enabled, mininterval=1.0 if os.isatty(2) else 30.0,
                smoothing=0.1, dynamic_ncols=True)


def predict_scene(scene: str | os.PathLike, checkpoint_path: str | os.PathLike,
                  sink: Callable[[Block, np.ndarray], None], options: InferenceOptions,
                  checkpoint: Checkpoint | None = None) -> PredictionRun:
    """Blend the model's probabilities over the whole scene, core by core.

    ``sink(block, probability)`` receives each block core's (h, w) float32 probabilities in 0..1
    (``PROBABILITY_NODATA`` where the scene is nodata) exactly once; cores arrive in no fixed order.
    """
    checkpoint = checkpoint or load_checkpoint(checkpoint_path)
    info = inspect_scene(scene, checkpoint)
    grid = TileGrid(info.height, info.width, options.tile_size, options.overlap_px, options.chunk_px)
    assembler = BlockAssembler(grid, sink)
    device = pick_device(options.device)
    dtype = autocast_dtype(device, options.precision)
    started = time.perf_counter()
    with make_progress(len(grid), options.progress, Path(scene).name) as progress:
        if options.scheduler is None:
            model = TileModel(checkpoint, options.device, options.precision, tta=options.tta)
            tiles_run = run_threaded(info, grid, model, options.batch_size, assembler, progress)
        else:  # (test-time augmentation is not passed to dask workers yet)
            if options.tta not in (None, "none"):
                raise LsmapError("--tta runs with the threaded predictor only (no --scheduler)")
            tiles_run = run_distributed(info, str(checkpoint_path), grid, options, assembler, progress)
    if not assembler.done:
        raise AssertionError("blending finished with cores still waiting")
    return PredictionRun(len(grid), tiles_run, time.perf_counter() - started, str(device),
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
