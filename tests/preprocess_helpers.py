"""Small generated inputs shared by the preprocessing tests (a known-answer GF-6-like scene)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from scipy.ndimage import gaussian_filter

CRS_UTM48 = "EPSG:32648"
TRUTH_TRANSFORM = Affine(2.0, 0, 400000.0, 0, -2.0, 3600000.0)


def synthetic_ground(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(4, n, n) float32 reflectance with texture and edges; (n, n) float64 DEM, relief ~n/2 m (slopes up to ~35°)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n] / n
    dem = 1500 + n * (0.25 * np.sin(3 * xx + 1) * np.cos(2 * yy) + 0.2 * yy)
    texture = gaussian_filter(rng.normal(0, 1, (n, n)), 3.0)
    texture /= texture.std()
    patches = (np.sin(xx * 25) * np.cos(yy * 19) > 0.3).astype(float)
    refl = np.stack([0.05 + 0.01 * texture + 0.03 * patches, 0.08 + 0.015 * texture + 0.04 * patches,
                     0.09 + 0.02 * texture + 0.06 * patches, 0.28 + 0.04 * texture - 0.08 * patches])
    return refl.astype(np.float32), dem


def write_dem(path: Path, dem: np.ndarray, transform=TRUTH_TRANSFORM, crs=CRS_UTM48) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=dem.shape[1], height=dem.shape[0], count=1,
                       dtype="float32", crs=crs, transform=transform, nodata=-9999.0) as dst:
        dst.write(dem.astype(np.float32), 1)
    return path
