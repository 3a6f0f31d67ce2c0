"""Scenes without a nodata value: a constant border is no data, not ground.

An orthorectified scene written without a nodata value still has a fill around its footprint
(usually 0). Mapped as data, that fill is "observed" ground and the model's answer on it is noise:
on the demo scene the landslide area grew 4.3x, and an all-zero scene came out as one 1.43 km²
landslide. So a scene with no declared nodata (no nodata value, no mask band) whose outer pixel ring
is mostly one constant value in every band gets that value as nodata, with one warning line, and
the statistics say so (``scene_stats.json`` ``nodata``). ``border_nodata=False`` (``lsmap map
--raw-border``) keeps the raw behaviour.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.windows import Window

log = logging.getLogger("lsmap.nodata")
BORDER_CONSTANT_FRACTION = 0.5  # share of the outer ring that must hold the constant


@dataclass(frozen=True)
class NodataChoice:
    """Where a scene's nodata comes from: ``declared`` (nodata value or mask band), ``constant
    border`` (detected here), ``none`` (every pixel is data)."""

    path: str
    source: str
    value: float | None
    border_fraction: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def note(self) -> str:
        """' (constant border value 0)' when the nodata was guessed, else ''."""
        return f" (constant border value {self.value:g})" if self.source == "constant border" else ""


def has_declared_nodata(src: rasterio.io.DatasetReader) -> bool:
    """A nodata value, an alpha band or an internal/external mask band on any band."""
    if src.nodata is not None:
        return True
    return any(flags != [MaskFlags.all_valid] for flags in src.mask_flag_enums)


def outer_ring(src: rasterio.io.DatasetReader, bands: list[int] | None = None) -> np.ndarray:
    """(C, n) pixels of the outermost rows and columns (four thin window reads, not the scene)."""
    bands = bands or list(range(1, src.count + 1))
    h, w = src.height, src.width
    windows = [Window(0, 0, w, 1), Window(0, h - 1, w, 1), Window(0, 0, 1, h), Window(w - 1, 0, 1, h)]
    return np.concatenate([src.read(bands, window=win).reshape(len(bands), -1) for win in windows], axis=1)


def border_constant(ring: np.ndarray) -> tuple[float | None, float]:
    """The value that every band holds on the largest share of ring pixels, and that share."""
    same = np.all(ring == ring[:1], axis=0)
    if not same.any():
        return None, 0.0
    values, counts = np.unique(ring[0, same], return_counts=True)
    best = int(np.argmax(counts))
    return float(values[best]), float(counts[best] / ring.shape[1])


def declared_or_border_nodata(scene: str | os.PathLike, border_nodata: bool = True) -> NodataChoice:
    """How to tell data from fill in ``scene`` (see the module doc); :func:`warn_if_guessed` says so."""
    scene = str(scene)
    with rasterio.open(scene) as src:
        if has_declared_nodata(src):
            return NodataChoice(scene, "declared", src.nodata)
        if not border_nodata:
            return NodataChoice(scene, "none", None)
        value, fraction = border_constant(outer_ring(src))
    if value is None or fraction < BORDER_CONSTANT_FRACTION:
        return NodataChoice(scene, "none", None, round(fraction, 4))
    return NodataChoice(scene, "constant border", value, round(fraction, 4))


def warn_if_guessed(nodata: NodataChoice) -> None:
    """The one warning line for a detected border (once the scene proved to have data besides it)."""
    if nodata.source == "constant border":
        log.warning("%s: no nodata value set; the constant border (%g on %.0f %% of the edge) is treated as "
                    "nodata (--raw-border maps it as data)", nodata.path, nodata.value, 100 * nodata.border_fraction)


def with_nodata_vrt(scene: str | os.PathLike, nodata: NodataChoice, folder: Path) -> Path:
    """A VRT over ``scene`` declaring ``nodata.value`` as nodata (the scene itself is not touched)."""
    from rasterio.shutil import copy as raster_copy

    vrt = Path(folder) / f".{Path(scene).stem}.nodata.vrt"
    raster_copy(os.path.abspath(scene), vrt, driver="VRT")
    with rasterio.open(vrt, "r+") as dst:
        dst.nodata = nodata.value
    return vrt
