"""lsmap evaluate on folders of other regions: colour masks, the mapping predictor, GSD, outputs, bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.transform import from_origin

from lsmap.checkpoint import Checkpoint, InputSpec, load_checkpoint, save_checkpoint
from lsmap.cli import main as lsmap_main
from lsmap.data import SPLITS, list_chips
from lsmap.dataset import import_dataset
from lsmap.errors import LsmapError
from lsmap.evaluate import evaluate_checkpoint, evaluate_folder, markdown_table, resample_scale, write_outputs
from lsmap.metrics import SegmentationMeter
from lsmap.predict import InferenceOptions, predict_array
from lsmap.tta import TRANSFORMS

pytestmark = pytest.mark.shared_data

# small Bijie chips (61-145 px) and one larger than the 128 px tile (so it is tiled, the others padded)
CHIPS = ["ls_0002", "ls_0025", "ls_0100", "nls_0039"]
FAST = InferenceOptions(tile_size=128, overlap_px=32, chunk_px=256, batch_size=4, device="cpu", precision="fp32",
                        progress=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from lsmap.models import build_model

    torch.manual_seed(3)
    kwargs = dict(in_channels=3, num_classes=1, backbone="resnet18")
    model = build_model("fcn", **kwargs)
    path = tmp_path_factory.mktemp("ckpt") / "fcn.pt"
    return save_checkpoint(Checkpoint("fcn", kwargs, model.state_dict(),
                                      InputSpec(["red", "green", "blue"], [110.0] * 3, [40.0] * 3, 128),
                                      extra={"gsd_m": 0.8}), path)


@pytest.fixture(scope="module")
def region(tmp_path_factory, shared_data) -> dict:
    """The chips with their 0/255 masks, and the same masks painted red on a green background."""
    root = tmp_path_factory.mktemp("region")
    for sub in ("images", "masks", "masks_rgb"):
        (root / sub).mkdir()
    for name in CHIPS:
        (root / "images" / f"{name}.png").symlink_to(shared_data / "bijie" / "images" / f"{name}.png")
        (root / "masks" / f"{name}.png").symlink_to(shared_data / "bijie" / "masks" / f"{name}.png")
        mask = np.asarray(Image.open(shared_data / "bijie" / "masks" / f"{name}.png")) == 255
        rgb = np.zeros(mask.shape + (3,), np.uint8)
        rgb[mask] = (255, 0, 0)
        rgb[~mask] = (0, 128, 0)
        Image.fromarray(rgb).save(root / "masks_rgb" / f"{name}.png")
    return {"root": root, "images": root / "images", "masks": root / "masks", "rgb": root / "masks_rgb"}


def test_scores_equal_lsmap_maps_output_on_each_chip_as_a_scene(tmp_path, checkpoint, region):
    """Tiled (a chip bigger than a tile) and padded (smaller) chips give what mapping the chip gives."""
    metrics = evaluate_folder(checkpoint, region["images"], region["masks"], inference=FAST, progress=False)
    meter = SegmentationMeter()
    for name in CHIPS:
        image = np.asarray(Image.open(region["images"] / f"{name}.png").convert("RGB")).transpose(2, 0, 1)
        label = (np.asarray(Image.open(region["masks"] / f"{name}.png")) == 255).astype(np.uint8)
        scene = tmp_path / f"{name}.tif"
        with rasterio.open(scene, "w", driver="GTiff", width=image.shape[2], height=image.shape[1], count=3,
                           dtype="uint8", crs="EPSG:32648", transform=from_origin(500000, 3000000, 0.8, 0.8)) as dst:
            dst.write(image)
        meter.update((predict_array(scene, checkpoint, FAST) > 0.5).astype(np.uint8), label)
    expected = meter.summary()
    assert metrics["n_chips"] == len(CHIPS) and metrics["predictor"] == "mapping"
    for key in ("global_iou_landslide", "global_miou", "perchip_miou", "global_pa"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-9), key
    assert 0 < metrics["global_pa"] < 1


def test_rgb_colour_masks_score_like_0_255_masks(checkpoint, region):
    plain = evaluate_folder(checkpoint, region["images"], region["masks"], inference=FAST, progress=False)
    coloured = evaluate_folder(checkpoint, region["images"], region["rgb"], colour=(255, 0, 0), inference=FAST,
                               progress=False)
    assert coloured["global_miou"] == plain["global_miou"] and coloured["perchip_f1"] == plain["perchip_f1"]
    with pytest.raises(LsmapError, match="expected one band of 0/255 or 0/1"):
        evaluate_folder(checkpoint, region["images"], region["rgb"], inference=FAST, progress=False)


def test_a_colour_matching_no_pixel_names_the_mask_folder(checkpoint, region):
    with pytest.raises(LsmapError, match=r"masks_rgb: mask colour 0,0,255 matches no pixel"):
        evaluate_folder(checkpoint, region["images"], region["rgb"], colour=(0, 0, 255), inference=FAST, progress=False)


def test_mask_of_another_size_and_chip_without_valid_pixels_name_the_file(tmp_path, checkpoint, region):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(images / "a.png")
    Image.fromarray(np.zeros((40, 51), np.uint8)).save(masks / "a.png")
    with pytest.raises(LsmapError, match=r"masks/a.png: label is 40x51 px but its image is 40x50 px"):
        evaluate_folder(checkpoint, images, masks, inference=FAST, progress=False)
    (images / "a.png").unlink(), (masks / "a.png").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(images / "b.tif", "w", driver="GTiff", width=32, height=32, count=3, dtype="uint16",
                           nodata=0) as dst:
            dst.write(np.zeros((3, 32, 32), np.uint16))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(masks / "b.png")
    with pytest.raises(LsmapError, match=r"images/b.tif: chip has no valid pixel"):
        evaluate_folder(checkpoint, images, masks, inference=FAST, progress=False)


def test_band_count_other_than_the_checkpoints_names_both(tmp_path, checkpoint):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(images / "c.tif", "w", driver="GTiff", width=32, height=32, count=4, dtype="uint16") as dst:
            dst.write(np.full((4, 32, 32), 500, np.uint16))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(masks / "c.png")
    with pytest.raises(LsmapError, match=r"c.tif: evaluation chips have 4 bands but checkpoint .*fcn.pt expects 3"):
        evaluate_folder(checkpoint, images, masks, inference=FAST, progress=False)


def test_gsd_resampling_uses_the_checkpoints_gsd_and_scores_at_label_resolution(checkpoint, region, tmp_path):
    ckpt = load_checkpoint(checkpoint)
    assert resample_scale(ckpt, None, None) == 1.0 and resample_scale(ckpt, 1.6, None) == pytest.approx(2.0)
    assert resample_scale(ckpt, 1.6, 0.4) == pytest.approx(4.0)
    same = evaluate_folder(checkpoint, region["images"], region["masks"], inference=FAST, gsd_m=0.8, progress=False)
    plain = evaluate_folder(checkpoint, region["images"], region["masks"], inference=FAST, progress=False)
    assert same["global_miou"] == plain["global_miou"] and same["resample_scale"] == 1.0
    seen = {}
    coarse = evaluate_folder(checkpoint, region["images"], region["masks"], inference=FAST, gsd_m=1.6, progress=False,
                             on_chip=lambda name, probability, label: seen.setdefault(name, (probability.shape, label.shape)))
    assert coarse["resample_scale"] == pytest.approx(2.0) and coarse["global_miou"] != plain["global_miou"]
    assert all(p == lab for p, lab in seen.values()) and len(seen) == len(CHIPS)
    no_gsd = save_checkpoint(Checkpoint(ckpt.model_name, ckpt.model_kwargs, ckpt.state_dict, ckpt.input),
                             tmp_path / "nogsd.pt")
    with pytest.raises(LsmapError, match="records no training GSD; give it with --model-gsd-m"):
        evaluate_folder(no_gsd, region["images"], region["masks"], inference=FAST, gsd_m=1.6, progress=False)


def test_json_and_markdown_are_written_with_the_same_numbers(tmp_path, checkpoint, region):
    metrics = evaluate_folder(checkpoint, region["images"], region["masks"], inference=FAST, progress=False)
    json_path, md_path = write_outputs(metrics, tmp_path / "eval" / "region.json")
    assert json.loads(json_path.read_text())["global_miou"] == pytest.approx(metrics["global_miou"])
    table = md_path.read_text()
    assert md_path.name == "region.md" and f"| whole set | {100 * metrics['global_miou']:.2f} |" in table
    assert table == markdown_table(metrics) and "TTA identity" in table


def test_test_only_import_then_cli_evaluate_with_tta(tmp_path, checkpoint, region, capsys):
    summary = import_dataset(region["images"], region["rgb"], tmp_path / "ds", test_only=True, mask_colour=(255, 0, 0),
                             gsd_m=0.8)
    assert summary["chips"] == {"Train": 0, "Valid": 0, "Test": len(CHIPS)} and summary["gsd_m"] == 0.8
    assert len(list_chips(tmp_path / "ds", "Test")) == len(CHIPS)
    for split in SPLITS[:2]:
        assert not any((tmp_path / "ds" / split / "Image").iterdir())
    out = tmp_path / "m.json"
    code = lsmap_main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", str(tmp_path / "ds"), "--tta", "flip",
                       "--tile-size", "128", "--overlap", "32", "--precision", "fp32", "--device", "cpu", "--out", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["predictor"] == "mapping" and metrics["tta"] == "identity+hflip" and out.with_suffix(".md").is_file()
    plain = evaluate_checkpoint(checkpoint, tmp_path / "ds", "Test", predictor="mapping", inference=FAST, progress=False)
    assert plain["global_miou"] != metrics["global_miou"]  # the random model is not mirror-symmetric
    chips = evaluate_checkpoint(checkpoint, tmp_path / "ds", "Test", predictor="chips", device="cpu", precision="fp32",
                                inference=InferenceOptions(tta="flips"), progress=False)
    assert chips["tta"] == "identity+hflip+rot180_hflip+rot180" and chips["n_chips"] == len(CHIPS)
    with pytest.raises(LsmapError, match="quarter-turn test-time augmentation needs square inputs"):
        evaluate_checkpoint(checkpoint, tmp_path / "ds", "Test", predictor="chips", inference=InferenceOptions(tta="8"))
    # a resize-policy checkpoint sees every chip as a square input_size image: all 8 views run on whole chips
    ckpt = load_checkpoint(checkpoint)
    resized = save_checkpoint(Checkpoint(ckpt.model_name, ckpt.model_kwargs, ckpt.state_dict, ckpt.input,
                                         extra={**ckpt.extra, "size_policy": "resize"}), tmp_path / "resize.pt")
    scores = {tta: evaluate_checkpoint(resized, tmp_path / "ds", "Test", predictor="chips", device="cpu",
                                       precision="fp32", inference=InferenceOptions(tta=tta), progress=False)
              for tta in ("flips", "8")}
    assert scores["8"]["tta"] == "+".join(TRANSFORMS) and scores["8"]["n_chips"] == len(CHIPS)
    assert scores["8"]["global_miou"] != scores["flips"]["global_miou"]  # the quarter turns did run


def test_cli_bad_input_is_one_line_exit_2(tmp_path, checkpoint, region, capsys):
    code = lsmap_main(["evaluate", "--checkpoint", str(checkpoint), "--images", str(region["images"]),
                       "--masks", str(region["rgb"]), "--mask-colour", "1,2,3", "--tile-size", "128"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "matches no pixel" in err
    code = lsmap_main(["evaluate", "--checkpoint", str(checkpoint), "--images", str(region["images"])])
    assert code == 2 and "--images and --masks go together" in capsys.readouterr().err
