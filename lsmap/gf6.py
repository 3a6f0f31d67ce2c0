"""Reading (and, for the demo and tests, writing) GF-6 PMS L1A deliveries.

A delivery is a ``.tar.gz`` or a folder holding, for one scene::

    <name>-PAN.tiff  <name>-PAN.rpb  <name>-PAN.xml  <name>-PAN.jpg   (2 m panchromatic, uint16 DN)
    <name>-MUX.tiff  <name>-MUX.rpb  <name>-MUX.xml  <name>-MUX.jpg   (8 m, 4 bands B/G/R/NIR, uint16 DN)

The images are in sensor geometry (no CRS); the ``.rpb`` files carry the RPC00B rational
polynomial camera model (ground lon/lat/ellipsoid height -> image line/sample), the ``.xml``
files the acquisition metadata (CRESDA ``ProductMetaData`` tags).

``write_synthetic_delivery`` renders a GF-6-like delivery from ground-truth reflectance on a
georeferenced grid plus a DEM: it images the ground with a simple push-broom-like camera (rotation,
terrain parallax from the view angle), converts reflectance to DN with the configured gains, and
fits RPCs to that camera, so orthorectifying the delivery with the same DEM recovers the grid.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import rasterio
from rasterio.rpc import RPC
from rasterio.windows import Window

from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output

log = logging.getLogger(__name__)

MUX_BANDS = ("blue", "green", "red", "nir")
PAN_MUX_RATIO = 4  # GF-6 PMS: 2 m PAN, 8 m MUX

# RPC00B term order (the order used by GDAL, rasterio and the .rpb files):
# 1 L P H LP LH PH L² P² H² PLH L³ LP² LH² L²P P³ PH² L²H P²H H³   (L lon, P lat, H height)


def rpc_terms(lon_n: np.ndarray, lat_n: np.ndarray, h_n: np.ndarray) -> np.ndarray:
    """The 20 RPC00B polynomial terms of normalised coordinates, shape (..., 20)."""
    L, P, H = np.broadcast_arrays(lon_n, lat_n, h_n)
    one = np.ones_like(L)
    return np.stack([
        one, L, P, H, L * P, L * H, P * H, L * L, P * P, H * H,
        P * L * H, L ** 3, L * P * P, L * H * H, L * L * P, P ** 3, P * H * H, L * L * H, P * P * H, H ** 3,
    ], axis=-1)


def rpc_project(rpc: RPC, lon, lat, h) -> tuple[np.ndarray, np.ndarray]:
    """Ground (lon, lat in degrees, ellipsoid height in m) -> image (row, col), pixel-centre based.

    Returns the RPC00B line/sample as published: 0 is the centre of the first pixel. GDAL adds
    0.5 to reach its corner-based pixel/line convention.
    """
    t = rpc_terms((np.asarray(lon, float) - rpc.long_off) / rpc.long_scale,
                  (np.asarray(lat, float) - rpc.lat_off) / rpc.lat_scale,
                  (np.asarray(h, float) - rpc.height_off) / rpc.height_scale)
    row = t @ np.asarray(rpc.line_num_coeff) / (t @ np.asarray(rpc.line_den_coeff))
    col = t @ np.asarray(rpc.samp_num_coeff) / (t @ np.asarray(rpc.samp_den_coeff))
    return row * rpc.line_scale + rpc.line_off, col * rpc.samp_scale + rpc.samp_off


# --------------------------------------------------------------------------------------------
# .rpb (RPC00B text) and .xml (ProductMetaData) files
# --------------------------------------------------------------------------------------------
_RPB_SCALARS = {
    "errBias": "err_bias", "errRand": "err_rand", "lineOffset": "line_off", "sampOffset": "samp_off",
    "latOffset": "lat_off", "longOffset": "long_off", "heightOffset": "height_off",
    "lineScale": "line_scale", "sampScale": "samp_scale", "latScale": "lat_scale",
    "longScale": "long_scale", "heightScale": "height_scale",
}
_RPB_ARRAYS = {"lineNumCoef": "line_num_coeff", "lineDenCoef": "line_den_coeff",
               "sampNumCoef": "samp_num_coeff", "sampDenCoef": "samp_den_coeff"}


def parse_rpb(path: Path) -> RPC:
    """Read an RPC00B ``.rpb`` file into a rasterio ``RPC``."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise LsmapError(f"{path}: cannot read RPC file ({exc.strerror})") from exc
    values: dict[str, object] = {}
    for key, name in _RPB_SCALARS.items():
        match = re.search(rf"\b{key}\s*=\s*([-+0-9.eE]+)\s*;", text)
        if match:
            values[name] = float(match.group(1))
    for key, name in _RPB_ARRAYS.items():
        match = re.search(rf"\b{key}\s*=\s*\(([^)]*)\)", text)
        if match:
            coeffs = [float(v) for v in re.split(r"[,\s]+", match.group(1).strip()) if v]
            if len(coeffs) != 20:
                raise LsmapError(f"{path}: {key} has {len(coeffs)} coefficients, RPC00B needs 20")
            values[name] = coeffs
    missing = [k for k, n in {**_RPB_SCALARS, **_RPB_ARRAYS}.items()
               if n not in values and not k.startswith("err")]
    if missing:
        raise LsmapError(f"{path}: not an RPC00B file (missing {', '.join(missing)})")
    values.setdefault("err_bias", -1.0)
    values.setdefault("err_rand", -1.0)
    return RPC(**values)


