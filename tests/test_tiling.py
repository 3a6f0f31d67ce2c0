"""The tile grid, the blocks and the blending window (pure geometry, no model)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from lsmap.errors import LsmapError
from lsmap.tiling import TileGrid, tile_origins


def blend(grid: TileGrid, tile_value) -> tuple[np.ndarray, np.ndarray]:
    """Blend per-tile constant predictions the way inference does: (sum w*p / sum w, sum w)."""
    weighted = np.zeros((grid.height, grid.width))
    weights = np.zeros((grid.height, grid.width))
    for tile in grid.tiles():
        w = grid.weights(tile)[: grid.height - tile.row, : grid.width - tile.col]
        rows, cols = slice(tile.row, tile.row + w.shape[0]), slice(tile.col, tile.col + w.shape[1])
        weighted[rows, cols] += w * tile_value(tile)
        weights[rows, cols] += w
    return weighted / weights, weights


@pytest.mark.parametrize("length,tile,overlap", [(1000, 256, 64), (256, 256, 64), (100, 256, 64), (257, 256, 0), (4099, 512, 128)])
def test_tiles_cover_every_pixel_and_stay_inside_the_scene(length, tile, overlap):
    origins = tile_origins(length, tile, overlap)
    covered = np.zeros(length, int)
    for o in origins:
        covered[o:o + tile] += 1
        assert o >= 0 and (o + tile <= length or length < tile)
    assert covered.min() >= 1
    assert origins == sorted(set(origins))
    if length > tile:  # regular stride except the last tile, which ends on the edge
        assert origins[-1] + tile == length
        assert all(b - a == tile - overlap for a, b in zip(origins[:-2], origins[1:-1]))


def test_overlap_not_smaller_than_tile_is_rejected():
    with pytest.raises(LsmapError, match="overlap"):
        tile_origins(1000, 128, 128)


@pytest.mark.parametrize("height,width", [(1000, 731), (300, 300), (97, 513)])
def test_blending_a_constant_gives_the_constant_everywhere_including_edges(height, width):
    grid = TileGrid(height, width, 128, 32)
    blended, weights = blend(grid, lambda tile: 0.7)
    assert weights.min() > 0  # every pixel, edges included, is covered
    np.testing.assert_allclose(blended, 0.7, atol=1e-12)  # ... and its weights sum to one (not twice)


def test_blending_window_leaves_no_seams():
    """Neighbouring tiles that disagree (0 vs 1) blend smoothly: no jump anywhere near a hard seam."""
    grid = TileGrid(600, 600, 128, 32)
    blended, _ = blend(grid, lambda tile: float(sum(tile.index) % 2))
    largest_step = max(np.abs(np.diff(blended, axis=0)).max(), np.abs(np.diff(blended, axis=1)).max())
    assert largest_step < 0.15  # a hard seam would jump by 1.0 in one pixel
    assert blended.min() == pytest.approx(0.0, abs=1e-9) and blended.max() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("block_px", [96, 200, 500, 5000])
def test_block_cores_partition_the_scene_and_own_every_tile_once(block_px):
    grid = TileGrid(1013, 777, 128, 32, block_px)
    owner = np.zeros((grid.height, grid.width), int)
    for block in grid.blocks:
        r0, r1, c0, c1 = block.core
        owner[r0:r1, c0:c1] += 1
        for tile in block.tiles:  # a block's extent holds all its tiles
            assert block.extent[0] <= tile.row and tile.row + 128 <= block.extent[1]
            assert block.extent[2] <= tile.col and tile.col + 128 <= block.extent[3]
    assert (owner == 1).all()
    assert sorted(t.index for b in grid.blocks for t in b.tiles) == sorted(t.index for t in grid.tiles())
    contributors = grid.contributors()
    for block in grid.blocks:
        assert block.index in contributors[block.index]


def test_grid_of_real_landsat_scene_covers_its_edges_once(shared_data):
    with rasterio.open(shared_data / "scenes" / "landsat7_rgb_byte.tif") as src:
        height, width = src.height, src.width
    grid = TileGrid(height, width, 256, 64, 300)
    blended, weights = blend(grid, lambda tile: 1.0)
    assert weights[0].min() > 0 and weights[-1].min() > 0 and weights[:, 0].min() > 0 and weights[:, -1].min() > 0
    np.testing.assert_allclose(blended, 1.0, atol=1e-12)
    assert max(t.row + 256 for t in grid.tiles()) == height and max(t.col + 256 for t in grid.tiles()) == width


def test_block_size_adapts_so_that_every_worker_gets_two_blocks():
    """A 1,448² scene is one block at the default 4096 px; for 2 workers it is cut into >= 4."""
    from lsmap.tiling import fit_block_px

    assert len(TileGrid(1448, 1448, 512, 128, 4096).blocks) == 1
    block_px = fit_block_px(1448, 1448, 512, 128, 4096, min_blocks=4)
    blocks = TileGrid(1448, 1448, 512, 128, block_px).blocks
    assert len(blocks) >= 4 and block_px % 384 == 0
    assert fit_block_px(20000, 20000, 512, 128, 4096, min_blocks=4) == round(4096 / 384) * 384  # enough already
    assert fit_block_px(600, 600, 512, 128, 4096, min_blocks=8) == 384  # one tile per block is the floor
