"""Reading training chips in the paper's dataset layout, and turning them into model input.

Layout (Zhao et al. 2024, section 3): ``<root>/{Train,Valid,Test}/Image/<name>.<png|jpg|tif>``,
``<root>/<split>/Semantic Segmentation Label/<name>.<tif|png>`` (0 background, 255 or 1
landslide, same stem and size as the image) and ``Object Detection Label/<name>.txt``. An optional
``<root>/dataset.json`` (written by ``lsmap dataset``) names the bands.

Pixel units stay those on disk (0..255 for 8-bit PNG/JPEG, reflectance x 1e4 for uint16 GF-6
chips): normalisation statistics are computed in those units on the training split and stored in
the checkpoint, so the mapping stage applies ``(x - mean) / std`` to raw scene pixels.

Size policies for chips of varying size (``size_policy``):

* ``crop`` (default): keep the pixel size. Training takes a random ``input_size`` window (chips
  smaller than that are mirror-padded, the padding labelled ``IGNORE`` so it counts in no loss
  and no metric); evaluation runs on the whole chip. The model sees the same ground sampling
  distance in training, evaluation and mapping.
* ``resize``: scale every chip to ``input_size`` (image bilinear, label nearest neighbour);
  evaluation predicts at ``input_size`` and scales the logits back to the label's own size, so
  metrics are always at full chip resolution. Changes the apparent pixel size of the chips.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lsmap.errors import LsmapError
from lsmap.fileio import sha256_file
from lsmap.metrics import IGNORE

SPLITS = ("Train", "Valid", "Test")
IMAGE_DIR = "Image"
LABEL_DIR = "Semantic Segmentation Label"
DETECTION_DIR = "Object Detection Label"
METADATA_FILE = "dataset.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
SIZE_POLICIES = ("crop", "resize")
EVAL_PAD_MULTIPLE = 32  # output stride of the deepest backbone stage


@dataclass(frozen=True)
class Chip:
    """One training sample: an image file and its label file of the same stem."""

    name: str
    image: Path
    label: Path


# ----------------------------------------------------------------------------------------------
# Reading files


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff")


def read_image(path: Path) -> np.ndarray:
    """Pixels of a chip as (C, H, W) in their stored dtype (uint8 PNG/JPEG, uint16 TIFF, ...)."""
    path = Path(path)
    try:
        if _is_tiff(path):
            import rasterio

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # chips need not be georeferenced
                with rasterio.open(path) as src:
                    return src.read()
        from PIL import Image

        with Image.open(path) as img:
            if img.mode in ("P", "RGBA", "LA", "CMYK"):
                img = img.convert("RGB")
            array = np.asarray(img)
    except LsmapError:
        raise
    except Exception as exc:
        raise LsmapError(f"{path}: cannot read image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
    return array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)


def read_nodata(path: Path) -> float | None:
    """The nodata value a GeoTIFF chip declares, else None."""
    if not _is_tiff(Path(path)):
        return None
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as src:
            return src.nodata


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image from its header, without decoding the pixels."""
    path = Path(path)
    try:
        if _is_tiff(path):
            import rasterio

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with rasterio.open(path) as src:
                    return src.height, src.width
        from PIL import Image

        with Image.open(path) as img:
            return img.height, img.width
    except Exception as exc:
        raise LsmapError(f"{path}: cannot read image header ({type(exc).__name__})") from exc


def read_label(path: Path, expected_hw: tuple[int, int] | None = None, colour: tuple[int, ...] | None = None) -> np.ndarray:
    """A label as (H, W) uint8 with 1 = landslide, 0 = background.

    Without ``colour``: 0/255 and 0/1 encodings (one band, or several identical bands). With
    ``colour`` (one value per band, e.g. (255, 0, 0) for an RGB mask painting landslides red, or
    (7,) for a class-index mask): landslide where every band equals it, background elsewhere.
    Anything else, or a size other than ``expected_hw``, is an ``LsmapError`` naming the file.
    """
    path = Path(path)
    bands = read_image(path)
    if expected_hw is not None and bands.shape[1:] != tuple(expected_hw):
        raise LsmapError(
            f"{path}: label is {bands.shape[1]}x{bands.shape[2]} px but its image is {expected_hw[0]}x{expected_hw[1]} px"
        )
    if colour is not None:
        return colour_label(path, bands, colour)
    if bands.shape[0] > 1 and not all(np.array_equal(bands[0], band) for band in bands[1:]):
        raise LsmapError(f"{path}: label has {bands.shape[0]} different bands; expected one band of 0/255 or 0/1 "
                         "(an RGB mask needs --mask-colour R,G,B)")
    label = bands[0]
    values = set(np.unique(label).tolist())
    if values <= {0, 1}:
        return label.astype(np.uint8)
    if values <= {0, 255}:
        return (label == 255).astype(np.uint8)
    shown = sorted(values)[:6]
    raise LsmapError(f"{path}: label values {shown} are not 0/255 or 0/1 (a coloured mask needs --mask-colour)")