def format_rpb(rpc: RPC, sat_id: str = "GF6", band_id: str = "PAN") -> str:
    """The ``.rpb`` text of an RPC, in the layout GF-6 (and GDAL) use."""
    lines = [f'satId = "{sat_id}";', f'bandId = "{band_id}";', 'SpecId = "RPC00B";', "BEGIN_GROUP = IMAGE"]
    for key, name in _RPB_SCALARS.items():
        lines.append(f"\t{key} = {getattr(rpc, name):.15g};")
    for key, name in _RPB_ARRAYS.items():
        coeffs = ",\n\t\t\t".join(f"{c:+.15E}" for c in getattr(rpc, name))
        lines.append(f"\t{key} = (\n\t\t\t{coeffs});")
    lines += ["END_GROUP = IMAGE", "END;", ""]
    return "\n".join(lines)


def parse_metadata_xml(path: Path) -> dict[str, str]:
    """All leaf tags of a CRESDA ``ProductMetaData`` XML as {tag: text} (first occurrence wins)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise LsmapError(f"{path}: cannot parse metadata XML ({exc})") from exc
    tags: dict[str, str] = {}
    for element in root.iter():
        if len(element) == 0 and element.text is not None:
            tags.setdefault(element.tag, element.text.strip())
    return tags


def _parse_time(text: str, path: Path, tag: str) -> datetime:
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise LsmapError(f"{path}: {tag} '{text}' is not a date-time")


# --------------------------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Delivery:
    """One GF-6 PMS L1A scene: its files, camera models and acquisition metadata.

    Angles are in degrees (zenith from vertical, azimuth clockwise from north); ``acquired`` is
    the scene centre time in UTC.
    """

    product_id: str
    satellite: str
    sensor: str
    acquired: datetime
    sun_zenith_deg: float
    sun_azimuth_deg: float
    sat_zenith_deg: float
    sat_azimuth_deg: float
    pan: Path
    mux: Path
    pan_rpb: Path
    mux_rpb: Path
    pan_xml: Path
    mux_xml: Path
    pan_rpc: RPC
    mux_rpc: RPC
    source: Path
    root: Path
    metadata: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def centre_lonlat(self) -> tuple[float, float]:
        """Scene centre (lon, lat) from the metadata, else from the PAN RPC offsets."""
        try:
            return float(self.metadata["CenterLongitude"]), float(self.metadata["CenterLatitude"])
        except (KeyError, ValueError):
            return self.pan_rpc.long_off, self.pan_rpc.lat_off

    def tags(self) -> dict[str, str]:
        """Acquisition metadata for the tags of derived products."""
        return {
            "PRODUCT_ID": self.product_id, "SATELLITE": self.satellite, "SENSOR": self.sensor,
            "ACQUISITION_TIME": self.acquired.isoformat(), "SUN_ZENITH_DEG": f"{self.sun_zenith_deg:.4f}",
            "SUN_AZIMUTH_DEG": f"{self.sun_azimuth_deg:.4f}", "SAT_ZENITH_DEG": f"{self.sat_zenith_deg:.4f}",
            "SAT_AZIMUTH_DEG": f"{self.sat_azimuth_deg:.4f}", "SOURCE_DELIVERY": self.source.name,
        }


def extract_delivery(archive: Path, target: Path) -> Path:
    """Unpack a delivery archive into ``target`` with tarfile's ``data`` filter (PEP 706).

    The filter refuses absolute names, ``..`` escapes, links that point outside ``target`` and
    device files, so a hostile archive cannot write outside the target folder.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(target, filter="data")
    except tarfile.FilterError as exc:
        raise LsmapError(f"{archive}: unsafe archive member refused ({exc})") from exc
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise LsmapError(f"{archive}: cannot extract delivery ({exc})") from exc
    return target


