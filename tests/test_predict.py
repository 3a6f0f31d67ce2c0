"""Batched, blended inference over whole scenes (a tiny random FCN: the properties hold for any weights)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from lsmap.checkpoint import Checkpoint, InputSpec, save_checkpoint
from lsmap.errors import LsmapError
from lsmap.predict import PROBABILITY_NODATA, InferenceOptions, predict_array, predict_scene

FAST = dict(tile_size=128, overlap_px=32, batch_size=4, precision="fp32", progress=False)


def tiny_checkpoint(path, bands=("red", "green", "blue"), mean=None, std=None, seed=0):
    from lsmap.models import build_model

    torch.manual_seed(seed)
    kwargs = dict(in_channels=len(bands), num_classes=1, backbone="resnet18")
    model = build_model("fcn", **kwargs)
    spec = InputSpec(list(bands), list(mean or [100.0] * len(bands)), list(std or [50.0] * len(bands)), 128)
    return save_checkpoint(Checkpoint("fcn", kwargs, model.state_dict(), spec), path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def landsat(shared_data):
    return shared_data / "scenes" / "landsat7_rgb_byte.tif"


@pytest.fixture(scope="module")
def landsat_threaded(landsat, checkpoint):
    return predict_array(landsat, checkpoint, InferenceOptions(chunk_px=400, **FAST))


def test_landsat_probabilities_cover_every_valid_pixel_and_keep_nodata(landsat, landsat_threaded):
    probability = landsat_threaded
    with rasterio.open(landsat) as src:
        valid = src.dataset_mask() > 0
    assert probability.shape == valid.shape
    assert (probability[~valid] == PROBABILITY_NODATA).all()
    inside = probability[valid]
    assert inside.min() >= 0.0 and inside.max() <= 1.0  # edge rows/columns included: none left unset


def test_probabilities_do_not_depend_on_the_chunk_size(landsat, checkpoint, landsat_threaded):
    small = predict_array(landsat, checkpoint, InferenceOptions(chunk_px=200, **FAST))
    assert np.abs(small - landsat_threaded).max() <= 1e-4


def test_all_nodata_tiles_are_not_run(tmp_path, checkpoint):
    """Half the scene is nodata: its tiles are skipped and it stays nodata."""
    rng = np.random.default_rng(0)
    data = rng.integers(1, 255, (3, 256, 512), dtype=np.uint8)
    data[:, :, 256:] = 0
    path = tmp_path / "half.tif"
    with rasterio.open(path, "w", driver="GTiff", width=512, height=256, count=3, dtype="uint8", nodata=0,
                       crs="EPSG:32648", transform=from_origin(500000, 3000000, 2, 2)) as dst:
        dst.write(data)
    runs = []
    result = np.full((256, 512), -2.0, np.float32)

    def sink(block, probability):
        r0, r1, c0, c1 = block.core
        result[r0:r1, c0:c1] = probability

    runs.append(predict_scene(path, checkpoint, sink, InferenceOptions(chunk_px=256, **FAST)))
    assert runs[0].tiles_total == 3 * 5 and runs[0].tiles_run == 3 * 3  # columns 0, 96, 192 touch valid data
    assert (result[:, 256:] == PROBABILITY_NODATA).all() and (result[:, :256] >= 0).all()


def test_band_count_not_matching_the_model_is_a_one_line_error(tmp_path, landsat):
    four_band = tiny_checkpoint(tmp_path / "four.pt", bands=("blue", "green", "red", "nir"))
    with pytest.raises(LsmapError, match=r"landsat7_rgb_byte.tif: scene has 3 bands .* model expects 4") as error:
        predict_array(landsat, four_band, InferenceOptions(**FAST))
    assert "\n" not in str(error.value)


def test_scene_without_crs_is_refused(tmp_path, checkpoint):
    path = tmp_path / "nocrs.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as dst:
        dst.write(np.ones((3, 64, 64), np.uint8))
    with pytest.raises(LsmapError, match="nocrs.tif: scene has no CRS"):
        predict_array(path, checkpoint, InferenceOptions(**FAST))


def test_dask_local_cluster_gives_the_threaded_probabilities(landsat, checkpoint, landsat_threaded):
    threaded = landsat_threaded
    distributed = predict_array(landsat, checkpoint, InferenceOptions(chunk_px=400, scheduler="local", dask_workers=1, **FAST))
    assert np.abs(threaded - distributed).max() <= 1e-6


# ------------------------------------------------------------------ the device engine (issue 15)


def uint16_scene(path, height=520, width=610, seed=3):
    """A 3-band uint16 scene with values across the whole uint16 range and a nodata-0 corner."""
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 65535, (3, height, width), dtype=np.uint16)
    data[:, :60, :90] = 0
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint16", nodata=0,
                       crs="EPSG:32648", transform=from_origin(500000, 3000000, 2, 2)) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def wide_checkpoint(tmp_path_factory):
    """Normalisation for the uint16 range (a 0..255 one would saturate every tile)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("wide") / "wide.pt", mean=[30000.0] * 3, std=[20000.0] * 3, seed=1)


