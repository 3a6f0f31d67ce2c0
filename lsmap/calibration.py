"""Radiometric calibration: DN -> at-sensor radiance -> top-of-atmosphere reflectance.

    L   = gain · DN + offset                       (W m-2 sr-1 µm-1; per band, per satellite/sensor/year)
    ρ   = π · L · d² / (ESUN · cos θs)             (TOA reflectance, unitless)

``d`` is the Earth–Sun distance in astronomical units on the acquisition date, ``θs`` the solar
zenith from the delivery metadata, ``ESUN`` the band-mean exoatmospheric solar irradiance
(W m-2 µm-1). Gains come from the ``preprocess.calibration`` table of the configuration (each row
names its source); when the scene's year has no row the nearest year is used and logged.

ESUN: GF-6 PMS band passes (B 450–520, G 520–600, R 630–690, NIR 760–900 nm) match Landsat-7
ETM+ bands 1–4 closely, so the configured defaults are the ETM+ values of Chander, Markham &
Helder (2009, Remote Sensing of Environment 113:893, Table 11). Replace them with CRESDA's
sensor-specific values where available. The PAN value only scales the PAN reflectance, which
the pan-sharpening uses for spatial detail through regression gains, so its exact value does
not change the output bands.

Optional dark-object subtraction (DOS, Chavez 1988, the "DOS1" variant): per band, the
reflectance of the darkest ``dos_percentile`` of valid pixels minus 1 % (the reflectance assumed
for dark objects) is taken as path reflectance and subtracted. It is a simple, image-based
atmospheric correction, not a radiative-transfer model.
"""

from __future__ import annotations

import logging
import math
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import numpy as np

from lsmap.errors import LsmapError

log = logging.getLogger(__name__)

BANDS = ("pan", "blue", "green", "red", "nir")
DOS_DARK_OBJECT_REFLECTANCE = 0.01


@lru_cache(maxsize=1)
def _schema_defaults() -> dict[str, Any]:
    from lsmap.config import validate_config

    minimal = {"regions": {"x": {"scenes": {"s": {}}}}, "mapping": {"checkpoint": "-"},
               "model": {"name": "fcn"}, "training": {"dataset": "-"}, "preprocess": {}}
    return validate_config(minimal, "lsmap/schemas/config.schema.yaml")["preprocess"]


def default_settings() -> dict[str, Any]:
    """The ``preprocess`` settings with every default of the config schema (same as config.yaml)."""
    import copy

    return copy.deepcopy(_schema_defaults())


def coefficients_for(settings: dict[str, Any], satellite: str, sensor: str, year: int) -> dict[str, float]:
    """Gains for a satellite/sensor/year from ``settings['calibration']``: {band: gain} plus
    ``offset_<band>`` (default 0), ``year`` and ``source`` of the row used.

    The nearest year is used when the exact one is missing (logged with the year taken).
    """
    rows = [r for r in settings.get("calibration", [])
            if r["satellite"].upper() == satellite.upper() and r["sensor"].upper() == sensor.upper()]
    if not rows:
        raise LsmapError(f"config preprocess.calibration: no gains for satellite {satellite} sensor {sensor}")
    row = min(rows, key=lambda r: (abs(int(r["year"]) - year), -int(r["year"])))
    if int(row["year"]) != year:
        log.warning("calibration: no %s %s gains for %d; using the nearest year %d (%s)",
                    satellite, sensor, year, row["year"], row["source"])
    coeffs: dict[str, Any] = {band: float(row["gain"][band]) for band in BANDS}
    coeffs.update({f"offset_{band}": float(row.get("offset", {}).get(band, 0.0)) for band in BANDS})
    coeffs["year"], coeffs["source"] = int(row["year"]), row["source"]
    return coeffs


def day_of_year(when: date | datetime) -> int:
    return when.timetuple().tm_yday


def earth_sun_distance_au(when: date | datetime) -> float:
    """Earth–Sun distance in AU: 1 - 0.01672·cos(2π(DOY - 4)/365.256) (perihelion ≈ 4 January).

    The first-order orbit-eccentricity formula used in the Landsat handbooks; within 1e-4 AU of
    the ephemeris, i.e. < 0.02 % in reflectance.
    """
    return 1.0 - 0.01672 * math.cos(2.0 * math.pi * (day_of_year(when) - 4) / 365.256)


def dn_to_reflectance_factor(gain: float, esun: float, d_au: float, sun_zenith_deg: float) -> float:
    """ρ per DN (for offset 0): π·gain·d² / (ESUN·cos θs)."""
    cos_sz = math.cos(math.radians(sun_zenith_deg))
    if cos_sz <= 0.01:
        raise LsmapError(f"solar zenith {sun_zenith_deg}° leaves no sunlight for reflectance")
    return math.pi * gain * d_au ** 2 / (esun * cos_sz)


