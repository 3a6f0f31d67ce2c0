"""The bad-input catalogue (issue 14): every input a new user can get wrong, and what lsmap says.

Each case runs one CLI verb on a small generated input, over an output folder that already holds a
previous complete result, and asserts: exit status 2, exactly one stderr line (``lsmap VERB:
error: ...``, no traceback, no GDAL or warning lines), that line names the file, no final-named
output of the failed run, no temporary leftovers, and the previous results byte for byte intact.
Cases that held before the issue are kept so that they keep holding. The verbs run in-process
(``lsmap.cli.main``) with ``capfd``, which captures file descriptor 2 itself, so C-level GDAL
messages would be counted too; ``test_one_line_from_a_fresh_process`` runs three cases in a
subprocess, where import-time warnings would show as well. README "Bad input" lists the same table.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from lsmap.checkpoint import Checkpoint, InputSpec, save_checkpoint
from lsmap.cli import main as lsmap_main
from preprocess_helpers import CRS_UTM48, TRUTH_TRANSFORM, synthetic_ground, write_dem

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MAP_FAST = ["--tile-size", "64", "--overlap", "16", "--chunk-px", "256", "--batch-size", "4", "--precision", "fp32",
            "--device", "cpu", "--no-progress", "--min-area-m2", "0"]
MAP_OUTPUTS = ["probability.tif", "mask.tif", "landslides.gpkg", "landslides.parquet", "scene_stats.json"]
LEFTOVER_MARKS = (".lsmap-staging-", ".lsmap-swap", ".partial-", ".work.", ".tmp", "dem_source.tif", ".delivery-")


# ------------------------------------------------------------------------------------- inputs


def write_scene(path: Path, data: np.ndarray, *, nodata=0, crs: str | None = "EPSG:32648", **extra) -> Path:
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype.name,
                   nodata=nodata, **extra)
    if crs:
        profile.update(crs=crs, transform=from_origin(500000, 3000000, 2, 2))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def random_scene(count: int = 3, n: int = 96) -> np.ndarray:
    return np.random.default_rng(0).integers(1, 255, (count, n, n), dtype=np.uint8)


def fcn_checkpoint(path: Path, *, bands=("red", "green", "blue"), model_name="fcn", weights_of=None,
                   in_channels=None, raw_edit: Callable[[dict], None] | None = None) -> Path:
    """A tiny fcn/resnet18 checkpoint; ``weights_of`` builds the weights from another model,
    ``in_channels`` the model for another band count than the input spec, ``raw_edit`` edits the saved dict."""
    from lsmap.models import build_model

    torch.manual_seed(0)
    kwargs = dict(in_channels=in_channels or len(bands), num_classes=1, backbone="resnet18")
    model = build_model(weights_of or "fcn", **kwargs)
    spec = InputSpec(list(bands), [100.0] * len(bands), [50.0] * len(bands), 64)
    save_checkpoint(Checkpoint("fcn", kwargs, model.state_dict(), spec), path)
    if model_name != "fcn" or raw_edit:
        raw = torch.load(path, weights_only=True)
        raw["model"]["name"] = model_name
        if raw_edit:
            raw_edit(raw)
        torch.save(raw, path)
    return path


class RunsCode:
    """A pickle whose loading would run code (creates ``marker``): must be refused unread."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Good inputs, a previous complete map result and a previous preprocessing product."""
    from lsmap.gf6 import write_synthetic_delivery
    from lsmap.mapping import MappingOptions, map_scene

    root = tmp_path_factory.mktemp("bad_inputs")
    scene = write_scene(root / "scene.tif", random_scene())
    checkpoint = fcn_checkpoint(root / "model.pt")
    previous_map = root / "previous_map"
    map_scene(scene, checkpoint, previous_map, options=MappingOptions(tile_size=64, overlap_px=16, chunk_px=256, batch_size=4,
                                                                      precision="fp32", device="cpu", progress=False,
                                                                      min_area_m2=0.0))
    refl, dem = synthetic_ground(96, seed=1)
    delivery = write_synthetic_delivery(root / "delivery", refl, TRUTH_TRANSFORM, CRS_UTM48, dem, name="GF6_PMS_BAD_L1A1")
    dem_path = write_dem(root / "dem.tif", dem)
    previous_ard = root / "previous_ard"
    previous_ard.mkdir()
    (previous_ard / "reflectance.tif").write_bytes(b"previous product, must survive a failed run")
    return dict(root=root, scene=scene, checkpoint=checkpoint, previous_map=previous_map, delivery=delivery, dem=dem_path,
                dem_array=dem, previous_ard=previous_ard)