@pytest.fixture(scope="module")
def scene16(tmp_path_factory):
    return uint16_scene(tmp_path_factory.mktemp("u16") / "u16.tif")


SMALL = dict(FAST, chunk_px=256, device="cpu")


def numpy_blend(scene, checkpoint_path, tile_size, overlap_px):
    """The engine before issue 15, whole scene at once: numpy normalisation per tile, the model per
    tile, numpy sums of w * p and w, divided at the end."""
    from lsmap.checkpoint import load_checkpoint
    from lsmap.predict import TileModel, inspect_scene
    from lsmap.tiling import TileGrid

    checkpoint = load_checkpoint(checkpoint_path)
    model = TileModel(checkpoint, "cpu", "fp32")
    info = inspect_scene(scene, checkpoint)
    with rasterio.open(scene) as src:
        pixels, valid = src.read(), src.dataset_mask() > 0
    grid = TileGrid(info.height, info.width, tile_size, overlap_px)
    weighted = np.zeros(valid.shape, np.float32)
    weights = np.zeros(valid.shape, np.float32)
    t = tile_size
    for tile in grid.tiles():
        rows, cols = slice(tile.row, tile.row + t), slice(tile.col, tile.col + t)
        if not valid[rows, cols].any():
            continue
        x = model.normalise(pixels[:, rows, cols], valid[rows, cols])
        probability = model(model.as_input(x[None]))[0]
        w = grid.weights(tile)
        weighted[rows, cols] += w * probability
        weights[rows, cols] += w
    out = np.full(valid.shape, PROBABILITY_NODATA, np.float32)
    keep = valid & (weights > 0)
    out[keep] = np.clip(weighted[keep] / weights[keep], 0, 1)
    return out


def test_device_side_blend_gives_the_numpy_blend_in_fp32(scene16, wide_checkpoint):
    """uint16 pixels normalised and blended in torch on the (CPU) device == the numpy engine, to 1e-5."""
    expected = numpy_blend(scene16, wide_checkpoint, 128, 32)
    got = predict_array(scene16, wide_checkpoint, InferenceOptions(**SMALL))
    assert np.array_equal(got == PROBABILITY_NODATA, expected == PROBABILITY_NODATA)
    inside = expected != PROBABILITY_NODATA
    assert inside.mean() > 0.9 and 0.01 < expected[inside].std()  # a real, varied map
    assert np.abs(got - expected).max() <= 1e-5


def test_uint16_sent_as_int16_unwraps_to_the_same_floats():
    """The CUDA upload reinterprets uint16 as int16; the float values on the device are unchanged."""
    from lsmap.predict import uint16_as_int16, unwrap_uint16_

    values = np.array([0, 1, 255, 32767, 32768, 40000, 65534, 65535], np.uint16)
    as_float = torch.from_numpy(uint16_as_int16(values)).to(torch.float32)
    assert as_float.min() < 0  # the reinterpretation did happen
    assert torch.equal(unwrap_uint16_(as_float), torch.from_numpy(values.astype(np.float32)))


def test_two_cpu_workers_and_more_readers_give_the_one_worker_map(scene16, wide_checkpoint, monkeypatch):
    """The several-devices path with two CPU workers: both work, the map is the one-worker map."""
    import threading

    import lsmap.predict as predict

    one = predict_array(scene16, wide_checkpoint, InferenceOptions(**SMALL))
    seen = []
    real_compute = predict.BlockRunner.compute

    def recording_compute(self, staged):
        seen.append(threading.current_thread().name)
        return real_compute(self, staged)

    monkeypatch.setattr(predict.BlockRunner, "compute", recording_compute)
    two = predict_array(scene16, wide_checkpoint, InferenceOptions(**{**SMALL, "cpu_workers": 2, "reader_threads": 3}))
    assert set(seen) == {"lsmap-model-cpu#0", "lsmap-model-cpu#1"}, seen
    assert np.abs(one - two).max() <= 1e-6


class ForwardFailing(torch.nn.Module):
    """Wraps a model; raises ``error`` on the forwards that ``fails(batch)`` picks."""

    def __init__(self, inner, error, fails):
        super().__init__()
        self.inner, self.error, self.fails = inner, error, fails

    def forward(self, x):
        if self.fails(x):
            raise self.error
        return self.inner(x)


