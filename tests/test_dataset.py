"""lsmap dataset import / build: layout, detection labels, rasterised polygons and leak-free splits."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage
from shapely.geometry import box

from lsmap.data import DETECTION_DIR, IMAGE_DIR, LABEL_DIR, SPLITS, list_chips, read_label
from lsmap.dataset import build_dataset, detection_boxes, import_dataset
from lsmap.errors import LsmapError


def test_detection_boxes_of_known_components_use_8_connectivity_and_pixel_edges():
    mask = np.zeros((10, 10), np.uint8)
    mask[0, 8:10] = 1  # C: first in scan order
    mask[1:4, 1:5] = 1  # A
    mask[6, 6] = mask[7, 7] = 1  # B: diagonal neighbours are one region
    boxes = detection_boxes(mask)
    assert np.allclose(boxes, [[0.8, 0.0, 1.0, 0.1], [0.1, 0.1, 0.5, 0.4], [0.6, 0.6, 0.8, 0.8]])
    assert detection_boxes(np.zeros((5, 5), np.uint8)).shape == (0, 4)


@pytest.fixture
def bijie_subset(tmp_path, shared_data):
    names = {"train": ["ls_0000", "ls_0001", "ls_0002", "nls_0002", "ls_0003", "ls_0004"],
             "val": ["ls_0005", "nls_0003"], "test": ["ls_0006", "ls_0007"]}
    src = tmp_path / "src"
    for sub in ("images", "masks", "splits"):
        (src / sub).mkdir(parents=True)
    for split, stems in names.items():
        (src / "splits" / f"{split}.txt").write_text("\n".join(stems) + "\n")
        for stem in stems:
            for sub in ("images", "masks"):
                (src / sub / f"{stem}.png").symlink_to(shared_data / "bijie" / sub / f"{stem}.png")
    return src, names


def test_import_writes_the_paper_layout_with_0_255_labels_and_detection_boxes(tmp_path, bijie_subset):
    src, names = bijie_subset
    out = tmp_path / "dataset"
    summary = import_dataset(src / "images", src / "masks", out, splits_dir=src / "splits")
    assert summary["chips"] == {"Train": 6, "Valid": 2, "Test": 2}
    assert json.loads((out / "dataset.json").read_text())["bands"] == ["red", "green", "blue"]
    for split, key in zip(SPLITS, ("train", "val", "test")):
        chips = list_chips(out, split)
        assert [c.name for c in chips] == sorted(names[key])
        for chip in chips:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                label_file = rasterio.open(chip.label)
            with label_file:
                raw = label_file.read(1)
            assert set(np.unique(raw)) <= {0, 255}
            mask = read_label(src / "masks" / f"{chip.name}.png")
            assert np.array_equal(raw == 255, mask == 1)
            lines = (out / split / DETECTION_DIR / f"{chip.name}.txt").read_text().splitlines()
            assert len(lines) == ndimage.label(mask, structure=np.ones((3, 3)))[1]
            for line in lines:
                x0, y0, x1, y1 = map(float, line.split())
                assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
            if lines:  # the union of boxes covers every landslide pixel
                rows, cols = np.nonzero(mask)
                h, w = mask.shape
                boxes = np.array([list(map(float, l.split())) for l in lines])
                inside = ((cols[:, None] + 0.5) / w > boxes[:, 0]) & ((cols[:, None] + 0.5) / w < boxes[:, 2]) \
                    & ((rows[:, None] + 0.5) / h > boxes[:, 1]) & ((rows[:, None] + 0.5) / h < boxes[:, 3])
                assert inside.any(axis=1).all()


def test_import_refuses_an_image_without_mask_and_a_non_empty_output(tmp_path, bijie_subset):
    src, _ = bijie_subset
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(LsmapError, match="output folder is not empty"):
        import_dataset(src / "images", src / "masks", tmp_path / "full")
    (src / "masks" / "ls_0007.png").unlink()
    with pytest.raises(LsmapError, match=r"ls_0007\.png: image has no mask of the same name"):
        import_dataset(src / "images", src / "masks", tmp_path / "out", splits_dir=src / "splits")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- build

PIXEL_M = 2.0
ORIGIN = (500_000.0, 3_400_000.0)  # UTM 48N, upper-left corner


def _scene(path: Path, height=300, width=400) -> Path:
    rng = np.random.default_rng(1)
    pixels = rng.integers(100, 4000, size=(4, height, width), dtype=np.uint16)
    pixels[:, :, :60] = 0  # nodata strip: chips starting at column 0 are > 50 % nodata
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=4, dtype="uint16",
                       crs="EPSG:32648", transform=from_origin(*ORIGIN, PIXEL_M, PIXEL_M), nodata=0) as dst:
        dst.write(pixels)
        for band, name in enumerate(("blue", "green", "red", "nir"), start=1):
            dst.set_band_description(band, name)
    return path


def _pixel_box(row0, row1, col0, col1):
    x0, y0 = ORIGIN
    return box(x0 + col0 * PIXEL_M, y0 - row1 * PIXEL_M, x0 + col1 * PIXEL_M, y0 - row0 * PIXEL_M)


def _polygons(path: Path) -> Path:
    frame = gpd.GeoDataFrame({"id": [1, 2]}, geometry=[_pixel_box(100, 120, 200, 230), _pixel_box(250, 270, 300, 340)],
                             crs="EPSG:32648").to_crs("EPSG:4326")  # another CRS: build must reproject
    frame.to_file(path, driver="GPKG")
    return path


def _chip_bounds(root: Path) -> dict[str, list]:
    out = {split: [] for split in SPLITS}
    for split in SPLITS:
        for chip in list_chips(root, split):
            with rasterio.open(chip.image) as src:
                out[split].append(tuple(src.bounds))
    return out


def test_build_rasterises_polygons_on_the_chip_grid_and_drops_nodata_chips(tmp_path):
    scene, polygons = _scene(tmp_path / "scene.tif"), _polygons(tmp_path / "landslides.gpkg")
    out = tmp_path / "ds"
    summary = build_dataset([scene], polygons, out, chip_size=64, overlap_px=16, split="random", seed=3)
    # rows 0,48,...,192,236 (6) x cols 0,...,336 (8); the chips at column 0 (76 % nodata) are dropped
    assert summary["dropped_nodata"] == 6
    assert sum(summary["chips"].values()) == 6 * 7
    assert summary["bands"] == ["blue", "green", "red", "nir"]
    hits = list(out.glob("*/Image/scene_r000096_c000192.tif"))
    assert len(hits) == 1
    label_path = hits[0].parent.parent / LABEL_DIR / hits[0].name
    label = read_label(label_path)
    expected = np.zeros((64, 64), np.uint8)
    expected[4:24, 8:38] = 1
    assert np.array_equal(label, expected)
    with rasterio.open(hits[0]) as chip, rasterio.open(scene) as src:
        assert chip.crs == src.crs and chip.nodata == 0 and chip.dtypes[0] == "uint16"
        assert chip.transform == src.window_transform(rasterio.windows.Window(192, 96, 64, 64))
        assert np.array_equal(chip.read(), src.read(window=rasterio.windows.Window(192, 96, 64, 64)))
    boxes = (hits[0].parent.parent / DETECTION_DIR / f"{hits[0].stem}.txt").read_text().split()
    assert list(map(float, boxes)) == pytest.approx([8 / 64, 4 / 64, 38 / 64, 24 / 64])


def test_blocked_split_has_no_spatial_overlap_between_splits(tmp_path):
    scene, polygons = _scene(tmp_path / "scene.tif"), _polygons(tmp_path / "landslides.gpkg")
    out = tmp_path / "blocked"
    summary = build_dataset([scene], polygons, out, chip_size=64, overlap_px=16, split="blocked", seed=5)
    bounds = _chip_bounds(out)
    assert all(bounds[split] for split in SPLITS)
    assert summary["chips"]["Train"] > summary["chips"]["Valid"]
    for a_split in SPLITS:
        for b_split in SPLITS:
            if a_split >= b_split:
                continue
            for a in bounds[a_split]:
                for b in bounds[b_split]:
                    overlap = a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                    assert not overlap, f"{a_split} chip {a} overlaps {b_split} chip {b}"
    # the same chips cut with a random split do overlap across splits (why blocked exists)
    random_bounds = _chip_bounds(Path(build_dataset([scene], polygons, tmp_path / "rnd", chip_size=64, overlap_px=16,
                                                    split="random", seed=5)["out_dir"]))
    leaks = sum(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                for a in random_bounds["Train"] for b in random_bounds["Test"])
    assert leaks > 0


def test_build_names_a_scene_without_crs(tmp_path):
    path = tmp_path / "nocrs.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", height=80, width=80, count=1, dtype="uint8") as dst:
            dst.write(np.ones((1, 80, 80), np.uint8))
    with pytest.raises(LsmapError, match=r"nocrs\.tif: scene has no CRS"):
        build_dataset([path], _polygons(tmp_path / "p.gpkg"), tmp_path / "out", chip_size=32)
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_import_test_only_puts_every_chip_in_test_and_a_plain_import_points_to_it(tmp_path, bijie_subset):
    src, names = bijie_subset
    test_stems = names["test"]
    images, masks = tmp_path / "region" / "images", tmp_path / "region" / "masks"
    images.mkdir(parents=True), masks.mkdir()
    for stem in test_stems:
        (images / f"{stem}.png").symlink_to((src / "images" / f"{stem}.png").resolve())
        (masks / f"{stem}.png").symlink_to((src / "masks" / f"{stem}.png").resolve())
    with pytest.raises(LsmapError, match="would be empty.*--test-only"):
        import_dataset(images, masks, tmp_path / "a")
    summary = import_dataset(images, masks, tmp_path / "b", test_only=True, gsd_m=2.0)
    assert summary["chips"] == {"Train": 0, "Valid": 0, "Test": 2} and summary["split"] == "test-only"
    meta = json.loads((tmp_path / "b" / "dataset.json").read_text())
    assert meta["gsd_m"] == 2.0 and [c.name for c in list_chips(tmp_path / "b", "Test")] == sorted(test_stems)
    with pytest.raises(LsmapError, match="--test-only puts every chip in Test; drop --splits"):
        import_dataset(images, masks, tmp_path / "c", test_only=True, splits_dir=src / "splits")
    with pytest.raises(LsmapError, match=r"masks: mask colour 9 matches no pixel of any mask"):
        import_dataset(images, masks, tmp_path / "d", test_only=True, mask_colour=(9,))
