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