def test_out_of_memory_halves_the_batch_once_and_gives_the_same_map(scene16, wide_checkpoint, monkeypatch, caplog):
    import lsmap.predict as predict

    expected = predict_array(scene16, wide_checkpoint, InferenceOptions(**{**SMALL, "batch_size": 2}))
    real_build = predict.build_network
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(predict, "build_network",
                        lambda checkpoint, device: ForwardFailing(real_build(checkpoint, device), oom, lambda x: len(x) > 2))
    with caplog.at_level("WARNING", logger="lsmap.predict"):
        got = predict_array(scene16, wide_checkpoint, InferenceOptions(**{**SMALL, "batch_size": 4}))
    halvings = [r.getMessage() for r in caplog.records if "batch halved" in r.getMessage()]
    assert halvings == ["cpu#0 (cpu): out of memory at batch 4, batch halved to 2"]
    assert np.abs(got - expected).max() <= 1e-6


def test_a_dying_worker_fails_the_run_in_one_line_naming_block_and_worker(scene16, wide_checkpoint, monkeypatch, tmp_path):
    import lsmap.predict as predict
    from lsmap.mapping import MappingOptions, map_scene

    calls = {"n": 0}

    def third_call_fails(x):
        calls["n"] += 1
        return calls["n"] == 3

    real_build = predict.build_network
    monkeypatch.setattr(predict, "build_network", lambda checkpoint, device: ForwardFailing(
        real_build(checkpoint, device), RuntimeError("illegal memory access\nsecond line"), third_call_fails))
    out = tmp_path / "out"
    with pytest.raises(LsmapError, match=r"u16\.tif: block \(\d+, \d+\) failed on worker cpu#[01] \(cpu\): "
                                         r"RuntimeError: illegal memory access second line") as error:
        map_scene(scene16, wide_checkpoint, out, options=MappingOptions(**{**SMALL, "cpu_workers": 2, "workers": 1}))
    assert "\n" not in str(error.value)
    assert not any(out.glob("*.tif")) and not any(out.glob("*.gpkg")) and not any(out.glob("*.json"))


def test_validity_from_the_pixels_equals_gdals_dataset_mask(landsat, checkpoint):
    """The nodata mask is computed from the block already read, not by GDAL decoding it again."""
    from lsmap.checkpoint import load_checkpoint
    from lsmap.predict import inspect_scene, read_block
    from lsmap.tiling import TileGrid

    info = inspect_scene(landsat, load_checkpoint(checkpoint))
    assert info.mask_source == "nodata"
    grid = TileGrid(info.height, info.width, 128, 32, 300)
    with rasterio.open(landsat) as src:
        for block in (grid.blocks[0], grid.blocks[-1]):  # the last one is read boundless-free at the edges
            _, valid = read_block(src, info, block, 128)
            r0, r1, c0, c1 = block.extent
            gdal = src.dataset_mask(window=block.extent_window) > 0
            assert (~gdal).any() and gdal.any()
            assert np.array_equal(valid[:r1 - r0, :c1 - c0], gdal)


def test_cuda_list_and_cpu_workers_resolve_to_one_worker_each():
    from lsmap.device import resolve_devices

    assert resolve_devices("cpu", cpu_workers=3) == [torch.device("cpu")] * 3
    if not torch.cuda.is_available():
        with pytest.raises(LsmapError, match="CUDA"):
            resolve_devices("cuda:0,cuda:1")
    else:
        assert len(resolve_devices("cuda")) == torch.cuda.device_count()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_engine_gives_the_cpu_map(scene16, wide_checkpoint):
    """On a GPU (benchmarks/gpu_check.sh): pinned upload, streams and device blend == the CPU map in fp32."""
    cpu = predict_array(scene16, wide_checkpoint, InferenceOptions(**SMALL))
    cuda = predict_array(scene16, wide_checkpoint, InferenceOptions(**{**SMALL, "device": "cuda"}))
    assert np.abs(cpu - cuda).max() <= 1e-4  # cuDNN's conv kernels differ from oneDNN's in the last bits


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_every_visible_gpu_gives_the_one_gpu_map(scene16, wide_checkpoint):
    one = predict_array(scene16, wide_checkpoint, InferenceOptions(**{**SMALL, "device": "cuda:0"}))
    every = predict_array(scene16, wide_checkpoint, InferenceOptions(**{**SMALL, "device": "cuda"}))
    assert np.abs(one - every).max() <= 1e-6
