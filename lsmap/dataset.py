"""Making training datasets in the paper's layout: ``lsmap dataset import`` and ``lsmap dataset build``.

Both write ``<out>/{Train,Valid,Test}/{Image, Semantic Segmentation Label, Object Detection Label}``
plus ``<out>/dataset.json`` (band names, split counts, provenance). The whole dataset is written
into a hidden temporary folder beside ``<out>`` and renamed into place when complete.

* Segmentation labels: single-band uint8 GeoTIFF/TIFF, 255 = landslide, 0 = background, same stem
  as the image.
* Detection labels (``<stem>.txt``): one line per connected landslide region (8-connectivity), four
  floats ``x_min y_min x_max y_max`` relative to the chip's width and height, measured on pixel
  edges (a region covering columns 10..19 of a 100 px chip gives x_min 0.10, x_max 0.20); origin
  at the chip's top-left corner. A chip without landslides gets an empty file.
* Splits: ``random`` shuffles chips with a seed (80/10/10); ``blocked`` (build only) assigns whole
  spatial blocks of ``block_chips`` x ``block_chips`` chip strides to one split (halving the block
  until there are at least 10 blocks) and then drops every Train chip that overlaps a Valid/Test
  chip (and Test chips overlapping Valid ones), so overlapping chips cannot leak across splits.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

import lsmap
from lsmap.data import (DETECTION_DIR, IMAGE_DIR, IMAGE_SUFFIXES, LABEL_DIR, METADATA_FILE, SPLITS,
                        dataset_hash, parse_colour, read_image, read_label)
from lsmap.errors import LsmapError

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
SPLIT_LIST_NAMES = {"Train": "train", "Valid": "val", "Test": "test"}
MIN_BLOCKS = 10  # fewer blocks than this and the 80/10/10 proportions cannot be approached


# ----------------------------------------------------------------------------------------------
# Detection labels


def detection_boxes(label: np.ndarray) -> np.ndarray:
    """Boxes of the 8-connected landslide regions of a (H, W) {0,1} label.

    Returns (N, 4) float64 ``x_min, y_min, x_max, y_max`` as fractions of the chip width/height,
    on pixel edges, in the scan order of the regions' first pixels.
    """
    height, width = label.shape
    regions, _ = ndimage.label(label == 1, structure=np.ones((3, 3), dtype=bool))
    boxes = [
        (cols.start / width, rows.start / height, cols.stop / width, rows.stop / height)
        for rows, cols in ndimage.find_objects(regions)
    ]
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def write_detection_label(path: Path, label: np.ndarray) -> int:
    boxes = detection_boxes(label)
    path.write_text("".join(" ".join(f"{v:.6f}" for v in box) + "\n" for box in boxes))
    return len(boxes)


def write_label_tif(path: Path, label: np.ndarray, profile: dict | None = None) -> None:
    """Write a {0,1} label as single-band uint8 0/255 TIFF (georeferenced if ``profile`` is given)."""
    import rasterio

    meta = {"driver": "GTiff", "height": label.shape[0], "width": label.shape[1], "count": 1,
            "dtype": "uint8", "compress": "deflate"}
    if profile:
        meta.update({k: profile[k] for k in ("crs", "transform") if k in profile})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # imported chips are not georeferenced
        with rasterio.open(path, "w", **meta) as dst:
            dst.write((label.astype(np.uint8) * 255)[None])


# ----------------------------------------------------------------------------------------------
# Splits


def assign_groups(group_sizes: dict, seed: int, fractions=SPLIT_FRACTIONS) -> dict:
    """Shuffle groups (chips or spatial blocks) and give each to the split furthest below its target.

    The relative deficit (target - assigned) / target decides, so with three or more groups each
    split gets at least one. Returns {group: split name}.
    """
    groups = list(group_sizes)
    order = np.random.default_rng(seed).permutation(len(groups))
    total = sum(group_sizes.values())
    targets = {split: fraction * total for split, fraction in zip(SPLITS, fractions)}
    assigned = {split: 0 for split in SPLITS}
    out = {}
    for index in order:
        group = groups[index]
        split = max(SPLITS, key=lambda s: ((targets[s] - assigned[s]) / targets[s], -SPLITS.index(s)))
        out[group] = split
        assigned[split] += group_sizes[group]
    return out


def _check_splits_not_empty(counts: dict, out_dir: Path, hint: str) -> None:
    for split in SPLITS:
        if counts.get(split, 0) == 0:
            raise LsmapError(f"{out_dir}: split '{split}' would be empty ({counts}); {hint}")


# ----------------------------------------------------------------------------------------------
# Writing the layout atomically


def _staging_dir(out_dir: Path, overwrite: bool) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise LsmapError(f"{out_dir}: output folder is not empty (use --overwrite to replace it)")
    staging = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    for split in SPLITS:
        for sub in (IMAGE_DIR, LABEL_DIR, DETECTION_DIR):
            (staging / split / sub).mkdir(parents=True)
    return staging


def _publish(staging: Path, out_dir: Path, metadata: dict) -> dict:
    metadata["dataset_hash"] = dataset_hash(staging)
    (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(staging, out_dir)
    metadata["out_dir"] = str(out_dir)
    return metadata


# ----------------------------------------------------------------------------------------------
# Import: plain image/mask folders + split lists


def _index_by_stem(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise LsmapError(f"{folder}: {what} folder not found")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")}


def folder_pairs(images: Path, masks: Path) -> dict[str, tuple[Path, Path]]:
    """{stem: (image, mask)} of an image folder and a mask folder; an image without a mask, or no
    image at all, is a one-line LsmapError naming the file or folder."""
    image_files = _index_by_stem(images, "image")
    mask_files = _index_by_stem(masks, "mask")
    if not image_files:
        raise LsmapError(f"{images}: no image chips ({', '.join(IMAGE_SUFFIXES)})")
    for stem, path in image_files.items():
        if stem not in mask_files:
            raise LsmapError(f"{path}: image has no mask of the same name in '{masks}'")
    return {stem: (path, mask_files[stem]) for stem, path in image_files.items()}


def _read_split_lists(splits_dir: Path, names: set[str]) -> dict[str, str]:
    assignment = {}
    for split, list_name in SPLIT_LIST_NAMES.items():
        path = splits_dir / f"{list_name}.txt"
        if not path.is_file():
            raise LsmapError(f"{path}: split list not found (expected train.txt, val.txt, test.txt)")
        for line in path.read_text().splitlines():
            stem = Path(line.strip()).stem
            if not stem:
                continue
            if stem not in names:
                raise LsmapError(f"{path}: lists '{stem}', which has no image")
            if stem in assignment:
                raise LsmapError(f"{path}: '{stem}' is already in split {assignment[stem]}")
            assignment[stem] = split
    return assignment


def import_dataset(images: Path, masks: Path, out_dir: Path, *, splits_dir: Path | None = None,
                   seed: int = 42, bands: list[str] | None = None, overwrite: bool = False,
                   test_only: bool = False, mask_colour: tuple[int, ...] | None = None,
                   gsd_m: float | None = None) -> dict:
    """Copy image chips and their masks into the paper layout; returns the summary (also in dataset.json).

    Images are copied byte for byte; masks (0/255 or 0/1, or ``mask_colour`` marking landslides;
    same stem and size as the image) become 0/255 TIFF labels plus detection labels. With
    ``splits_dir`` (``train.txt``, ``val.txt``, ``test.txt``: one chip name per line) the listed
    chips go to Train/Valid/Test and unlisted chips are left out; without it the split is random
    80/10/10 with ``seed``. ``test_only``: every chip goes to Test (labelled chips of another
    region, to evaluate a model on; Train and Valid stay empty). ``gsd_m`` (metres per pixel) is
    recorded in dataset.json, and from there in the checkpoints trained on it.
    """
    images, masks, out_dir = Path(images), Path(masks), Path(out_dir)
    pairs = folder_pairs(images, masks)
    image_files = {stem: image for stem, (image, _) in pairs.items()}
    mask_files = {stem: mask for stem, (_, mask) in pairs.items()}
    if test_only and splits_dir is not None:
        raise LsmapError(f"{splits_dir}: --test-only puts every chip in Test; drop --splits")
    if gsd_m is not None and not gsd_m > 0:
        raise LsmapError(f"ground sampling distance must be positive, got {gsd_m}")
    if test_only:
        assignment = {stem: "Test" for stem in image_files}
    elif splits_dir is not None:
        assignment = _read_split_lists(Path(splits_dir), set(image_files))
    else:
        assignment = assign_groups({stem: 1 for stem in image_files}, seed)
    counts = {split: sum(1 for s in assignment.values() if s == split) for split in SPLITS}
    if not test_only:
        _check_splits_not_empty(counts, out_dir, "check the split lists (or use --test-only for an evaluation set)")

    from tqdm import tqdm

    staging = _staging_dir(out_dir, overwrite)
    boxes = landslide_px = total_px = 0
    try:
        for stem in tqdm(sorted(assignment), desc="import chips", unit="chip", mininterval=2, disable=None):
            split_dir = staging / assignment[stem]
            image = image_files[stem]
            pixels = read_image(image)  # decoded in full: a truncated chip fails here, not in training
            label = read_label(mask_files[stem], pixels.shape[1:], colour=mask_colour)
            del pixels
            shutil.copyfile(image, split_dir / IMAGE_DIR / image.name)
            write_label_tif(split_dir / LABEL_DIR / f"{stem}.tif", label)
            boxes += write_detection_label(split_dir / DETECTION_DIR / f"{stem}.txt", label)
            landslide_px += int(label.sum())
            total_px += label.size
        if mask_colour is not None and landslide_px == 0:
            raise LsmapError(f"{masks}: mask colour {','.join(map(str, mask_colour))} matches no pixel of any mask")
        n_bands = _first_image_bands(image_files[next(iter(sorted(assignment)))])
        metadata = {
            "format": "lsmap-dataset",
            "lsmap_version": lsmap.__version__,
            "created_by": "lsmap dataset import",
            "source": {"images": str(images), "masks": str(masks),
                       "splits": str(splits_dir) if splits_dir else None},
            "split": "test-only" if test_only else ("lists" if splits_dir else "random"),
            "seed": seed,
            "bands": bands or _default_bands(n_bands),
            "chips": counts,
            "left_out": len(image_files) - len(assignment),
            "detection_boxes": boxes,
            "landslide_fraction": landslide_px / max(total_px, 1),
            "mask_colour": list(mask_colour) if mask_colour is not None else None,
        }
        if gsd_m is not None:
            metadata["gsd_m"] = float(gsd_m)
        return _publish(staging, out_dir, metadata)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _first_image_bands(path: Path) -> int:
    from lsmap.data import read_image

    return read_image(path).shape[0]


def _default_bands(n_bands: int) -> list[str]:
    defaults = {1: ["gray"], 3: ["red", "green", "blue"], 4: ["blue", "green", "red", "nir"]}
    return defaults.get(n_bands, [f"band{i + 1}" for i in range(n_bands)])


# ----------------------------------------------------------------------------------------------
# Build: scenes + landslide polygons


@dataclass
class _ChipRecord:
    name: str
    crs: str
    bounds: tuple[float, float, float, float]  # left, bottom, right, top in the scene CRS
    block: tuple
    landslide_px: int
    size_px: int
    staged: dict = field(default_factory=dict)


def chip_offsets(length: int, chip_size: int, overlap_px: int) -> list[int]:
    """Window origins along one axis: stride chip_size - overlap, the last chip flush with the edge."""
    if length < chip_size:
        return []
    stride = chip_size - overlap_px
    offsets = list(range(0, length - chip_size + 1, stride))
    if offsets[-1] != length - chip_size:
        offsets.append(length - chip_size)
    return offsets


def _scene_bands(src) -> list[str]:
    descriptions = [d.strip().lower() for d in src.descriptions if d]
    if len(descriptions) == src.count and len(set(descriptions)) == src.count:
        return descriptions
    return _default_bands(src.count)


def _load_polygons(polygons: Path):
    import geopandas as gpd

    try:
        frame = gpd.read_file(polygons)
    except Exception as exc:
        raise LsmapError(f"{polygons}: cannot read polygons ({str(exc).splitlines()[0]})") from exc
    if frame.crs is None:
        raise LsmapError(f"{polygons}: polygons have no CRS")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    frame = frame[frame.geom_type.isin(["Polygon", "MultiPolygon"])].copy()
    frame["geometry"] = frame.geometry.make_valid()
    return frame


def _choose_block_chips(scene_shapes: list[tuple[int, int]], chip_size: int, overlap_px: int, block_chips: int) -> int:
    """Largest block edge (in chip strides, halving from ``block_chips``) that gives >= MIN_BLOCKS blocks."""
    stride = chip_size - overlap_px
    while block_chips > 1:
        blocks = sum(math.ceil(h / (stride * block_chips)) * math.ceil(w / (stride * block_chips)) for h, w in scene_shapes)
        if blocks >= MIN_BLOCKS:
            break
        block_chips //= 2
    return max(block_chips, 1)


def _overlaps(a: tuple, b: np.ndarray) -> np.ndarray:
    """Interior overlap of box ``a`` with boxes ``b`` (N, 4) left, bottom, right, top (touching is no overlap)."""
    return (b[:, 0] < a[2]) & (b[:, 2] > a[0]) & (b[:, 1] < a[3]) & (b[:, 3] > a[1])


def drop_cross_split_overlaps(records: list[_ChipRecord], assignment: dict[str, str]) -> list[str]:
    """Drop Train chips that overlap a Valid/Test chip, then Test chips that overlap a Valid chip.

    The buffer between blocks is taken from Train, the largest split, so small evaluation blocks
    survive; returns the dropped names (removed from ``assignment``).
    """
    bounds = np.array([r.bounds for r in records], dtype=np.float64)
    crs = np.array([r.crs for r in records])
    splits = np.array([assignment[r.name] for r in records], dtype=object)
    dropped = []
    for split, against in (("Train", ("Valid", "Test")), ("Test", ("Valid",))):
        others = np.isin(splits, against)
        for index in np.flatnonzero(splits == split):
            candidates = others & (crs == crs[index])
            if _overlaps(records[index].bounds, bounds[candidates]).any():
                splits[index] = None
                dropped.append(records[index].name)
                del assignment[records[index].name]
    return dropped


def _cut_scene(scene: Path, polygons, staging: Path, chip_size: int, overlap_px: int,
               max_nodata_fraction: float, block_m: float, counters: dict) -> tuple[list[_ChipRecord], list[str], str]:
    import rasterio
    from rasterio.features import rasterize
    from rasterio.windows import Window
    from shapely.geometry import box

    records = []
    with rasterio.open(scene) as src:
        if src.crs is None:
            raise LsmapError(f"{scene}: scene has no CRS; lsmap dataset build needs georeferenced scenes")
        local = polygons.to_crs(src.crs)
        crs_key = src.crs.to_string()
        profile = {"driver": "GTiff", "dtype": src.dtypes[0], "count": src.count, "crs": src.crs,
                   "nodata": src.nodata, "compress": "deflate", "height": chip_size, "width": chip_size}
        for row in chip_offsets(src.height, chip_size, overlap_px):
            for col in chip_offsets(src.width, chip_size, overlap_px):
                window = Window(col, row, chip_size, chip_size)
                valid = src.dataset_mask(window=window) > 0
                if 1.0 - valid.mean() > max_nodata_fraction:
                    counters["dropped_nodata"] += 1
                    continue
                transform = src.window_transform(window)
                bounds = rasterio.windows.bounds(window, src.transform)
                hits = local.iloc[local.sindex.query(box(*bounds))] if len(local) else local
                shapes = [(geom, 1) for geom in hits.geometry]
                label = (rasterize(shapes, out_shape=(chip_size, chip_size), transform=transform, fill=0, dtype="uint8")
                         if shapes else np.zeros((chip_size, chip_size), np.uint8))
                label[~valid] = 0
                name = f"{scene.stem}_r{row:06d}_c{col:06d}"
                with rasterio.open(staging / f"{name}.tif", "w", **{**profile, "transform": transform}) as dst:
                    dst.write(src.read(window=window))
                    for band, description in enumerate(src.descriptions, start=1):
                        if description:
                            dst.set_band_description(band, description)
                write_label_tif(staging / f"{name}.label.tif", label, {"crs": src.crs, "transform": transform})
                write_detection_label(staging / f"{name}.txt", label)
                centre_x, centre_y = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
                block = (crs_key, math.floor(centre_x / block_m), math.floor(centre_y / block_m))
                records.append(_ChipRecord(name, crs_key, tuple(bounds), block, int(label.sum()), label.size))
        return records, _scene_bands(src), src.dtypes[0]


def build_dataset(scenes: list[Path], polygons: Path, out_dir: Path, *, chip_size: int = 512, overlap_px: int = 0,
                  split: str = "random", seed: int = 42, max_nodata_fraction: float = 0.5,
                  block_chips: int = 4, overwrite: bool = False) -> dict:
    """Cut georeferenced chips and rasterised polygon labels from scenes into the paper layout.

    ``scenes``: GeoTIFFs with a CRS (any band count/dtype, nodata honoured through the dataset
    mask); ``polygons``: any OGR vector of landslide polygons with a CRS (reprojected to each
    scene). Chips whose nodata fraction exceeds ``max_nodata_fraction`` are dropped. Returns the
    summary written to ``dataset.json``.
    """
    if split not in ("random", "blocked"):
        raise LsmapError(f"unknown split {split!r}: use random or blocked")
    if not 0 <= overlap_px < chip_size:
        raise LsmapError(f"overlap_px must be in [0, chip_size): got {overlap_px} for chip size {chip_size}")
    import rasterio

    scenes = [Path(s) for s in scenes]
    out_dir = Path(out_dir)
    shapes, pixel_m, projected = [], None, False
    for scene in scenes:
        if not scene.is_file():
            raise LsmapError(f"{scene}: scene not found")
        with rasterio.open(scene) as src:
            shapes.append((src.height, src.width))
            pixel_m = pixel_m or abs(src.transform.a)
            projected = src.crs is not None and src.crs.is_projected and src.crs.linear_units_factor[1] == 1.0
    polygon_frame = _load_polygons(Path(polygons))
    block_chips = _choose_block_chips(shapes, chip_size, overlap_px, block_chips) if split == "blocked" else 1
    block_m = block_chips * (chip_size - overlap_px) * pixel_m

    staging = _staging_dir(out_dir, overwrite)
    flat = staging / ".chips"
    flat.mkdir()
    counters = {"dropped_nodata": 0}
    try:
        records, bands, dtype = [], None, None
        for scene in scenes:
            scene_records, scene_bands, scene_dtype = _cut_scene(scene, polygon_frame, flat, chip_size, overlap_px,
                                                                 max_nodata_fraction, block_m, counters)
            if bands is not None and len(scene_bands) != len(bands):
                raise LsmapError(f"{scene}: has {len(scene_bands)} bands but {scenes[0]} has {len(bands)}")
            bands, dtype = bands or scene_bands, dtype or scene_dtype
            records += scene_records
        if not records:
            raise LsmapError(f"{out_dir}: no chip of {chip_size} px with at most {max_nodata_fraction:.0%} nodata in the scenes")
        if split == "blocked":
            block_sizes: dict = {}
            for record in records:
                block_sizes[record.block] = block_sizes.get(record.block, 0) + 1
            block_split = assign_groups(block_sizes, seed)
            assignment = {r.name: block_split[r.block] for r in records}
            dropped_overlap = drop_cross_split_overlaps(records, assignment)
        else:
            assignment = assign_groups({r.name: 1 for r in records}, seed)
            dropped_overlap = []
        counts = {s: sum(1 for v in assignment.values() if v == s) for s in SPLITS}
        _check_splits_not_empty(counts, out_dir, "use more or larger scenes, a smaller chip size or split=random")
        fractions = {}
        for split_name in SPLITS:
            members = [r for r in records if assignment.get(r.name) == split_name]
            for record in members:
                os.replace(flat / f"{record.name}.tif", staging / split_name / IMAGE_DIR / f"{record.name}.tif")
                os.replace(flat / f"{record.name}.label.tif", staging / split_name / LABEL_DIR / f"{record.name}.tif")
                os.replace(flat / f"{record.name}.txt", staging / split_name / DETECTION_DIR / f"{record.name}.txt")
            fractions[split_name] = sum(r.landslide_px for r in members) / max(sum(r.size_px for r in members), 1)
        shutil.rmtree(flat)
        metadata = {
            "format": "lsmap-dataset",
            "lsmap_version": lsmap.__version__,
            "created_by": "lsmap dataset build",
            "source": {"scenes": [str(s) for s in scenes], "polygons": str(polygons)},
            "bands": bands,
            "dtype": dtype,
            "chip_size": chip_size,
            "overlap_px": overlap_px,
            "gsd_m": float(pixel_m) if projected else None,  # metres per pixel (first scene), recorded in checkpoints
            "split": split,
            "seed": seed,
            "block_size_m": block_m if split == "blocked" else None,
            "max_nodata_fraction": max_nodata_fraction,
            "chips": counts,
            "dropped_nodata": counters["dropped_nodata"],
            "dropped_overlap": len(dropped_overlap),
            "landslide_fraction": fractions,
            "chip_bounds": {r.name: [assignment[r.name], r.crs, *r.bounds] for r in records if r.name in assignment},
        }
        if split == "random" and overlap_px > 0:
            metadata["warning"] = "random split of overlapping chips: neighbouring chips share pixels across splits"
        return _publish(staging, out_dir, metadata)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------------------------
# CLI


def build_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    imp = sub.add_parser("import", help="image/mask folders (+ split lists) -> paper layout")
    imp.add_argument("--images", type=Path, required=True, help="folder of image chips (PNG/JPEG/TIFF)")
    imp.add_argument("--masks", type=Path, required=True, help="folder of masks with the same stems (0/255 or 0/1)")
    imp.add_argument("--mask-colour", "--mask-color", dest="mask_colour",
                     help="landslide colour of RGB (or class-index) masks, e.g. 255,0,0; other pixels are background")
    imp.add_argument("--splits", type=Path, help="folder with train.txt, val.txt, test.txt (else random 80/10/10)")
    imp.add_argument("--test-only", action="store_true",
                     help="put every chip in Test (labelled chips of another region, for lsmap evaluate)")
    imp.add_argument("--gsd-m", type=float, help="ground sampling distance of the chips in metres (recorded in dataset.json)")
    imp.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    imp.add_argument("--seed", type=int, default=42)
    imp.add_argument("--bands", help="comma-separated band names (default: red,green,blue for 3 bands)")
    imp.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")

    build = sub.add_parser("build", help="scenes + landslide polygons -> chips in the paper layout")
    build.add_argument("--scene", type=Path, action="append", required=True, help="GeoTIFF scene (repeatable)")
    build.add_argument("--polygons", type=Path, required=True, help="landslide polygons (any OGR format with a CRS)")
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--chip-size", type=int, default=512)
    build.add_argument("--overlap-px", type=int, default=0)
    build.add_argument("--split", choices=("random", "blocked"), default="random")
    build.add_argument("--block-chips", type=int, default=4, help="blocked split: block edge in chip strides")
    build.add_argument("--seed", type=int, default=42)
    build.add_argument("--max-nodata-fraction", type=float, default=0.5)
    build.add_argument("--overwrite", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.action == "import":
        summary = import_dataset(args.images, args.masks, args.out, splits_dir=args.splits, seed=args.seed,
                                 bands=args.bands.split(",") if args.bands else None, overwrite=args.overwrite,
                                 test_only=args.test_only, mask_colour=parse_colour(args.mask_colour), gsd_m=args.gsd_m)
    else:
        summary = build_dataset(args.scene, args.polygons, args.out, chip_size=args.chip_size,
                                overlap_px=args.overlap_px, split=args.split, seed=args.seed,
                                max_nodata_fraction=args.max_nodata_fraction, block_chips=args.block_chips,
                                overwrite=args.overwrite)
    summary.pop("chip_bounds", None)
    print(json.dumps(summary, indent=2))
    return 0