def colour_label(path: Path, bands: np.ndarray, colour: tuple[int, ...]) -> np.ndarray:
    """(H, W) uint8: 1 where the (C, H, W) mask equals ``colour`` in every band."""
    colour = tuple(int(v) for v in colour)
    if len(colour) == 1 and bands.shape[0] > 1:
        bands = bands[:1] if all(np.array_equal(bands[0], band) for band in bands[1:]) else bands
    if len(colour) != bands.shape[0]:
        raise LsmapError(f"{path}: mask has {bands.shape[0]} bands but the mask colour {colour} has {len(colour)} values")
    return np.all(bands == np.asarray(colour, dtype=bands.dtype)[:, None, None], axis=0).astype(np.uint8)


def parse_colour(text: str | None) -> tuple[int, ...] | None:
    """``"255,0,0"`` -> (255, 0, 0); ``"7"`` -> (7,); None stays None (0/255 or 0/1 masks)."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        raise LsmapError(f"mask colour {text!r}: expected integers R,G,B (or one value), e.g. 255,0,0") from None
    if not values or any(v < 0 for v in values):
        raise LsmapError(f"mask colour {text!r}: expected non-negative integers R,G,B (or one value)")
    return values


def band_names(root: Path, n_bands: int) -> list[str]:
    """Band names from ``dataset.json``, else the convention for the band count."""
    metadata = read_metadata(root)
    if "bands" in metadata:
        if len(metadata["bands"]) != n_bands:
            raise LsmapError(f"{root / METADATA_FILE}: lists {len(metadata['bands'])} bands but the chips have {n_bands}")
        return list(metadata["bands"])
    defaults = {1: ["gray"], 3: ["red", "green", "blue"], 4: ["blue", "green", "red", "nir"]}
    return defaults.get(n_bands, [f"band{i + 1}" for i in range(n_bands)])


def read_metadata(root: Path) -> dict:
    path = Path(root) / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LsmapError(f"{path}: not valid JSON ({exc.msg})") from exc


def rgb_channels(bands: list[str]) -> tuple[int, int, int]:
    """Indices of red, green, blue in ``bands`` (for ImageNet-initialised first convolutions)."""
    if all(name in bands for name in ("red", "green", "blue")):
        return (bands.index("red"), bands.index("green"), bands.index("blue"))
    return (0, 1, 2) if len(bands) >= 3 else (0, 0, 0)


# ----------------------------------------------------------------------------------------------
# The layout


def list_chips(root: Path, split: str) -> list[Chip]:
    """Chips of one split, sorted by name; every image must have a label of the same stem."""
    root = Path(root)
    image_dir = root / split / IMAGE_DIR
    label_dir = root / split / LABEL_DIR
    if not image_dir.is_dir():
        raise LsmapError(f"{image_dir}: split folder not found (expected the layout Train|Valid|Test/{IMAGE_DIR})")
    labels = {p.stem: p for p in sorted(label_dir.glob("*")) if p.suffix.lower() in IMAGE_SUFFIXES} if label_dir.is_dir() else {}
    chips = []
    for image in sorted(image_dir.iterdir()):
        if image.suffix.lower() not in IMAGE_SUFFIXES or image.name.startswith("."):
            continue
        if image.stem not in labels:
            raise LsmapError(f"{image}: image has no label of the same name in '{label_dir}'")
        chips.append(Chip(image.stem, image, labels[image.stem]))
    if not chips:
        raise LsmapError(f"{image_dir}: split '{split}' has no image chips")
    return chips


def check_chips(chips: list[Chip]) -> int:
    """Every label readable, binary and of its image's size; returns the common band count."""
    n_bands = None
    for chip in chips:
        read_label(chip.label, image_size(chip.image))
        bands = _band_count(chip.image)
        if n_bands is None:
            n_bands = bands
        elif bands != n_bands:
            raise LsmapError(f"{chip.image}: has {bands} bands but other chips have {n_bands}")
    return int(n_bands or 0)