def _find_one(root: Path, pattern: str, what: str, source: Path) -> Path:
    hits = sorted(p for p in root.rglob("*") if p.is_file() and re.search(pattern, p.name, re.IGNORECASE))
    if not hits:
        raise LsmapError(f"{source}: no {what} found in the delivery (expected a file matching {pattern})")
    if len(hits) > 1:
        raise LsmapError(f"{source}: several {what} files in the delivery: {', '.join(p.name for p in hits)}")
    return hits[0]


def _sidecar(image: Path, suffix: str, what: str) -> Path:
    for candidate in (image.with_suffix(suffix), image.with_suffix(suffix.upper())):
        if candidate.is_file():
            return candidate
    raise LsmapError(f"{image.with_suffix(suffix)}: {what} is missing from the delivery")


def check_image(path: Path, bands: int) -> tuple[int, int]:
    """Open an image and decode every block of it once (:func:`lsmap.rasterread.verify_blocks`):
    the GDAL warper that orthorectifies it would print a corrupt block's error and go on with no
    data. A corrupt or truncated TIFF raises naming the file (and the block)."""
    from lsmap.rasterread import open_checked, verify_blocks

    with open_checked(path) as src:  # also names a truncated file as such
        if src.count != bands:
            raise LsmapError(f"{path}: expected {bands} band(s), found {src.count}")
        size = src.width, src.height
    check = verify_blocks(path)
    log.debug("%s: %d windows decoded (%.0f MB) in %.1f s, CRC-32 %08x", path.name, check.windows,
             check.megabytes_decoded, check.seconds, check.crc32)
    return size


def _float_tag(meta: dict[str, str], tag: str, path: Path) -> float:
    try:
        return float(meta[tag])
    except KeyError:
        raise LsmapError(f"{path}: metadata tag {tag} is missing") from None
    except ValueError:
        raise LsmapError(f"{path}: metadata tag {tag}='{meta[tag]}' is not a number") from None


