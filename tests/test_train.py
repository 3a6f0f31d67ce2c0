"""Training on a small real subset: the loss falls, checkpoints load, resume continues, mapping agrees."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.transform import from_origin

from lsmap.checkpoint import load_checkpoint
from lsmap.data import IMAGE_DIR, LABEL_DIR, read_image
from lsmap.dataset import import_dataset
from lsmap.errors import LsmapError
from lsmap.evaluate import evaluate_checkpoint
from lsmap.train import HISTORY_COLUMNS, TrainConfig, train

pytestmark = pytest.mark.shared_data

TRAIN = ["ls_0000", "ls_0001", "ls_0002", "ls_0003", "ls_0004", "ls_0005", "ls_0006", "ls_0007",
         "ls_0008", "ls_0009", "ls_0010", "nls_0002", "nls_0003", "nls_0028"]
TEST = ["ls_0025", "ls_0029"]


def tiny_config(**changes) -> TrainConfig:
    """fcn on resnet18, 64 px crops, 2 epochs of 3 batches: seconds on a busy CPU."""
    base = TrainConfig(model_name="fcn", backbone="resnet18", pretrained="none", input_size=64, batch_size=4,
                       epochs=2, lr=2e-3, loss="bce_iou", num_workers=0, device="cpu", progress=False,
                       size_policy="crop", steps_per_epoch=3, val_max_chips=2)
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, shared_data) -> Path:
    root = tmp_path_factory.mktemp("bijie_tiny")
    bijie = shared_data / "bijie"
    src = root / "src"
    for sub in ("images", "masks", "splits"):
        (src / sub).mkdir(parents=True)
    valid = ["ls_0018", "ls_0030", "nls_0039"]
    for split, names in (("train", TRAIN), ("val", valid), ("test", TEST)):
        (src / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for name in names:
            for sub in ("images", "masks"):
                (src / sub / f"{name}.png").symlink_to(bijie / sub / f"{name}.png")
    import_dataset(src / "images", src / "masks", root / "dataset", splits_dir=src / "splits")
    return root / "dataset"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_dataset) -> Path:
    out = tmp_path_factory.mktemp("run_two_epochs")
    train(tiny_config(), tiny_dataset, out)
    return out


def _history(out: Path) -> list[dict]:
    import csv

    with open(out / "history.csv") as handle:
        return list(csv.DictReader(handle))


def test_two_epochs_lower_the_loss_and_write_logs(trained):
    rows = _history(trained)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(HISTORY_COLUMNS) <= set(rows[0])
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    assert (trained / "curves.png").stat().st_size > 10_000
    assert Image.open(trained / "curves.png").format == "PNG"


def test_best_checkpoint_is_self_describing_and_loadable(trained, tiny_dataset):
    checkpoint = load_checkpoint(trained / "best.pt")
    assert checkpoint.model_name == "fcn"
    assert checkpoint.model_kwargs == {"in_channels": 3, "num_classes": 1, "backbone": "resnet18", "rgb_channels": [0, 1, 2]}
    assert checkpoint.input.bands == ["red", "green", "blue"] and checkpoint.input.tile_size == 64
    assert all(40 < m < 200 for m in checkpoint.input.mean) and all(10 < s < 120 for s in checkpoint.input.std)
    assert checkpoint.training["loss"] == "bce_iou" and checkpoint.dataset_hash
    assert checkpoint.optimizer_state is None and "val_global_miou" in checkpoint.metrics
    model = checkpoint.build_model("cpu")
    image = torch.from_numpy(read_image(next((tiny_dataset / "Test" / IMAGE_DIR).iterdir())).astype(np.float32))
    with torch.no_grad():
        logits = model(((image - torch.tensor(checkpoint.input.mean)[:, None, None])
                        / torch.tensor(checkpoint.input.std)[:, None, None])[None])
    assert logits.shape == (1, 1, *image.shape[1:]) and torch.isfinite(logits).all()
    metrics = evaluate_checkpoint(trained / "best.pt", tiny_dataset, "Test", device="cpu", progress=False)
    assert metrics["n_chips"] == 2 and 0 <= metrics["global_miou"] <= 1 and 0 <= metrics["perchip_pa"] <= 1


def test_resume_continues_from_the_saved_epoch_with_optimizer_state(tmp_path, trained, tiny_dataset):
    out = tmp_path / "interrupted"
    train(tiny_config(epochs=1), tiny_dataset, out)
    assert load_checkpoint(out / "last.pt").epoch == 1
    (out / "best.pt").unlink()  # as Snakemake does with a re-run job's outputs
    train(tiny_config(epochs=2), tiny_dataset, out)
    resumed, straight = load_checkpoint(out / "last.pt"), load_checkpoint(trained / "last.pt")
    assert resumed.epoch == 2 and [r["epoch"] for r in _history(out)] == ["1", "2"]
    # same weights as the uninterrupted run: optimiser moments, RNG and shuffles were restored
    for key, value in straight.state_dict.items():
        assert torch.allclose(resumed.state_dict[key].float(), value.float(), atol=1e-5), key
    assert (out / "best.pt").exists()


def test_best_is_on_disk_before_last_records_it(tmp_path, tiny_dataset, monkeypatch):
    """A kill between the two writes must not lose the new best: when last.pt (which says "best is
    epoch N") is written, best.pt already holds epoch N (issue 14: the resumed run kept epoch 1)."""
    import lsmap.train as train_module

    class Killed(BaseException):
        pass

    real_save = train_module.save_checkpoint

    def save_then_die_on_last(checkpoint, path):
        if Path(path).name == "last.pt":
            raise Killed
        real_save(checkpoint, path)

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die_on_last)
    with pytest.raises(Killed):
        train(tiny_config(epochs=1), tiny_dataset, tmp_path)
    assert load_checkpoint(tmp_path / "best.pt").epoch == 1
    assert (tmp_path / ".best-keep.pt").samefile(tmp_path / "best.pt")
    assert not list(tmp_path.glob("*partial*"))