def _band_count(path: Path) -> int:
    if _is_tiff(path):
        import rasterio

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(path) as src:
                return src.count
    from PIL import Image

    with Image.open(path) as img:
        return 1 if img.mode in ("L", "I", "I;16", "F", "1") else 3


def nodata_mask(image: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """(H, W) bool: pixels where every band equals the declared nodata value."""
    if nodata is None:
        return None
    return np.all(image == nodata, axis=0)


def normalisation_stats(chips: list[Chip]) -> tuple[list[float], list[float]]:
    """Per-band mean and std over every valid training pixel, in the units stored on disk."""
    total = count = total_sq = None
    for chip in chips:
        image = read_image(chip.image).astype(np.float64)
        pixels = image.reshape(image.shape[0], -1)
        invalid = nodata_mask(image, read_nodata(chip.image))
        if invalid is not None:
            pixels = pixels[:, ~invalid.reshape(-1)]
        if total is None:
            total, total_sq, count = np.zeros(len(pixels)), np.zeros(len(pixels)), 0
        total += pixels.sum(axis=1)
        total_sq += (pixels**2).sum(axis=1)
        count += pixels.shape[1]
    if not count:
        raise LsmapError(f"{chips[0].image.parent}: training chips hold no valid pixels")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.tolist(), np.maximum(std, 1e-6).tolist()


def dataset_hash(root: Path) -> str:
    """SHA-256 over every chip and label file (name and content) of the three splits."""
    root = Path(root)
    digest = hashlib.sha256()
    for split in SPLITS:
        for path in sorted((root / split).rglob("*")):
            if path.is_file():
                digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Geometry


def resize_label_nearest(label: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a (H, W) label: values are copied, never interpolated."""
    height, width = label.shape
    rows = np.minimum(((np.arange(size_hw[0]) + 0.5) * height / size_hw[0]).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(size_hw[1]) + 0.5) * width / size_hw[1]).astype(np.int64), width - 1)
    return label[rows[:, None], cols[None, :]]


def resize_image_bilinear(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of a (C, H, W) float32 image."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    shrinking = size_hw[0] < image.shape[1] or size_hw[1] < image.shape[2]
    out = F.interpolate(tensor, size=tuple(size_hw), mode="bilinear", align_corners=False, antialias=shrinking)
    return out[0].numpy()


def pad_to(image: np.ndarray, label: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad at the bottom/right to at least (height, width): image mirrored, label ``IGNORE``."""
    pad_h, pad_w = max(height - image.shape[1], 0), max(width - image.shape[2], 0)
    if pad_h == 0 and pad_w == 0:
        return image, label
    mode = "reflect" if min(image.shape[1:]) > 1 else "edge"
    image = np.pad(image, ((0, 0), (0, pad_h), (0, pad_w)), mode=mode)
    label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE)
    return image, label


def random_window(image: np.ndarray, label: np.ndarray, size: int, rng: np.random.Generator):
    """A random ``size`` x ``size`` window; smaller chips are padded first (see :func:`pad_to`)."""
    image, label = pad_to(image, label, size, size)
    top = int(rng.integers(0, image.shape[1] - size + 1))
    left = int(rng.integers(0, image.shape[2] - size + 1))
    return image[:, top : top + size, left : left + size], label[top : top + size, left : left + size]


def random_flip_rotate(image: np.ndarray, label: np.ndarray, rng: np.random.Generator):
    """One of the 8 dihedral transforms (flips and 90 degree rotations), same for image and label."""
    k = int(rng.integers(0, 4))
    image, label = np.rot90(image, k, axes=(1, 2)), np.rot90(label, k)
    if rng.random() < 0.5:
        image, label = image[:, :, ::-1], label[:, ::-1]
    return image, label


def random_brightness_contrast(image: np.ndarray, rng: np.random.Generator, strength: float = 0.1) -> np.ndarray:
    """Mild photometric jitter on a normalised image: x * (1 +- strength) +- strength."""
    contrast = 1.0 + rng.uniform(-strength, strength)
    brightness = rng.uniform(-strength, strength)
    return image * contrast + brightness


# ----------------------------------------------------------------------------------------------
# Torch datasets


class ChipDataset(Dataset):
    """Chips as normalised tensors.

    Item: ``{"image": (C, h, w) float32, "label": (H, W) uint8 {0,1,255}, "name": str}``. In
    training mode both are ``input_size`` square and augmented (flips, 90 degree rotations, mild
    brightness/contrast); in evaluation mode the label keeps the chip's size (full resolution).
    Augmentations draw from an RNG keyed on (seed, epoch, index): independent of the number of
    loader workers and identical after a resume (call :meth:`set_epoch` before each epoch).
    """

    def __init__(self, chips: list[Chip], mean: list[float], std: list[float], *, input_size: int,
                 size_policy: str = "crop", train: bool = False, seed: int = 0) -> None:
        if size_policy not in SIZE_POLICIES:
            raise LsmapError(f"unknown size policy {size_policy!r}: use one of {', '.join(SIZE_POLICIES)}")
        self.chips = list(chips)
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None, None]
        self.input_size = int(input_size)
        self.size_policy = size_policy
        self.train = train
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.chips)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw (C, H, W) float32 image and (H, W) uint8 label with nodata pixels set to IGNORE."""
        chip = self.chips[index]
        image = read_image(chip.image)
        label = read_label(chip.label, image.shape[1:])
        invalid = nodata_mask(image, read_nodata(chip.image))
        if invalid is not None:
            label[invalid] = IGNORE
        if image.shape[0] != self.mean.shape[0]:
            raise LsmapError(f"{chip.image}: has {image.shape[0]} bands, expected {self.mean.shape[0]}")
        return image.astype(np.float32), label

    def __getitem__(self, index: int) -> dict:
        image, label = self.load(index)
        size = (self.input_size, self.input_size)
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if self.size_policy == "resize":
                image, label = resize_image_bilinear(image, size), resize_label_nearest(label, size)
            else:
                image, label = random_window(image, label, self.input_size, rng)
            image, label = random_flip_rotate(image, label, rng)
            image = random_brightness_contrast((image - self.mean) / self.std, rng)
        else:
            if self.size_policy == "resize":
                image = resize_image_bilinear(image, size)
            image = (image - self.mean) / self.std
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            "label": torch.from_numpy(np.ascontiguousarray(label, dtype=np.uint8)),
            "name": self.chips[index].name,
        }


def collate_eval(items: list[dict]) -> dict:
    """Batch chips of different sizes: images mirror-padded to a common multiple of 32.

    Returns ``image`` (B, C, Hp, Wp), ``content_hw`` (the unpadded size of each image), ``labels``
    (list of (H, W) uint8 at full chip resolution) and ``names``.
    """
    multiple = EVAL_PAD_MULTIPLE
    height = -(-max(item["image"].shape[1] for item in items) // multiple) * multiple
    width = -(-max(item["image"].shape[2] for item in items) // multiple) * multiple
    images = []
    for item in items:
        image = item["image"].numpy()
        padded, _ = pad_to(image, np.zeros(image.shape[1:], np.uint8), height, width)
        images.append(torch.from_numpy(np.ascontiguousarray(padded)))
    return {
        "image": torch.stack(images),
        "content_hw": [tuple(item["image"].shape[1:]) for item in items],
        "labels": [item["label"] for item in items],
        "names": [item["name"] for item in items],
    }


def logits_at_label_size(logits: torch.Tensor, content_hw: tuple[int, int], label_hw: tuple[int, int]) -> torch.Tensor:
    """(1, H, W) logits of one chip: padding cut off, scaled back to the label size if resized."""
    logits = logits[..., : content_hw[0], : content_hw[1]]
    if tuple(content_hw) != tuple(label_hw):
        logits = F.interpolate(logits[None].float(), size=tuple(label_hw), mode="bilinear", align_corners=False)[0]
    return logits


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # loader workers decode files; leave the cores to the model


def make_loader(dataset: ChipDataset, *, batch_size: int, num_workers: int = 0, shuffle_seed: int | None = None) -> DataLoader:
    """Training loader (shuffled with a seeded generator, fixed-size batches) or evaluation loader."""
    common = dict(num_workers=num_workers, worker_init_fn=_worker_init if num_workers else None,
                  pin_memory=torch.cuda.is_available())
    if dataset.train:
        generator = torch.Generator().manual_seed(int(shuffle_seed or 0))
        # drop the last short batch: a batch of one breaks BatchNorm in training mode
        drop_last = len(dataset) > batch_size
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator,
                          drop_last=drop_last, **common)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_eval, **common)