def read_delivery(path: str | Path, extract_to: str | Path | None = None) -> Delivery:
    """Read a GF-6 PMS L1A delivery (folder or ``.tar.gz``) and check every part of it.

    A ``.tar.gz`` is unpacked (safely) into ``extract_to``, or a new temporary folder the caller
    may delete (``Delivery.root``). Raises ``LsmapError`` naming the file for a missing image,
    ``.rpb`` or ``.xml``, a corrupt TIFF or unusable metadata.
    """
    source = Path(path)
    if not source.exists():
        raise LsmapError(f"{source}: delivery not found")
    if source.is_dir():
        root = source
    else:
        target = Path(extract_to) if extract_to else Path(tempfile.mkdtemp(prefix="lsmap-delivery-"))
        root = extract_delivery(source, target)
    pan = _find_one(root, r"-PAN\d*\.tiff?$", "PAN image (*-PAN.tiff)", source)
    mux = _find_one(root, r"-MUX\d*\.tiff?$", "MUX image (*-MUX.tiff)", source)
    pan_rpb, mux_rpb = _sidecar(pan, ".rpb", "RPC file"), _sidecar(mux, ".rpb", "RPC file")
    pan_xml, mux_xml = _sidecar(pan, ".xml", "metadata XML"), _sidecar(mux, ".xml", "metadata XML")
    pan_size = check_image(pan, 1)
    mux_size = check_image(mux, len(MUX_BANDS))
    meta = parse_metadata_xml(pan_xml)
    for image, size, xml in ((pan, pan_size, pan_xml), (mux, mux_size, mux_xml)):
        tags = meta if xml == pan_xml else parse_metadata_xml(xml)
        declared = (tags.get("WidthInPixels"), tags.get("HeightInPixels"))
        if None not in declared and tuple(int(float(v)) for v in declared) != size:
            raise LsmapError(f"{xml}: declares {declared[0]}x{declared[1]} pixels but {image.name} is {size[0]}x{size[1]}")
    acquired_text = meta.get("CenterTime") or meta.get("StartTime")
    if not acquired_text:
        raise LsmapError(f"{pan_xml}: metadata tag CenterTime is missing")
    return Delivery(
        product_id=meta.get("ProductID", pan.stem.rsplit("-", 1)[0]),
        satellite=meta.get("SatelliteID", "GF6"),
        sensor=meta.get("SensorID", "PMS"),
        acquired=_parse_time(acquired_text, pan_xml, "CenterTime"),
        sun_zenith_deg=_float_tag(meta, "SolarZenith", pan_xml),
        sun_azimuth_deg=_float_tag(meta, "SolarAzimuth", pan_xml),
        sat_zenith_deg=float(meta.get("SatelliteZenith", "nan")),
        sat_azimuth_deg=float(meta.get("SatelliteAzimuth", "nan")),
        pan=pan, mux=mux, pan_rpb=pan_rpb, mux_rpb=mux_rpb, pan_xml=pan_xml, mux_xml=mux_xml,
        pan_rpc=parse_rpb(pan_rpb), mux_rpc=parse_rpb(mux_rpb),
        source=source, root=root, metadata=meta,
    )


# --------------------------------------------------------------------------------------------
# RPC fitting (also used by the GCP bias compensation in lsmap.orthorectify)
# --------------------------------------------------------------------------------------------
def fit_rpc(lon: np.ndarray, lat: np.ndarray, h: np.ndarray, row: np.ndarray, col: np.ndarray,
            ridge: float = 1e-10) -> tuple[RPC, float]:
    """Terrain-independent RPC00B fit to ground/image correspondences (Tao & Hu 2001).

    Linearised least squares (``row·Den - Num = 0``) with a tiny ridge for conditioning. Image
    coordinates are pixel-centre based. Returns the RPC and the largest fit error in pixels.
    """
    lon, lat, h, row, col = (np.asarray(a, float).ravel() for a in (lon, lat, h, row, col))

    def offset_scale(values: np.ndarray) -> tuple[float, float]:
        lo, hi = float(values.min()), float(values.max())
        return (lo + hi) / 2, max((hi - lo) / 2, 1e-9)

    (lon_o, lon_s), (lat_o, lat_s), (h_o, h_s) = offset_scale(lon), offset_scale(lat), offset_scale(h)
    (r_o, r_s), (c_o, c_s) = offset_scale(row), offset_scale(col)
    t = rpc_terms((lon - lon_o) / lon_s, (lat - lat_o) / lat_s, (h - h_o) / h_s)

    def solve(target: np.ndarray) -> tuple[list[float], list[float]]:
        design = np.hstack([t, -target[:, None] * t[:, 1:]])
        normal = design.T @ design + ridge * np.eye(design.shape[1])
        coeffs = np.linalg.solve(normal, design.T @ target)
        return list(coeffs[:20]), [1.0, *coeffs[20:]]

    ln, ld = solve((row - r_o) / r_s)
    sn, sd = solve((col - c_o) / c_s)
    rpc = RPC(height_off=h_o, height_scale=h_s, lat_off=lat_o, lat_scale=lat_s, long_off=lon_o,
              long_scale=lon_s, line_off=r_o, line_scale=r_s, samp_off=c_o, samp_scale=c_s,
              line_num_coeff=ln, line_den_coeff=ld, samp_num_coeff=sn, samp_den_coeff=sd,
              err_bias=-1.0, err_rand=-1.0)
    r_fit, c_fit = rpc_project(rpc, lon, lat, h)
    return rpc, float(max(np.abs(r_fit - row).max(), np.abs(c_fit - col).max()))