def test_resume_refuses_a_checkpoint_from_another_model(tmp_path, trained, tiny_dataset):
    shutil.copy(trained / "last.pt", tmp_path / "last.pt")
    with pytest.raises(LsmapError, match=r"last\.pt: checkpoint from another model \('fcn'"):
        train(tiny_config(model_name="unet"), tiny_dataset, tmp_path)


def test_training_refuses_a_label_of_another_size(tmp_path, tiny_dataset):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dataset, broken)
    label = next((broken / "Train" / LABEL_DIR).iterdir())
    with rasterio.open(label) as src:
        data = src.read()
    label.unlink()
    Image.fromarray(data[0, :-3]).save(label.with_suffix(".png"))
    with pytest.raises(LsmapError, match=rf"{label.stem}\.png: label is"):
        train(tiny_config(), broken, tmp_path / "out")


def test_checkpoint_round_trips_through_lsmap_map(tmp_path, trained, shared_data):
    """lsmap.predict on a georeferenced one-tile scene gives the probabilities lsmap.evaluate gives."""
    predict = pytest.importorskip("lsmap.predict")
    rgb = read_image(shared_data / "bijie" / "images" / "ls_0003.png")[:, :256, :256]
    scene = tmp_path / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", height=256, width=256, count=3, dtype="uint8",
                       crs="EPSG:32648", transform=from_origin(500000, 3000000, 0.8, 0.8)) as dst:
        dst.write(rgb)
        for band, name in enumerate(("red", "green", "blue"), start=1):
            dst.set_band_description(band, name)
    layout = tmp_path / "one"
    for sub in (IMAGE_DIR, LABEL_DIR):
        (layout / "Test" / sub).mkdir(parents=True)
    Image.fromarray(np.moveaxis(rgb, 0, -1)).save(layout / "Test" / IMAGE_DIR / "chip.png")
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(layout / "Test" / LABEL_DIR / "chip.png")
    seen = {}
    evaluate_checkpoint(trained / "best.pt", layout, "Test", device="cpu", precision="fp32", progress=False,
                        on_chip=lambda name, p, label: seen.update({name: p}))
    options = predict.InferenceOptions(tile_size=256, overlap_px=0, chunk_px=256, batch_size=1, device="cpu",
                                       precision="fp32", progress=False)
    mapped = predict.predict_array(scene, trained / "best.pt", options)
    assert mapped.shape == (256, 256)
    assert np.abs(mapped - seen["chip"]).max() < 1e-4
    assert 0.0 < seen["chip"].std()  # a model that outputs a constant would make this trivial


def test_cli_reports_an_empty_split_in_one_line_naming_the_folder(tmp_path, capsys):
    from lsmap.cli import main

    (tmp_path / "ds" / "Train" / IMAGE_DIR).mkdir(parents=True)
    rc = main(["train", "--dataset", str(tmp_path / "ds"), "--model", "fcn", "--out", str(tmp_path / "out"),
               "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "Train/Image: split 'Train' has no image chips" in err[0]


def test_cpu_trains_in_bf16_only_where_the_cpu_has_native_bf16(monkeypatch):
    import lsmap.train as train_module
    from lsmap.train import training_precision, uses_channels_last

    cpu = torch.device("cpu")
    monkeypatch.setattr(train_module, "cpu_supports_bf16", lambda: True)
    assert training_precision(cpu, True) is torch.bfloat16 and training_precision(cpu, False) is None
    assert uses_channels_last(tiny_config(), torch.bfloat16) and not uses_channels_last(tiny_config(channels_last=False), torch.bfloat16)
    monkeypatch.setattr(train_module, "cpu_supports_bf16", lambda: False)
    assert training_precision(cpu, True) is None and not uses_channels_last(tiny_config(), None)


def test_training_gsd_comes_from_the_config_else_dataset_json(tmp_path):
    from lsmap.train import training_gsd_m

    assert training_gsd_m(tiny_config(), tmp_path) is None
    (tmp_path / "dataset.json").write_text('{"gsd_m": 0.8}')
    assert training_gsd_m(tiny_config(), tmp_path) == 0.8 and training_gsd_m(tiny_config(gsd_m=2.0), tmp_path) == 2.0
    (tmp_path / "dataset.json").write_text('{"gsd_m": -1}')
    with pytest.raises(LsmapError, match="must be a positive number of metres"):
        training_gsd_m(tiny_config(), tmp_path)


def test_checkpoint_records_precision_layout_and_gsd(trained):
    checkpoint = load_checkpoint(trained / "best.pt")
    assert checkpoint.training["amp"] is True and checkpoint.training["channels_last"] is True
    assert "gsd_m" in checkpoint.extra and checkpoint.extra["gsd_m"] is None  # the tiny import records none
    # the saved weights load into a plain (NCHW) model: channels_last is a layout, not other values
    model = checkpoint.build_model("cpu")
    assert all(p.is_contiguous() for p in model.parameters())
