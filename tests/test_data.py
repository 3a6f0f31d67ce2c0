"""Reading chips, label checks, nearest-neighbour resizing, normalisation and augmentation."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from lsmap.data import (IMAGE_DIR, LABEL_DIR, ChipDataset, collate_eval, list_chips, normalisation_stats,
                        read_image, read_label, resize_label_nearest)
from lsmap.errors import LsmapError
from lsmap.metrics import IGNORE


def _write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _write_tif(path: Path, array: np.ndarray, nodata=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", height=array.shape[1], width=array.shape[2],
                           count=array.shape[0], dtype=array.dtype, nodata=nodata) as dst:
            dst.write(array)
    return path


def test_nearest_resize_keeps_labels_binary_and_replicates_blocks():
    rng = np.random.default_rng(0)
    label = (rng.random((37, 53)) > 0.7).astype(np.uint8)
    for size in [(64, 64), (19, 101), (256, 200)]:
        resized = resize_label_nearest(label, size)
        assert resized.shape == size and set(np.unique(resized)) <= {0, 1}
    doubled = resize_label_nearest(label, (74, 106))
    assert np.array_equal(doubled, np.kron(label, np.ones((2, 2), np.uint8)))
    assert np.array_equal(resize_label_nearest(doubled, (37, 53)), label)


def test_labels_0_255_and_0_1_read_alike_and_other_values_name_the_file(tmp_path):
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:9] = 1
    assert np.array_equal(read_label(_write_png(tmp_path / "a.png", mask * 255)), mask)
    assert np.array_equal(read_label(_write_tif(tmp_path / "b.tif", mask[None])), mask)
    bad = _write_png(tmp_path / "bad.png", mask * 128)
    with pytest.raises(LsmapError, match=r"bad\.png: label values \[0, 128\] are not 0/255 or 0/1"):
        read_label(bad)
    with pytest.raises(LsmapError, match=r"a\.png: label is 10x12 px but its image is 10x13 px"):
        read_label(tmp_path / "a.png", (10, 13))


def test_multiband_uint16_tiff_and_8bit_png_read_as_bands_first(tmp_path, shared_data):
    scene = np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5) * 300
    image = read_image(_write_tif(tmp_path / "gf6.tif", scene))
    assert image.dtype == np.uint16 and np.array_equal(image, scene)
    png = read_image(shared_data / "bijie" / "images" / "ls_0000.png")
    assert png.dtype == np.uint8 and png.shape[0] == 3
    assert np.array_equal(png, np.moveaxis(np.asarray(Image.open(shared_data / "bijie" / "images" / "ls_0000.png")), -1, 0))


def test_image_without_label_and_empty_split_are_one_line_errors(tmp_path):
    _write_png(tmp_path / "Train" / IMAGE_DIR / "x1.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "Train" / LABEL_DIR).mkdir(parents=True)
    with pytest.raises(LsmapError, match=r"x1\.png: image has no label of the same name"):
        list_chips(tmp_path, "Train")
    (tmp_path / "Valid" / IMAGE_DIR).mkdir(parents=True)
    with pytest.raises(LsmapError, match=r"Valid/Image: split 'Valid' has no image chips"):
        list_chips(tmp_path, "Valid")


def _layout_from_bijie(root: Path, shared_data: Path, names: list[str]) -> list:
    for name in names:
        image = shared_data / "bijie" / "images" / f"{name}.png"
        (root / "Train" / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
        (root / "Train" / LABEL_DIR).mkdir(parents=True, exist_ok=True)
        (root / "Train" / IMAGE_DIR / image.name).symlink_to(image)
        (root / "Train" / LABEL_DIR / image.name).symlink_to(shared_data / "bijie" / "masks" / image.name)
    return list_chips(root, "Train")


def test_normalisation_stats_equal_numpy_over_all_training_pixels(tmp_path, shared_data):
    chips = _layout_from_bijie(tmp_path, shared_data, ["ls_0000", "ls_0001", "nls_0002"])
    pixels = np.concatenate([read_image(c.image).reshape(3, -1).astype(np.float64) for c in chips], axis=1)
    mean, std = normalisation_stats(chips)
    assert np.allclose(mean, pixels.mean(axis=1), rtol=1e-9)
    assert np.allclose(std, pixels.std(axis=1), rtol=1e-6)
    assert all(0 < m < 255 for m in mean)


def test_normalisation_skips_declared_nodata_pixels(tmp_path):
    image = np.full((4, 10, 10), 1000, np.uint16)
    image[:, :, :5] = 0  # nodata half
    image[0, 0, 9] = 3000
    _write_tif(tmp_path / "Train" / IMAGE_DIR / "c.tif", image, nodata=0)
    _write_tif(tmp_path / "Train" / LABEL_DIR / "c.tif", np.zeros((1, 10, 10), np.uint8))
    mean, _ = normalisation_stats(list_chips(tmp_path, "Train"))
    assert mean[0] == pytest.approx((49 * 1000 + 3000) / 50)
    dataset = ChipDataset(list_chips(tmp_path, "Train"), mean, [1.0] * 4, input_size=10)
    assert (dataset[0]["label"].numpy()[:, :5] == IGNORE).all()


def test_training_augmentation_keeps_image_and_label_aligned_and_is_reproducible(tmp_path, shared_data):
    chips = _layout_from_bijie(tmp_path, shared_data, ["ls_0000", "ls_0001", "ls_0002"])
    # replace the images by their own labels x 200 so alignment is checkable after any flip/rotation
    for chip in chips:
        label = read_label(chip.label)
        target = chip.image.parent / f"{chip.name}.png"
        target.unlink()
        _write_png(target, np.repeat((label * 200)[..., None], 3, axis=2))
    dataset = ChipDataset(chips, [0.0] * 3, [1.0] * 3, input_size=96, size_policy="crop", train=True, seed=7)
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            image, label = item["image"].numpy(), item["label"].numpy()
            assert image.shape == (3, 96, 96) and label.shape == (96, 96)
            valid = label != IGNORE
            assert np.array_equal((image[0] > 100)[valid], (label == 1)[valid])
    dataset.set_epoch(1)
    again = dataset[1]["image"]
    assert np.array_equal(again.numpy(), dataset[1]["image"].numpy())
    dataset.set_epoch(2)
    assert not np.array_equal(again.numpy(), dataset[1]["image"].numpy())


def test_resize_policy_resizes_training_labels_with_nearest_neighbour_and_keeps_eval_labels_full_size(tmp_path, shared_data):
    chips = _layout_from_bijie(tmp_path, shared_data, ["ls_0003"])
    full = read_label(chips[0].label)
    train = ChipDataset(chips, [0.0] * 3, [1.0] * 3, input_size=64, size_policy="resize", train=True)
    assert set(np.unique(train[0]["label"].numpy())) <= {0, 1}
    evaluation = ChipDataset(chips, [0.0] * 3, [1.0] * 3, input_size=64, size_policy="resize", train=False)
    batch = collate_eval([evaluation[0]])
    assert batch["image"].shape[-2:] == (64, 64) and batch["content_hw"] == [(64, 64)]
    assert np.array_equal(batch["labels"][0].numpy(), full)


def test_eval_batches_pad_chips_of_different_sizes_to_a_multiple_of_32(tmp_path, shared_data):
    chips = _layout_from_bijie(tmp_path, shared_data, ["ls_0000", "ls_0005"])
    dataset = ChipDataset(chips, [0.0] * 3, [1.0] * 3, input_size=64)
    batch = collate_eval([dataset[0], dataset[1]])
    heights = [read_image(c.image).shape[1] for c in chips]
    assert batch["image"].shape[-2] % 32 == 0 and batch["image"].shape[-2] >= max(heights)
    assert [hw[0] for hw in batch["content_hw"]] == heights


def test_colour_masks_mark_exactly_the_pixels_of_that_colour_and_sizes_are_checked(tmp_path):
    from lsmap.data import parse_colour

    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[1:3, 2:5] = (255, 0, 0)
    rgb[4, 4] = (255, 0, 1)  # one unit off: not landslide
    path = _write_png(tmp_path / "m.png", rgb)
    label = read_label(path, (6, 7), colour=parse_colour("255, 0, 0"))
    assert label.dtype == np.uint8 and label.sum() == 6 and label[1:3, 2:5].all() and label[4, 4] == 0
    index = _write_png(tmp_path / "i.png", np.where(rgb[..., 0] > 0, 7, 3).astype(np.uint8))
    assert read_label(index, colour=(7,)).sum() == 7
    with pytest.raises(LsmapError, match=r"m.png: mask has 3 bands but the mask colour \(1, 2\) has 2 values"):
        read_label(path, colour=(1, 2))
    with pytest.raises(LsmapError, match=r"m.png: label is 6x7 px but its image is 6x8 px"):
        read_label(path, (6, 8), colour=(255, 0, 0))
    with pytest.raises(LsmapError, match="expected integers R,G,B"):
        parse_colour("red")