# --------------------------------------------------------------------------------------------
# Synthetic deliveries (demo region, tests, benchmarks)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticCamera:
    """A push-broom-like sensor over a projected CRS: rotation plus terrain parallax.

    A ground point (x, y, h) appears displaced away from the satellite by ``(h - h_ref)·tan(θ)``
    (θ the view zenith), then image coordinates are a rotated, scaled copy of that apparent
    position. Image coordinates are corner based (pixel (0, 0) spans [0, 1)).
    """

    x0: float
    y0: float
    gsd_m: float
    rotation_deg: float
    view_zenith_deg: float
    view_azimuth_deg: float
    h_ref: float

    @property
    def _parallax(self) -> tuple[float, float]:
        k = math.tan(math.radians(self.view_zenith_deg))
        az = math.radians(self.view_azimuth_deg)
        return -k * math.sin(az), -k * math.cos(az)  # away from the satellite

    def ground_to_image(self, x, y, h) -> tuple[np.ndarray, np.ndarray]:
        """(x, y, h) in CRS metres -> corner-based (row, col)."""
        ke, kn = self._parallax
        u = (np.asarray(x) + (h - self.h_ref) * ke - self.x0) / self.gsd_m
        v = (self.y0 - (np.asarray(y) + (h - self.h_ref) * kn)) / self.gsd_m
        a = math.radians(self.rotation_deg)
        return math.sin(a) * u + math.cos(a) * v, math.cos(a) * u - math.sin(a) * v

    def image_to_ground(self, row, col, height_at, iterations: int = 6) -> tuple[np.ndarray, np.ndarray]:
        """Corner-based (row, col) -> ground (x, y) on the terrain ``height_at(x, y)``."""
        a = math.radians(self.rotation_deg)
        u = math.cos(a) * col + math.sin(a) * row
        v = -math.sin(a) * col + math.cos(a) * row
        xa, ya = self.x0 + u * self.gsd_m, self.y0 - v * self.gsd_m
        ke, kn = self._parallax
        x, y = xa, ya
        for _ in range(iterations):  # converges: |parallax · terrain slope| < 1
            dh = height_at(x, y) - self.h_ref
            x, y = xa - dh * ke, ya - dh * kn
        return x, y


def _grid_sampler(array: np.ndarray, transform, order: int = 1, cval: float = np.nan):
    """f(x, y) -> bilinear sample of a (H, W) grid at CRS coordinates (NaN outside)."""
    from scipy.ndimage import map_coordinates

    inverse = ~transform

    def sample(x, y):
        x, y = np.asarray(x), np.asarray(y)
        c = inverse.a * x + inverse.b * y + inverse.c
        r = inverse.d * x + inverse.e * y + inverse.f
        return map_coordinates(array, [np.asarray(r) - 0.5, np.asarray(c) - 0.5], order=order,
                               mode="constant", cval=cval, prefilter=False)

    return sample


def _write_xml(path: Path, tags: dict[str, object]) -> None:
    root = ET.Element("ProductMetaData")
    for key, value in tags.items():
        ET.SubElement(root, key).text = str(value)
    ET.indent(root)
    with atomic_output(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="UTF-8", xml_declaration=True)


def _write_thumbnail(path: Path, image: np.ndarray, size: int = 256) -> None:
    from PIL import Image

    step = max(1, int(math.ceil(max(image.shape[-2:]) / size)))
    small = image[..., ::step, ::step].astype(float)
    if small.ndim == 3:
        small = small[[2, 1, 0]].transpose(1, 2, 0)  # R, G, B
    hi = np.percentile(small[small > 0], 99) if np.any(small > 0) else 1.0
    with atomic_output(path) as tmp:
        Image.fromarray(np.clip(small / hi * 255, 0, 255).astype(np.uint8)).save(tmp, format="JPEG")