def radiance(dn: np.ndarray, gain: float, offset: float = 0.0) -> np.ndarray:
    """At-sensor radiance (W m-2 sr-1 µm-1, float32) of DN; DN 0 (fill) -> NaN."""
    dn = np.asarray(dn)
    out = dn.astype(np.float32) * np.float32(gain) + np.float32(offset)
    return np.where(dn == 0, np.float32(np.nan), out)


def toa_reflectance(radiance_: np.ndarray, esun: float, d_au: float, sun_zenith_deg: float) -> np.ndarray:
    """TOA reflectance (float32, unitless) from radiance; NaN stays NaN."""
    scale = math.pi * d_au ** 2 / (esun * math.cos(math.radians(sun_zenith_deg)))
    return np.asarray(radiance_, np.float32) * np.float32(scale)


class Calibrator:
    """DN -> TOA (optionally DOS-corrected) reflectance for the bands of one delivery.

    ``band_scale[b]`` and ``band_offset[b]`` give ρ = scale·DN + offset - haze[b]; haze is 0
    unless ``estimate_haze`` has been called with DOS enabled.
    """

    def __init__(self, settings: dict[str, Any], satellite: str, sensor: str, acquired: datetime,
                 sun_zenith_deg: float):
        self.coeffs = coefficients_for(settings, satellite, sensor, acquired.year)
        self.d_au = earth_sun_distance_au(acquired)
        self.sun_zenith_deg = sun_zenith_deg
        self.esun = {b: float(settings["esun"][b]) for b in BANDS}
        self.dos = bool(settings.get("dark_object_subtraction", False))
        self.dos_percentile = float(settings.get("dos_percentile", 0.01))
        self.haze = dict.fromkeys(BANDS, 0.0)

    def scale(self, band: str) -> float:
        return dn_to_reflectance_factor(self.coeffs[band], self.esun[band], self.d_au, self.sun_zenith_deg)

    def offset(self, band: str) -> float:
        return self.coeffs[f"offset_{band}"] * self.scale(band) / self.coeffs[band] - self.haze[band]

    def reflectance(self, dn: np.ndarray, band: str) -> np.ndarray:
        """(…) DN of one band -> float32 reflectance; DN 0 (fill) -> NaN."""
        dn = np.asarray(dn)
        out = dn.astype(np.float32) * np.float32(self.scale(band)) + np.float32(self.offset(band))
        return np.where(dn == 0, np.float32(np.nan), out)

    def reflectance_dataarray(self, dn: "xarray.DataArray") -> "xarray.DataArray":
        """DN DataArray (band, y, x), ``band`` coordinate = band names -> float32 reflectance, NaN no data.

        Lazy when ``dn`` is dask-backed; grid (coordinates, ``rio.crs``, ``rio.transform()``) and
        tags (``attrs``) go with the result. Same arithmetic as ``reflectance``.
        """
        import rioxarray  # noqa: F401  (registers the .rio accessor)
        import xarray as xr

        bands = [str(b) for b in dn["band"].values]
        per_band = {"band": dn["band"].values}
        scale = xr.DataArray(np.array([self.scale(b) for b in bands], np.float32), dims="band", coords=per_band)
        offset = xr.DataArray(np.array([self.offset(b) for b in bands], np.float32), dims="band", coords=per_band)
        out = xr.where(dn == 0, np.float32(np.nan), dn.astype(np.float32) * scale + offset)
        out.attrs = {k: v for k, v in dn.attrs.items() if k not in ("_FillValue", "scale_factor", "add_offset")}
        out.attrs |= {"long_name": bands, "units": "1", "quantity": "reflectance"}
        # xr.where drops the attributes of the spatial_ref coordinate: the grid is written back
        out = out.rio.write_crs(dn.rio.crs).rio.write_transform(dn.rio.transform())
        return out.rio.write_nodata(np.nan, encoded=False)

    def estimate_haze(self, dn: np.ndarray, band: str) -> float:
        """DOS1 path reflectance of a band from (a sample of) its DN; sets and returns it."""
        if not self.dos:
            return 0.0
        self.haze[band] = 0.0
        values = self.reflectance(dn, band)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return 0.0
        dark = float(np.percentile(values, self.dos_percentile))
        self.haze[band] = max(0.0, dark - DOS_DARK_OBJECT_REFLECTANCE)
        log.info("DOS %s: dark-object reflectance %.4f -> path reflectance %.4f", band, dark, self.haze[band])
        return self.haze[band]

    def describe(self) -> dict[str, str]:
        """Tags for the output product (what was applied, from which source)."""
        return {
            "CALIBRATION_SOURCE": f"{self.coeffs['source']} ({self.coeffs['year']})",
            "EARTH_SUN_DISTANCE_AU": f"{self.d_au:.6f}",
            "ESUN": ",".join(f"{b}={self.esun[b]:g}" for b in BANDS),
            "GAINS": ",".join(f"{b}={self.coeffs[b]:g}" for b in BANDS),
            "ATMOSPHERIC_CORRECTION": "DOS1 " + ",".join(f"{b}={self.haze[b]:.4f}" for b in BANDS)
            if self.dos else "none (TOA reflectance)",
        }