@dataclass
class Case:
    """``build(kit, tmp) -> (argv after the verb, text the error line must contain)``; ``{out}`` in argv is the output folder."""

    verb: str
    build: Callable
    held_before: bool = False  # a case that already held before issue 14 (kept so that it keeps holding)


def _map(scene, checkpoint, *extra):
    return [str(scene), "--model", str(checkpoint), "--out", "{out}", *MAP_FAST, *extra]


def _copy_delivery(kit, tmp) -> Path:
    return Path(shutil.copytree(kit["delivery"], tmp / "delivery"))


def _pan(folder: Path) -> Path:
    return next(folder.glob("*-PAN.tiff"))


def _overwrite_middle(path: Path, n_bytes: int) -> None:
    data = bytearray(path.read_bytes())
    start = len(data) // 3
    data[start:start + n_bytes] = np.random.default_rng(1).integers(0, 256, min(n_bytes, len(data) - start), dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _preprocess(delivery, dem, kit, *extra):
    return [str(delivery), "--dem", str(dem), "--out", "{out}", "--config", str(kit["root"] / "no-config.yaml"), *extra]


# --- map ------------------------------------------------------------------------------------
def c_missing_scene(kit, tmp):
    return _map(tmp / "missing.tif", kit["checkpoint"]), "missing.tif: file not found"


def c_folder_as_scene(kit, tmp):
    (tmp / "a_folder.tif").mkdir()
    return _map(tmp / "a_folder.tif", kit["checkpoint"]), "a_folder.tif: is a folder"


def c_jpeg_renamed_tif(kit, tmp):
    from PIL import Image

    Image.fromarray(random_scene()[0]).save(tmp / "photo.tif", format="JPEG")
    return _map(tmp / "photo.tif", kit["checkpoint"]), "photo.tif: is a JPEG file named .tif, not a GeoTIFF"


def c_first_1000_bytes(kit, tmp):
    cut = tmp / "cut.tif"
    cut.write_bytes(kit["scene"].read_bytes()[:1000])
    return _map(cut, kit["checkpoint"]), "cut.tif: "  # was "scene has no CRS" after 7 GDAL/warning lines


def c_truncated_after_header(kit, tmp):
    big = write_scene(tmp / "big.tif", random_scene(n=400), tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    big.write_bytes(big.read_bytes()[: int(big.stat().st_size * 0.6)])
    return _map(big, kit["checkpoint"]), "big.tif: file is truncated"  # was 53 lines, 2 tracebacks


def c_corrupt_block_in_scene(kit, tmp):
    scene = write_scene(tmp / "corrupt.tif", random_scene(n=400), tiled=True, blockxsize=64, blockysize=64,
                        compress="deflate")
    _overwrite_middle(scene, 20_000)
    return _map(scene, kit["checkpoint"]), "corrupt.tif: cannot read block at rows"


def c_no_crs(kit, tmp):
    return _map(write_scene(tmp / "nocrs.tif", random_scene(), crs=None), kit["checkpoint"]), "nocrs.tif: scene has no CRS"


def c_wrong_band_count(kit, tmp):
    return _map(write_scene(tmp / "four.tif", random_scene(4)), kit["checkpoint"]), "four.tif: scene has 4 bands"


def c_all_nodata(kit, tmp):
    return _map(write_scene(tmp / "empty.tif", np.zeros((3, 96, 96), np.uint8)), kit["checkpoint"]), \
        "empty.tif: every pixel is nodata"


def c_all_zero_without_nodata(kit, tmp):
    scene = write_scene(tmp / "zeros.tif", np.zeros((3, 96, 96), np.uint8), nodata=None)
    return _map(scene, kit["checkpoint"]), "zeros.tif: every pixel is nodata (constant border value 0)"  # was 1 landslide


def c_not_a_checkpoint(kit, tmp):
    (tmp / "garbage.pt").write_bytes(b"garbage")
    return _map(kit["scene"], tmp / "garbage.pt"), "garbage.pt: not a readable checkpoint"


def c_pickle_that_runs_code(kit, tmp):
    with open(tmp / "evil.pt", "wb") as handle:
        pickle.dump({"format": "lsmap-checkpoint", "x": RunsCode(tmp / "RAN")}, handle)
    return _map(kit["scene"], tmp / "evil.pt"), "evil.pt: not a readable checkpoint (not a file of plain tensors"


def c_header_of_another_model(kit, tmp):
    return _map(kit["scene"], fcn_checkpoint(tmp / "liar.pt", weights_of="unet")), "liar.pt: weights do not fit model 'fcn'"


def c_spec_bands_over_model_channels(kit, tmp):
    ckpt = fcn_checkpoint(tmp / "four_bands.pt", bands=("blue", "green", "red", "nir"), in_channels=3,
                          raw_edit=lambda raw: raw["model"]["kwargs"].update(in_channels=3))
    return _map(kit["scene"], ckpt), "four_bands.pt: input spec names 4 bands"


def c_checkpoint_without_input(kit, tmp):
    return _map(kit["scene"], fcn_checkpoint(tmp / "no_input.pt", raw_edit=lambda raw: raw.pop("input"))), \
        "no_input.pt: lsmap checkpoint without its 'input' entry"


def c_unknown_model_name(kit, tmp):
    return _map(kit["scene"], fcn_checkpoint(tmp / "alien.pt", model_name="hrnet")), "alien.pt: unknown model 'hrnet'"


def c_out_is_a_file(kit, tmp):
    (tmp / "out_file").write_text("x")
    argv = _map(kit["scene"], kit["checkpoint"])
    argv[argv.index("{out}")] = str(tmp / "out_file")
    return argv, "out_file: --out exists and is not a directory"


def c_missing_dem(kit, tmp):
    return _map(kit["scene"], kit["checkpoint"], "--dem", str(tmp / "nodem.tif")), "nodem.tif: DEM not found"


def c_impossible_date(kit, tmp):
    return _map(kit["scene"], kit["checkpoint"], "--acquired", "2022-13-45"), "'2022-13-45' is not an ISO date"


def c_config_wrong_type(kit, tmp):
    import yaml

    config = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())
    config["mapping"]["tile_size"] = "big"
    (tmp / "bad.yaml").write_text(yaml.safe_dump(config))
    return _map(kit["scene"], kit["checkpoint"], "--config", str(tmp / "bad.yaml")), \
        "bad.yaml: invalid configuration at mapping.tile_size"


def c_option_of_the_wrong_type(kit, tmp):
    return _map(kit["scene"], kit["checkpoint"], "--tile-size", "big"), "argument --tile-size: invalid int value: 'big'"


# --- preprocess -----------------------------------------------------------------------------
def c_corrupt_pan(kit, tmp):
    folder = _copy_delivery(kit, tmp)
    _overwrite_middle(_pan(folder), 20_000)  # was: exit 0, reflectance.tif with 0 % valid pixels
    return _preprocess(folder, kit["dem"], kit), "-PAN.tiff: cannot read block at rows"


def c_truncated_pan(kit, tmp):
    folder = _copy_delivery(kit, tmp)
    pan = _pan(folder)
    pan.write_bytes(pan.read_bytes()[: pan.stat().st_size // 2])
    return _preprocess(folder, kit["dem"], kit), "-PAN.tiff: file is truncated"


def c_missing_rpb(kit, tmp):
    folder = _copy_delivery(kit, tmp)
    next(folder.glob("*-MUX.rpb")).unlink()
    return _preprocess(folder, kit["dem"], kit), "-MUX.rpb: RPC file is missing"


def c_archive_escape(kit, tmp):
    evil = tmp / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"owned"))
    return _preprocess(evil, kit["dem"], kit), "evil.tar.gz: unsafe archive member"


def c_preprocess_missing_dem(kit, tmp):
    return _preprocess(kit["delivery"], tmp / "nodem.tif", kit), "nodem.tif: file not found"


def c_dem_elsewhere(kit, tmp):
    far = write_dem(tmp / "far_dem.tif", kit["dem_array"], transform=from_origin(100000, 1000000, 2, 2))
    return _preprocess(kit["delivery"], far, kit), "far_dem.tif: the DEM does not cover the scene"


def c_half_nodata_dem(kit, tmp):
    dem = kit["dem_array"]
    half = write_dem(tmp / "half_dem.tif", np.where(np.arange(dem.shape[1])[None, :] < dem.shape[1] // 3, dem, -9999.0))
    return _preprocess(kit["delivery"], half, kit), "half_dem.tif: the DEM covers only"  # left dem_source.tif before


# --- dataset --------------------------------------------------------------------------------
def c_truncated_png(kit, tmp):
    from PIL import Image

    images, masks = tmp / "images", tmp / "masks"
    images.mkdir(), masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / f"c{i}.png")
        Image.fromarray((rng.random((64, 64)) > 0.8).astype(np.uint8) * 255).save(masks / f"c{i}.png")
    png = images / "c3.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])  # was accepted; only train found it
    return ["--images", str(images), "--masks", str(masks), "--out", "{out}"], "c3.png: cannot read image"


CASES = {
    "map: scene path missing": Case("map", c_missing_scene, True),
    "map: a folder given as the scene": Case("map", c_folder_as_scene),
    "map: a JPEG renamed .tif": Case("map", c_jpeg_renamed_tif),
    "map: scene cut to its first 1,000 bytes": Case("map", c_first_1000_bytes),
    "map: scene truncated after a valid header": Case("map", c_truncated_after_header),
    "map: scene with a corrupt compressed block": Case("map", c_corrupt_block_in_scene),
    "map: scene without CRS": Case("map", c_no_crs, True),
    "map: scene with the wrong band count": Case("map", c_wrong_band_count, True),
    "map: scene all nodata": Case("map", c_all_nodata, True),
    "map: all-zero scene without a nodata value": Case("map", c_all_zero_without_nodata),
    "map: checkpoint that is not one": Case("map", c_not_a_checkpoint, True),
    "map: pickle checkpoint whose loading runs code": Case("map", c_pickle_that_runs_code, True),
    "map: checkpoint header naming another model": Case("map", c_header_of_another_model),
    "map: input spec of 4 bands over a 3-channel model": Case("map", c_spec_bands_over_model_channels),
    "map: checkpoint without its input spec": Case("map", c_checkpoint_without_input),
    "map: checkpoint of an unknown model": Case("map", c_unknown_model_name),
    "map: --out is an existing file": Case("map", c_out_is_a_file),
    "map: --dem missing": Case("map", c_missing_dem, True),
    "map: --acquired 2022-13-45": Case("map", c_impossible_date),
    "map: --config with a wrong type": Case("map", c_config_wrong_type),
    "map: --tile-size big": Case("map", c_option_of_the_wrong_type),
    "preprocess: PAN with 20 kB of random bytes": Case("preprocess", c_corrupt_pan),
    "preprocess: PAN truncated": Case("preprocess", c_truncated_pan),
    "preprocess: .rpb missing": Case("preprocess", c_missing_rpb, True),
    "preprocess: archive member escaping the folder": Case("preprocess", c_archive_escape, True),
    "preprocess: DEM missing": Case("preprocess", c_preprocess_missing_dem),
    "preprocess: DEM elsewhere": Case("preprocess", c_dem_elsewhere),
    "preprocess: DEM two-thirds nodata": Case("preprocess", c_half_nodata_dem),
    "dataset import: truncated PNG": Case("dataset", c_truncated_png),
}


# -------------------------------------------------------------------------------------- checks


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(*folders: Path) -> list[str]:
    found = []
    for folder in folders:
        if folder.is_dir():
            found += [str(p) for p in folder.rglob("*") if any(mark in p.name for mark in LEFTOVER_MARKS)]
    return found


def prepare(kit, case: Case, tmp: Path) -> tuple[list[str], str, Path]:
    argv, expected = case.build(kit, tmp)
    out = tmp / "out"
    if case.verb == "map":
        shutil.copytree(kit["previous_map"], out)
    elif case.verb == "preprocess":
        shutil.copytree(kit["previous_ard"], out)
    verb = ["dataset", "import"] if case.verb == "dataset" else [case.verb]
    return verb + [a.replace("{out}", str(out)) for a in argv], expected, out


@pytest.fixture
def clean_logging():
    """Each verb configures the root logger for the stderr it finds; give each case a fresh one."""
    saved = logging.root.handlers[:]
    logging.root.handlers.clear()
    yield
    logging.root.handlers[:] = saved


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_naming_the_file_and_keeps_previous_results(name, kit, tmp_path, capfd, clean_logging):
    case = CASES[name]
    argv, expected, out = prepare(kit, case, tmp_path)
    before = tree_digest(out) if out.is_dir() else {}
    capfd.readouterr()
    try:
        code = lsmap_main(argv)
    except SystemExit as exc:  # argparse refuses an option or a value
        code = exc.code
    _, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, f"{name}: exit {code}, stderr:\n{err}"
    assert len(lines) == 1, f"{name}: {len(lines)} stderr lines:\n{err}"
    assert lines[0].startswith(f"lsmap {case.verb}: error: ") and expected in lines[0], lines[0]
    assert "np.float" not in lines[0] and "Traceback" not in err
    if out.is_dir():
        assert tree_digest(out) == before, "previous results changed"
    else:
        assert not out.exists()
    assert not leftovers(out, tmp_path), leftovers(out, tmp_path)
    assert not (tmp_path / "RAN").exists()  # the pickle case: nothing ran


@pytest.mark.parametrize("name", ["map: scene truncated after a valid header", "map: a JPEG renamed .tif",
                                  "preprocess: PAN with 20 kB of random bytes"])
def test_one_line_from_a_fresh_process(name, kit, tmp_path):
    """The same in a new interpreter: import-time warnings and GDAL's C-level messages would show here."""
    argv, expected, out = prepare(kit, CASES[name], tmp_path)
    proc = subprocess.run([sys.executable, "-m", "lsmap.cli", *argv], capture_output=True, text=True, timeout=300,
                          cwd=PROJECT_ROOT, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and expected in lines[0], proc.stderr