def write_synthetic_delivery(
    out_dir: str | Path,
    reflectance: np.ndarray,
    transform,
    crs,
    dem: np.ndarray,
    *,
    dem_transform=None,
    name: str = "GF6_PMS_SYNTHETIC_L1A0000000001",
    acquired: datetime = datetime(2022, 9, 10, 3, 30, tzinfo=timezone.utc),
    sun_zenith_deg: float = 32.0,
    sun_azimuth_deg: float = 150.0,
    view_zenith_deg: float = 8.0,
    view_azimuth_deg: float = 100.0,
    rotation_deg: float = 4.0,
    pan_gsd_m: float = 2.0,
    pan_weights: tuple[float, float, float, float] = (0.2, 0.3, 0.3, 0.2),
    calibration: dict | None = None,
    noise_dn: float = 0.0,
    seed: int = 0,
    strip_rows: int = 1024,
    archive: bool = False,
) -> Path:
    """Render a GF-6-like L1A delivery that images ``reflectance`` over ``dem``.

    Parameters
    ----------
    reflectance : (4, H, W) float TOA reflectance (blue, green, red, nir) on ``transform``/``crs``
        (a projected CRS in metres). Any resolution: it is sampled bilinearly.
    dem : (H', W') float heights above the WGS84 ellipsoid in metres, on ``dem_transform``
        (default: ``transform``), same CRS; NaN is no data. Must cover the reflectance grid.
    calibration : the ``preprocess`` config section (gains, ESUN) used to turn reflectance into
        DN; default: the packaged config's ``preprocess`` section.

    The PAN image (pan_gsd_m) and MUX image (4 × pan_gsd_m), slightly rotated and with terrain
    parallax, lie inside the reflectance grid at every height (so the DEM covers the scene, and the
    orthorectified scene, a north-up box around the rotated footprint, has no-data corners).
    RPCs are fitted to the camera over the grid's lon/lat/height box (max error reported in the
    log, typically < 0.01 px). Returns the delivery folder, or the ``.tar.gz`` if ``archive``.
    """
    from pyproj import Transformer

    from lsmap import calibration as cal

    out_dir = Path(out_dir)
    reflectance = np.asarray(reflectance, dtype=np.float32)
    if reflectance.ndim != 3 or reflectance.shape[0] != 4:
        raise LsmapError(f"{out_dir}: synthetic reflectance must be (4, H, W), got {reflectance.shape}")
    dem = np.asarray(dem, dtype=np.float64)
    dem_transform = dem_transform or transform
    crs = rasterio.crs.CRS.from_user_input(crs)
    if not crs.is_projected:
        raise LsmapError(f"{out_dir}: the synthetic grid needs a projected CRS in metres, got {crs}")
    settings = calibration or cal.default_settings()
    coeffs = cal.coefficients_for(settings, "GF6", "PMS", acquired.year)
    d_au = cal.earth_sun_distance_au(acquired)

    _, height, width = reflectance.shape
    left, top = transform.c, transform.f
    right, bottom = transform * (width, height)
    height_at = _grid_sampler(dem, dem_transform, cval=np.nan)
    finite = dem[np.isfinite(dem)]
    h_ref, h_min, h_max = float(np.median(finite)), float(finite.min()), float(finite.max())

    # The image sits inside the grid at every terrain height (like a scene inside a larger DEM):
    # half-extents (a cols, b rows) of the rotated image solve cos·a + sin·b = X, sin·a + cos·b = Y.
    a = math.radians(rotation_deg)
    parallax_m = max(abs(h_min - h_ref), abs(h_max - h_ref)) * math.tan(math.radians(view_zenith_deg))
    margin_m = parallax_m + 2 * PAN_MUX_RATIO * pan_gsd_m + 2 * abs(transform.a)
    half_x, half_y = (right - left) / 2 - margin_m, (top - bottom) / 2 - margin_m
    half_cols, half_rows = np.linalg.solve([[math.cos(a), math.sin(abs(a))], [math.sin(abs(a)), math.cos(a)]],
                                           [half_x / pan_gsd_m, half_y / pan_gsd_m])
    if min(half_cols, half_rows) < 4 * PAN_MUX_RATIO:
        raise LsmapError(f"{out_dir}: the grid is too small for a synthetic image with this rotation and relief")
    n_cols = int(2 * half_cols // PAN_MUX_RATIO) * PAN_MUX_RATIO
    n_rows = int(2 * half_rows // PAN_MUX_RATIO) * PAN_MUX_RATIO
    probe = SyntheticCamera(left, top, pan_gsd_m, rotation_deg, view_zenith_deg, view_azimuth_deg, h_ref)
    row_c, col_c = probe.ground_to_image((left + right) / 2, (top + bottom) / 2, h_ref)
    r0, c0 = float(row_c) - n_rows / 2, float(col_c) - n_cols / 2
    # shift the camera origin so that the image starts at (r0, c0)
    du, dv = math.cos(a) * c0 + math.sin(a) * r0, -math.sin(a) * c0 + math.cos(a) * r0
    camera = SyntheticCamera(left + du * pan_gsd_m, top - dv * pan_gsd_m, pan_gsd_m, rotation_deg,
                             view_zenith_deg, view_azimuth_deg, h_ref)

    folder = out_dir / name if archive else out_dir
    folder.mkdir(parents=True, exist_ok=True)
    pan_path, mux_path = folder / f"{name}-PAN.tiff", folder / f"{name}-MUX.tiff"
    to_dn_pan = 1.0 / cal.dn_to_reflectance_factor(coeffs["pan"], settings["esun"]["pan"], d_au, sun_zenith_deg)
    to_dn_mux = np.array([1.0 / cal.dn_to_reflectance_factor(coeffs[b], settings["esun"][b], d_au, sun_zenith_deg)
                          for b in MUX_BANDS])
    rng = np.random.default_rng(seed)
    samplers = [_grid_sampler(reflectance[b], transform) for b in range(4)]
    profile = dict(driver="GTiff", dtype="uint16", tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate", nodata=None)
    strip_rows = max(PAN_MUX_RATIO, strip_rows // PAN_MUX_RATIO * PAN_MUX_RATIO)
    thumbs_pan, thumbs_mux = [], []
    with atomic_output(pan_path) as pan_tmp, atomic_output(mux_path) as mux_tmp:
        with rasterio.open(pan_tmp, "w", width=n_cols, height=n_rows, count=1, **profile) as pan_dst, \
             rasterio.open(mux_tmp, "w", width=n_cols // 4, height=n_rows // 4, count=4, **profile) as mux_dst:
            for row_start in range(0, n_rows, strip_rows):
                n = min(strip_rows, n_rows - row_start)
                rr, cc = np.mgrid[row_start:row_start + n, 0:n_cols].astype(np.float64) + 0.5
                x, y = camera.image_to_ground(rr, cc, height_at)
                bands = np.stack([s(x, y) for s in samplers]).astype(np.float32)  # (4, n, W), NaN outside
                pan_refl = np.tensordot(np.asarray(pan_weights, np.float32), bands, axes=1)
                pan_dn = _to_dn(pan_refl * to_dn_pan, noise_dn, rng)
                mux_refl = bands.reshape(4, n // 4, 4, n_cols // 4, 4).mean(axis=(2, 4))  # 8 m pixels integrate 4x4
                mux_dn = _to_dn(mux_refl * to_dn_mux[:, None, None], noise_dn, rng)
                pan_dst.write(pan_dn, 1, window=Window(0, row_start, n_cols, n))
                mux_dst.write(mux_dn, window=Window(0, row_start // 4, n_cols // 4, n // 4))
                thumbs_pan.append(pan_dn[::16, ::16]), thumbs_mux.append(mux_dn[:, ::4, ::4])

    # RPCs: fit the camera over a 3-D lattice of the ground box (lon/lat from the grid CRS).
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    gx, gy, gh = np.meshgrid(np.linspace(left, right, 21), np.linspace(bottom, top, 21),
                             np.linspace(h_min - 50, h_max + 50, 6), indexing="ij")
    lon, lat = to_lonlat.transform(gx, gy)
    r_img, c_img = camera.ground_to_image(gx, gy, gh)
    pan_rpc, pan_err = fit_rpc(lon, lat, gh, r_img - 0.5, c_img - 0.5)
    mux_rpc, mux_err = fit_rpc(lon, lat, gh, r_img / 4 - 0.5, c_img / 4 - 0.5)
    log.info("synthetic delivery %s: PAN %dx%d, RPC fit max error %.4f px (PAN), %.4f px (MUX)",
             name, n_cols, n_rows, pan_err, mux_err)

    corner_rc = {"TopLeft": (0, 0), "TopRight": (0, n_cols), "BottomRight": (n_rows, n_cols),
                 "BottomLeft": (n_rows, 0), "Center": (n_rows / 2, n_cols / 2)}
    geo = {}
    for corner, (r, c) in corner_rc.items():
        x, y = camera.image_to_ground(np.array([r], float), np.array([c], float),
                                      lambda x, y: np.full_like(x, h_ref))
        lo, la = to_lonlat.transform(x[0], y[0])
        geo[f"{corner}Latitude"], geo[f"{corner}Longitude"] = f"{la:.6f}", f"{lo:.6f}"
    for image, rpc, size, band_id, thumbs in (
        (pan_path, pan_rpc, (n_cols, n_rows), "PAN", thumbs_pan),
        (mux_path, mux_rpc, (n_cols // 4, n_rows // 4), "MUX", thumbs_mux),
    ):
        with atomic_output(image.with_suffix(".rpb")) as tmp:
            tmp.write_text(format_rpb(rpc, "GF6", band_id))
        _write_xml(image.with_suffix(".xml"), {
            "SatelliteID": "GF6", "SensorID": "PMS", "ProductID": name.rsplit("_L1A", 1)[-1] or name,
            "ProductLevel": "LEVEL1A", "StartTime": acquired.strftime("%Y-%m-%d %H:%M:%S"),
            "EndTime": acquired.strftime("%Y-%m-%d %H:%M:%S"), "CenterTime": acquired.strftime("%Y-%m-%d %H:%M:%S"),
            "SolarZenith": sun_zenith_deg, "SolarAzimuth": sun_azimuth_deg,
            "SatelliteZenith": view_zenith_deg, "SatelliteAzimuth": view_azimuth_deg,
            "WidthInPixels": size[0], "HeightInPixels": size[1], **geo,
        })
        _write_thumbnail(image.with_suffix(".jpg"), np.concatenate(thumbs, axis=-2))
    if not archive:
        return folder
    tar_path = out_dir / f"{name}.tar.gz"
    with atomic_output(tar_path) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for member in sorted(folder.iterdir()):
                tar.add(member, arcname=member.name)
    shutil.rmtree(folder)
    return tar_path


def _to_dn(values: np.ndarray, noise_dn: float, rng: np.random.Generator) -> np.ndarray:
    """Float DN (NaN = not imaged) -> uint16 with 0 for not imaged (valid DN are >= 1)."""
    if noise_dn:
        values = values + rng.normal(0.0, noise_dn, values.shape)
    out = np.where(np.isfinite(values), np.clip(np.rint(values), 1, 65535), 0)
    return out.astype(np.uint16)


def synthetic_delivery_from_rasters(reflectance_tif: str | Path, dem_tif: str | Path, out_dir: str | Path,
                                    **kwargs) -> Path:
    """``write_synthetic_delivery`` from GeoTIFFs: 4-band reflectance (× 1e4 integers or floats,
    nodata honoured) and a DEM in the same projected CRS (any resolution). For the demo region."""
    with rasterio.open(reflectance_tif) as src:
        data = src.read(masked=True).astype(np.float32)
        scale = 1e-4 if np.issubdtype(np.dtype(src.dtypes[0]), np.integer) else 1.0
        reflectance = (data * scale).filled(np.nan)
        transform, crs = src.transform, src.crs
    with rasterio.open(dem_tif) as src:
        if src.crs != crs:
            raise LsmapError(f"{dem_tif}: DEM CRS {src.crs} differs from {reflectance_tif} ({crs})")
        dem = src.read(1, masked=True).astype(np.float64).filled(np.nan)
        dem_transform = src.transform
    return write_synthetic_delivery(out_dir, reflectance, transform, crs, dem, dem_transform=dem_transform, **kwargs)
