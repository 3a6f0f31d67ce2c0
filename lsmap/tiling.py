"""The tile grid, the blocks of work, and the blending window.

A scene of any size is covered by square tiles of ``tile_size`` pixels placed every
``stride = tile_size - overlap_px`` pixels; the last row and column of tiles are shifted back so
that they end exactly on the scene edge (no tile hangs over the edge unless the scene is smaller
than one tile, in which case the one tile is padded). The grid depends only on the scene shape,
the tile size and the overlap, never on how the work is chunked, which is what makes the blended
probabilities independent of the dask chunk size.

Tiles are grouped into *blocks* (the unit of work handed to a thread or a dask worker and the
unit of output writing): a block owns a rectangle of consecutive tile rows and columns. Its
*core* is the pixel rectangle from its first tile origin to the next block's first tile origin;
the cores partition the scene. A block's tiles also reach past its core into the neighbouring
cores (the *spill*), which the assembler adds to those cores' sums.

Blending: every tile prediction is multiplied by a weight window that is 1 in the middle and
falls smoothly (raised cosine) to a small positive value over ``overlap_px`` at each side that has
a neighbouring tile; sides on the scene edge are not tapered. The blended probability is
``sum(w * p) / sum(w)``, so the weights seen by each pixel sum to one: edge pixels are neither
dropped nor counted twice, and no tile edge shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from rasterio.windows import Window

from lsmap.errors import LsmapError


def tile_origins(length: int, tile_size: int, overlap_px: int) -> list[int]:
    """Start offsets (pixels) of the tiles along one axis of ``length`` pixels.

    Regular every ``tile_size - overlap_px``; the last tile is shifted back to end at
    ``length``. A scene shorter than a tile gets one tile at 0 (read padded).
    """
    if tile_size <= 0 or overlap_px < 0 or overlap_px >= tile_size:
        raise LsmapError(f"tile size {tile_size} px with overlap {overlap_px} px: need 0 <= overlap < tile size")
    if length <= tile_size:
        return [0]
    stride = tile_size - overlap_px
    origins = list(range(0, length - tile_size, stride))
    origins.append(length - tile_size)
    return origins


def raised_cosine_ramp(n: int) -> np.ndarray:
    """(n,) float64 weights rising smoothly from near 0 to near 1, never exactly 0."""
    position = (np.arange(n) + 0.5) / n
    return 0.5 - 0.5 * np.cos(np.pi * position)


def axis_weights(tile_size: int, overlap_px: int, taper_start: bool, taper_end: bool) -> np.ndarray:
    """(tile_size,) float64 1-D blending profile; tapered only on sides that have a neighbour."""
    weights = np.ones(tile_size)
    ramp = min(overlap_px, tile_size // 2)
    if ramp > 0:
        if taper_start:
            weights[:ramp] = raised_cosine_ramp(ramp)
        if taper_end:
            weights[tile_size - ramp:] = raised_cosine_ramp(ramp)[::-1]
    return weights


@dataclass(frozen=True)
class Tile:
    """One model input: rows ``row:row+size`` and columns ``col:col+size`` of the scene."""

    row: int
    col: int
    size: int
    index: tuple[int, int]  # (tile row, tile column) in the grid

    @property
    def window(self) -> Window:
        return Window(self.col, self.row, self.size, self.size)


@dataclass(frozen=True)
class Block:
    """A rectangle of tiles processed together; ``core`` partitions the scene, ``extent`` is
    the union of its tiles (core plus spill into the next cores), both clipped to the scene."""

    index: tuple[int, int]
    tiles: tuple[Tile, ...]
    core: tuple[int, int, int, int]  # row0, row1, col0, col1
    extent: tuple[int, int, int, int]

    @property
    def core_window(self) -> Window:
        r0, r1, c0, c1 = self.core
        return Window(c0, r0, c1 - c0, r1 - r0)

    @property
    def extent_window(self) -> Window:
        r0, r1, c0, c1 = self.extent
        return Window(c0, r0, c1 - c0, r1 - r0)


@dataclass(frozen=True)
class TileGrid:
    """The tiles and blocks covering a ``height`` x ``width`` scene."""

    height: int
    width: int
    tile_size: int
    overlap_px: int
    block_px: int = 4096

    @property
    def stride(self) -> int:
        return self.tile_size - self.overlap_px

    @cached_property
    def row_origins(self) -> list[int]:
        return tile_origins(self.height, self.tile_size, self.overlap_px)

    @cached_property
    def col_origins(self) -> list[int]:
        return tile_origins(self.width, self.tile_size, self.overlap_px)

    @property
    def tiles_per_block(self) -> int:
        """Tiles along each side of a block: ``block_px`` rounded to whole strides (>= 1)."""
        return max(1, round(self.block_px / self.stride))

    def __len__(self) -> int:
        return len(self.row_origins) * len(self.col_origins)

    def tile(self, i: int, j: int) -> Tile:
        return Tile(self.row_origins[i], self.col_origins[j], self.tile_size, (i, j))

    def tiles(self) -> list[Tile]:
        return [self.tile(i, j) for i in range(len(self.row_origins)) for j in range(len(self.col_origins))]

    def weights(self, tile: Tile) -> np.ndarray:
        """(tile_size, tile_size) float32 blending window of ``tile``; tapers only towards neighbours."""
        i, j = tile.index
        rows = axis_weights(self.tile_size, self.overlap_px, i > 0, i < len(self.row_origins) - 1)
        cols = axis_weights(self.tile_size, self.overlap_px, j > 0, j < len(self.col_origins) - 1)
        return np.outer(rows, cols).astype(np.float32)

    @staticmethod
    def _groups(origins: list[int], per_group: int, length: int, tile_size: int):
        """(first tile, last tile + 1, core start, core end, extent end) along one axis."""
        groups = []
        for first in range(0, len(origins), per_group):
            last = min(first + per_group, len(origins))
            core_end = origins[last] if last < len(origins) else length
            extent_end = min(length, origins[last - 1] + tile_size)
            groups.append((first, last, origins[first], core_end, extent_end))
        return groups

    @cached_property
    def blocks(self) -> list[Block]:
        """Row-major list of blocks; their cores partition the scene exactly."""
        k = self.tiles_per_block
        row_groups = self._groups(self.row_origins, k, self.height, self.tile_size)
        col_groups = self._groups(self.col_origins, k, self.width, self.tile_size)
        blocks = []
        for bi, (i0, i1, r0, r1, re) in enumerate(row_groups):
            for bj, (j0, j1, c0, c1, ce) in enumerate(col_groups):
                tiles = tuple(self.tile(i, j) for i in range(i0, i1) for j in range(j0, j1))
                blocks.append(Block((bi, bj), tiles, (r0, r1, c0, c1), (r0, re, c0, ce)))
        return blocks

    def contributors(self) -> dict[tuple[int, int], list[tuple[int, int]]]:
        """For each block core, the blocks whose extent reaches into it (itself included)."""
        found: dict[tuple[int, int], list[tuple[int, int]]] = {b.index: [] for b in self.blocks}
        for source in self.blocks:
            for target in self.blocks:
                if rectangles_intersect(source.extent, target.core):
                    found[target.index].append(source.index)
        return found


def rectangles_intersect(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Half-open (row0, row1, col0, col1) rectangles share at least one pixel."""
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def intersection(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])


def tile_count(height: int, width: int, tile_size: int, overlap_px: int) -> int:
    """Number of tiles a scene needs (for progress bars and run-time estimates)."""
    return len(tile_origins(height, tile_size, overlap_px)) * len(tile_origins(width, tile_size, overlap_px))


def blocks_per_axis(length: int, tile_size: int, overlap_px: int, block_px: int) -> int:
    per = max(1, round(block_px / (tile_size - overlap_px)))
    return math.ceil(len(tile_origins(length, tile_size, overlap_px)) / per)


def fit_block_px(height: int, width: int, tile_size: int, overlap_px: int, block_px: int, min_blocks: int) -> int:
    """The largest block side, at most ``block_px`` and in whole strides, that cuts the scene into
    at least ``min_blocks`` blocks (so that every worker gets work), or one tile per block.

    The blended result does not depend on the block size, so this changes only the scheduling.
    """
    stride = tile_size - overlap_px
    per = max(1, round(block_px / stride))
    while per > 1 and blocks_per_axis(height, tile_size, overlap_px, per * stride) * \
            blocks_per_axis(width, tile_size, overlap_px, per * stride) < min_blocks:
        per -= 1
    return per * stride
