"""``lsmap map``: an analysis-ready scene and a checkpoint in, landslide rasters, polygons and
statistics out; and the region summary that merges a region's scenes.

Per scene (``out_dir``):
    probability.tif    float32 0..1, nodata -1, COG (tiled 512, DEFLATE, overviews), scene grid
    mask.tif           uint8 1 landslide / 0 not, nodata 255, COG, scene grid
    landslides.gpkg    layer "landslides" (scene CRS) + layer "footprint" (valid data, area CRS)
    landslides.parquet the same polygons as GeoParquet
    scene_stats.json   summary keys, area CRS, provenance, inference figures
Per region (:func:`lsmap.region.summarize_region`): landslides.gpkg (+ scene_ids), stats.json, stats.csv,
frequency_area.png. Every output carries the provenance (lsmap version, checkpoint SHA-256,
config SHA-256, scene ids): GeoTIFF tags, GeoPackage metadata, the JSON files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

import lsmap
from lsmap.checkpoint import checkpoint_hash, validate_checkpoint
from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output, atomic_result_set
from lsmap.nodata import declared_or_border_nodata, warn_if_guessed, with_nodata_vrt
from lsmap.rasterread import open_checked
from lsmap.predict import MASK_NODATA, PROBABILITY_NODATA, InferenceOptions, inspect_scene, predict_scene
from lsmap.provenance import provenance_tags, utc_now
from lsmap.tiling import Block

log = logging.getLogger("lsmap.mapping")
GDAL_CACHE_MB = 256


# options that change how fast a map is made, never the map
NOT_IN_HASH = ("device", "scheduler", "dask_workers", "workers", "progress", "reader_threads", "torch_threads", "cpu_workers")


@dataclass
class MappingOptions(InferenceOptions):
    """Everything that shapes a map (its SHA-256 is the ``config_sha256`` of the provenance).

    The inference fields (tile size, overlap, chunk, batch, device, precision, scheduler, ...) come
    from ``InferenceOptions``; these add thresholding and polygonisation.
    """

    threshold: float = 0.5
    min_area_m2: float = 100.0
    fill_holes: bool = True
    simplify_m: float = 0.0
    border_nodata: bool = True  # no nodata value but a constant border: that value is nodata
    workers: int = 2  # threads for polygonisation

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any], **overrides) -> MappingOptions:
        """From the ``mapping`` section of config.yaml (unknown keys such as ``checkpoint`` ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in mapping.items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def inference(self) -> InferenceOptions:
        """The part that drives tiling and the model."""
        return InferenceOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(InferenceOptions)})

    def sha256(self) -> str:
        """Hash of the options that change the result (not device, scheduler, progress, workers)."""
        keep = {k: v for k, v in asdict(self).items() if k not in NOT_IN_HASH}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def scene_acquired(scene: Path, acquired: str | None) -> str:
    """The acquisition time recorded for a scene: ``acquired`` when given (config, ``--acquired``),
    else the ``ACQUISITION_TIME`` tag lsmap.preprocess copies from the delivery's metadata, as UTC
    ``YYYY-MM-DDTHH:MM:SSZ`` (the scheduled run's form); '' when neither says."""
    if acquired:
        return str(acquired)
    with rasterio.open(scene) as src:
        tag = src.tags().get("ACQUISITION_TIME", "")
    if not tag:
        return ""
    try:
        stamp = dt.datetime.fromisoformat(tag.replace("Z", "+00:00"))
    except ValueError:
        return tag  # unusual but readable text: keep it rather than lose the date
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def scene_provenance(scene: Path, checkpoint: Path, options: MappingOptions, scene_id: str, acquired: str | None) -> dict:
    return {
        "lsmap_version": lsmap.__version__,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": checkpoint_hash(checkpoint),
        "config_sha256": options.sha256(),
        "scenes": [{"scene_id": scene_id, "image": str(scene), "acquired": acquired or ""}],
        "created_utc": utc_now(),
    }


# ------------------------------------------------------------------------------------- rasters


class RasterSink:
    """Receives blended cores and writes probability and mask into intermediate tiled GeoTIFFs,
    later copied to COGs (the COG driver needs a complete source to build overviews)."""

    def __init__(self, scene: Path, work_dir: Path, threshold: float, tags: dict[str, str]):
        with rasterio.open(scene) as src:
            base = dict(driver="GTiff", width=src.width, height=src.height, count=1, crs=src.crs, transform=src.transform,
                        tiled=True, blockxsize=256, blockysize=256, compress="zstd", zstd_level=1, bigtiff="if_safer")
        self.paths = {"probability": work_dir / ".probability.work.tif", "mask": work_dir / ".mask.work.tif"}
        self.probability = rasterio.open(self.paths["probability"], "w", dtype="float32", nodata=PROBABILITY_NODATA, **base)
        self.mask = rasterio.open(self.paths["mask"], "w", dtype="uint8", nodata=MASK_NODATA, **base)
        for dataset, description in ((self.probability, "landslide probability"), (self.mask, "landslide mask")):
            dataset.update_tags(**tags)
            dataset.set_band_description(1, description)
        self.threshold = threshold
        self.valid_px = 0
        self.landslide_px = 0

    def __call__(self, block: Block, probability: np.ndarray) -> None:
        valid = probability != PROBABILITY_NODATA
        mask = np.where(valid, (probability >= self.threshold).astype(np.uint8), MASK_NODATA).astype(np.uint8)
        self.probability.write(probability, 1, window=block.core_window)
        self.mask.write(mask, 1, window=block.core_window)
        self.valid_px += int(valid.sum())
        self.landslide_px += int((mask == 1).sum())

    def close(self) -> None:
        self.probability.close()
        self.mask.close()

    def discard(self) -> None:
        self.close()
        for path in self.paths.values():
            path.unlink(missing_ok=True)


# DEFLATE levels of the COGs, lossless whatever the level (values bit-identical): on the fragmented
# 8,192² benchmark map level 1 wrote the float32 probability in 5.8 s instead of 9.8 s (level 6,
# GDAL's default) for 3 % more bytes, and the uint8 mask in 1.3 s at level 3 instead of 3.6 s, 8 % more
COG_DEFLATE_LEVEL = {"probability": 1, "mask": 3}


def write_cog(source: Path, final: Path, resampling: str, predictor: int, level: int = 6, progress: bool = False) -> Path:
    """Copy a tiled GeoTIFF to a Cloud-Optimised GeoTIFF (tiled 512, DEFLATE at ``level``, overviews),
    atomically. GDAL's COG driver reports no progress through rasterio: with ``progress`` the bytes
    written so far (overviews, then the full resolution) are shown at intervals instead."""
    from rasterio.shutil import copy as raster_copy

    with atomic_output(final) as tmp, bytes_written_progress(tmp, f"{final.name} COG", progress):
        raster_copy(source, tmp, driver="COG", BLOCKSIZE=512, COMPRESS="DEFLATE", LEVEL=level, PREDICTOR=predictor,
                    OVERVIEWS="AUTO", OVERVIEW_RESAMPLING=resampling, BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")
    return final


def write_cogs(work: Mapping[str, Path], outputs: Mapping[str, Path], progress: bool) -> None:
    """probability.tif, then mask.tif, from the sink's work files (``RasterSink.paths``)."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024**2):  # rasterio's Env is per thread
        write_cog(work["probability"], outputs["probability.tif"], "AVERAGE", predictor=3,
                  level=COG_DEFLATE_LEVEL["probability"], progress=progress)
        write_cog(work["mask"], outputs["mask.tif"], "NEAREST", predictor=2, level=COG_DEFLATE_LEVEL["mask"],
                  progress=progress)


@contextlib.contextmanager
def bytes_written_progress(path: Path, desc: str, enabled: bool, interval_s: float = 1.0):
    """Progress of a GDAL copy into ``path``: a watcher thread adds up the bytes of ``path`` and of its
    sidecar temporaries (the COG driver writes the overviews to ``<path>.ovr.tmp`` first)."""
    import threading

    from lsmap.progress import progress_bar

    if not enabled:
        yield
        return
    done = threading.Event()

    def written_mb() -> int:
        total = 0
        for candidate in path.parent.glob(path.name + "*"):
            with contextlib.suppress(OSError):
                total += candidate.stat().st_size
        return total // 1_000_000

    def watch(bar) -> None:
        shown = 0
        while True:
            finished = done.wait(interval_s)
            now = max(shown, written_mb())
            bar.update(now - shown)
            shown = now
            if finished:  # one last look once the copy is complete: the bar ends at the file's size
                return

    with progress_bar(None, desc, "MB", True) as bar:
        watcher = threading.Thread(target=watch, args=(bar,), daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()


# -------------------------------------------------------------------------------------- polygons


def write_polygons(frames, gpkg: Path, parquet: Path | None, provenance: dict, footprint=None) -> np.ndarray:
    """GeoPackage layer "landslides" (+ "footprint", a one-row GeoSeries or a function returning
    one, called once the polygons are written) with provenance metadata,
    and GeoParquet, from one GeoDataFrame or an iterable of consecutive batches of one (written as
    they come, so a scene's polygons are never all in memory). Both files are written under
    temporary names and renamed when complete. Returns the area_m2 column of every row written
    (empty when the frames have none)."""
    import geopandas as gpd

    tags = provenance_tags(provenance)
    batches = [frames] if isinstance(frames, gpd.GeoDataFrame) else frames
    areas = []
    with atomic_output(gpkg) as tmp_gpkg, (atomic_output(parquet) if parquet is not None else contextlib.nullcontext()) as tmp_parquet:
        parquet_writer = GeoParquetBatches(tmp_parquet) if tmp_parquet is not None else None
        first = True
        for frame in batches:
            if not first and not len(frame):
                continue
            # Layer metadata only: GDAL answers dataset-level metadata in a multi-layer GeoPackage by
            # writing a .aux.xml sidecar beside the file on every read.
            frame.to_file(tmp_gpkg, layer="landslides", driver="GPKG", engine="pyogrio",
                          **({"metadata": tags} if first else {"append": True}))
            if parquet_writer is not None:
                parquet_writer.write(frame)
            if "area_m2" in frame:
                areas.append(frame["area_m2"].to_numpy(dtype=float))
            first = False
        if callable(footprint):
            footprint = footprint()
        if footprint is not None:
            gpd.GeoDataFrame({"kind": ["valid_data"]}, geometry=footprint.values, crs=footprint.crs).to_file(
                tmp_gpkg, layer="footprint", driver="GPKG", engine="pyogrio")
        if parquet_writer is not None:
            parquet_writer.close()
    return np.concatenate(areas) if areas else np.zeros(0)


class GeoParquetBatches:
    """GeoParquet written batch by batch, with the file-level metadata (bbox, geometry types, row
    count of the index) of the whole file added on close, as ``GeoDataFrame.to_parquet`` writes it
    for one frame. A single batch is written by ``to_parquet`` itself."""

    def __init__(self, path: Path):
        self.path = path
        self.writer = None
        self.first = None  # the first frame, held back until a second arrives
        self.rows = 0
        self.bounds = None
        self.types: set = set()
        self.metadata = None

    def write(self, frame) -> None:
        if self.first is None and self.writer is None:
            self.first = frame
            return
        if self.writer is None:
            self._start(self.first)
            self.first = None
        self._append(frame)

    def _start(self, frame) -> None:
        import pyarrow.parquet as pq
        from geopandas.io.arrow import _geopandas_to_arrow

        table = _geopandas_to_arrow(frame, index=None)
        self.metadata = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
        self.writer = pq.ParquetWriter(self.path, table.schema.remove_metadata(), compression="snappy")
        self._append(frame, table)

    def _append(self, frame, table=None) -> None:
        from geopandas.io.arrow import _geopandas_to_arrow

        table = table if table is not None else _geopandas_to_arrow(frame, index=None)
        self.writer.write_table(table.replace_schema_metadata(None))
        self.rows += len(frame)
        if len(frame):
            b = frame.total_bounds
            self.bounds = b if self.bounds is None else np.concatenate([np.minimum(self.bounds[:2], b[:2]), np.maximum(self.bounds[2:], b[2:])])
            self.types.update(frame.geom_type.unique())

    def close(self) -> None:
        if self.writer is None:
            if self.first is not None:
                self.first.to_parquet(self.path)
            return
        geo = json.loads(self.metadata["geo"])
        column = geo["columns"][geo["primary_column"]]
        column["bbox"] = [float(v) for v in self.bounds]
        column["geometry_types"] = sorted(self.types)
        pandas_meta = json.loads(self.metadata["pandas"])
        for index in pandas_meta.get("index_columns", []):
            if isinstance(index, dict) and index.get("kind") == "range":
                index["start"], index["stop"] = 0, self.rows
        self.metadata["geo"] = json.dumps(geo)
        self.metadata["pandas"] = json.dumps(pandas_meta)
        self.writer.add_key_value_metadata(self.metadata)
        self.writer.close()


# --------------------------------------------------------------------------------------- one scene


def map_scene(scene: Path, checkpoint: Path, out_dir: Path, *, options: MappingOptions, dem: Path | None = None,
              scene_id: str | None = None, acquired: str | None = None) -> dict[str, Path]:
    """Map one analysis-ready scene; returns the paths of what it wrote (see the module doc).

    Bad input raises LsmapError naming the file. The five files are written in a staging folder and
    swapped in as one set (:func:`lsmap.fileio.atomic_result_set`): ``out_dir`` holds the previous
    complete set or the new one, never a mix, and a failed run keeps the previous results.
    """
    scene, checkpoint, out_dir = Path(scene), Path(checkpoint), Path(out_dir)
    scene_id = scene_id or scene.stem
    check_map_arguments(out_dir, dem, acquired)
    open_checked(scene).close()  # missing, a folder, not a raster, truncated: named before the checkpoint loads
    model = validate_checkpoint(checkpoint)
    inspect_scene(scene, model)  # fail before anything is written
    nodata = declared_or_border_nodata(scene, options.border_nodata)
    acquired = scene_acquired(scene, acquired)
    names = ["probability.tif", "mask.tif", "landslides.gpkg", "landslides.parquet", "scene_stats.json"]
    provenance = scene_provenance(scene, checkpoint, options, scene_id, acquired)
    # GDAL's block cache defaults to 5 % of RAM; the writes here are sequential enough for 256 MB
    # in bytes: rasterio hands an int to GDAL as bytes (256 alone would be a 256-byte cache)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024**2), atomic_result_set(out_dir, names) as staging:
        outputs = {name: staging / name for name in names}
        source = with_nodata_vrt(scene, nodata, staging) if nodata.source == "constant border" else scene
        sink = RasterSink(source, staging, options.threshold, provenance_tags(provenance))
        _map_into(source, checkpoint, model, sink, outputs, options, provenance, dem, scene_id, acquired, nodata)
    return {"probability": out_dir / "probability.tif", "mask": out_dir / "mask.tif", "polygons": out_dir / "landslides.gpkg",
            "parquet": out_dir / "landslides.parquet", "stats": out_dir / "scene_stats.json"}


def check_map_arguments(out_dir: Path, dem: Path | None, acquired: str | None) -> None:
    """One-line errors for arguments that would otherwise fail late or be written into the outputs."""
    if out_dir.exists() and not out_dir.is_dir():
        raise LsmapError(f"{out_dir}: --out exists and is not a directory")
    if dem is not None and not Path(dem).is_file():
        raise LsmapError(f"{dem}: DEM not found")
    if acquired:
        try:
            dt.datetime.fromisoformat(acquired)  # a date, or a date and time (UTC 'Z' accepted)
        except ValueError:
            raise LsmapError(f"acquisition date {acquired!r} is not an ISO date YYYY-MM-DD[THH:MM:SSZ]") from None


def _map_into(scene: Path, checkpoint: Path, model, sink: RasterSink, outputs: dict[str, Path], options: MappingOptions,
              provenance: dict, dem, scene_id: str, acquired: str | None, nodata) -> None:
    """Predict, threshold, polygonise and summarise one scene into ``outputs`` (a staging folder)."""
    import geopandas as gpd

    from lsmap.stats import area_crs_for, observed_area_m2, summarize, valid_footprint
    from lsmap.vectorize import landslide_batches

    try:
        run = predict_scene(scene, checkpoint, sink, options.inference(), checkpoint=model)
        sink.close()
        if sink.valid_px == 0:
            raise LsmapError(f"{nodata.path}: every pixel is nodata{nodata.note()}, nothing to map")
        warn_if_guessed(nodata)
        log.info("%s: %d/%d tiles run in %.1f s (%.2f tiles/s, %s, %s)", scene_id, run.tiles_run, run.tiles_total,
                 run.seconds, run.tiles_per_s, run.device, run.precision)
        # The COGs are written by GDAL (GIL released) in a thread while the polygons are made from the
        # work files, which hold the same pixels; the footprint waits for the mask COG, whose overviews
        # its decimated read uses. Leaving the pool waits for the thread, also on error.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cog") as pool:
            cogs = pool.submit(write_cogs, sink.paths, outputs, options.progress)
            with rasterio.open(sink.paths["mask"]) as src:
                area_crs = area_crs_for(src.crs, src.bounds, outputs["mask.tif"])
            observed, unobserved = observed_area_m2(sink.paths["mask"], area_crs, progress=options.progress,
                                                    desc=f"{scene_id} observed area")

            def footprint():
                cogs.result()
                return gpd.GeoSeries([valid_footprint(outputs["mask.tif"], area_crs)], crs=area_crs)

            # 2048: bounded label/probability buffers per thread; batches written as block rows complete
            batches = landslide_batches(sink.paths["mask"], sink.paths["probability"], dem, scene_id=scene_id,
                                        acquired=acquired or "", min_area_m2=options.min_area_m2,
                                        fill_holes_=options.fill_holes, simplify_m=options.simplify_m, block_px=2048,
                                        workers=options.workers, progress=options.progress, desc=f"{scene_id} polygons")
            areas = write_polygons(batches, outputs["landslides.gpkg"], outputs["landslides.parquet"], provenance, footprint)
            cogs.result()
        sink.discard()  # the work files: the staging folder holds a set's worth of files, not two
        stats = {
            "scene_id": scene_id,
            "area_crs": area_crs.to_string(),
            "summary": summarize(areas, observed, unobserved),
            "provenance": provenance,
            "inference": {**asdict(run), "tiles_per_s": run.tiles_per_s},
            "options": asdict(options),
            "nodata": nodata.as_dict(),
        }
        with atomic_output(outputs["scene_stats.json"]) as tmp:
            tmp.write_text(json.dumps(stats, indent=2))
    finally:
        sink.discard()


# ------------------------------------------------------------------------------------------ region

# the region summary is its own stage (lsmap.region); these names stay importable from here
from lsmap.region import raster_extent, region_area_crs, summarize_region  # noqa: E402,F401


# -------------------------------------------------------------------------------------------- CLI


def build_parser(parser) -> None:
    defaults = MappingOptions()
    parser.add_argument("scene", type=Path, help="analysis-ready scene (GeoTIFF, 3+ bands, any CRS)")
    parser.add_argument("--model", required=True, type=Path, help="lsmap checkpoint (.pt)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--dem", type=Path, help="DEM (any CRS) for slope_mean_deg / elevation_mean_m")
    parser.add_argument("--scene-id", help="scene id recorded in the outputs (default: file stem)")
    parser.add_argument("--acquired", help="acquisition date YYYY-MM-DD (default: the scene's ACQUISITION_TIME tag, written by lsmap preprocess)")
    parser.add_argument("--config", type=Path, help="take defaults from this config.yaml's `mapping` section")
    parser.add_argument("--tile-size", type=int, help=f"tile side in px (default {defaults.tile_size})")
    parser.add_argument("--overlap", type=int, dest="overlap_px", help=f"tile overlap in px (default {defaults.overlap_px})")
    parser.add_argument("--chunk-px", type=int, help=f"block (dask chunk) side in px (default {defaults.chunk_px})")
    parser.add_argument("--batch-size", type=int, help=f"tiles per batch (default {defaults.batch_size})")
    parser.add_argument("--device", help="auto, cpu, cuda (every visible GPU, one model worker each), cuda:N or "
                                         "cuda:0,cuda:2 (default auto)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], help="default auto; fp32 forces fp32")
    parser.add_argument("--threshold", type=float, help=f"probability threshold (default {defaults.threshold})")
    parser.add_argument("--min-area-m2", type=float, help=f"smallest polygon kept (default {defaults.min_area_m2})")
    parser.add_argument("--no-fill-holes", dest="fill_holes", action="store_false", default=None, help="keep holes in polygons")
    parser.add_argument("--simplify-m", type=float, help="topology-preserving simplification tolerance in metres (default 0)")
    parser.add_argument("--raw-border", dest="border_nodata", action="store_false", default=None,
                        help="scene without a nodata value: map a constant border as data (default: treat it as nodata)")
    parser.add_argument("--scheduler", help="run blocks on dask.distributed: 'local' (a LocalCluster) or a scheduler address")
    parser.add_argument("--dask-workers", type=int, help="LocalCluster worker processes (default 1)")
    parser.add_argument("--reader-threads", type=int, help="threads decoding blocks ahead (default: half the cores, 2 to 8)")
    parser.add_argument("--torch-threads", type=int, help="CPU threads per CPU model worker (default: cores / CPU workers)")
    parser.add_argument("--cpu-workers", type=int, help="model workers on the CPU device (default 1)")
    parser.add_argument("--tta", help="test-time augmentation: flip (2 views), flips (4), 8 (all flips/90 degree "
                        "rotations) or a comma-separated list of lsmap.tta names; costs one model pass per view")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None)


def run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("pyogrio").setLevel(logging.WARNING)  # one "Created N records" line per layer otherwise
    base: dict = {}
    if args.config:
        from lsmap.config import load_config

        base = load_config(args.config)["mapping"]
    overrides = {name: getattr(args, name) for name in ("tile_size", "overlap_px", "chunk_px", "batch_size", "device", "precision",
                                                          "threshold", "min_area_m2", "fill_holes", "simplify_m", "border_nodata", "scheduler",
                                                          "dask_workers", "reader_threads", "torch_threads", "cpu_workers",
                                                          "progress", "tta")}
    options = MappingOptions.from_config(base, **overrides)
    outputs = map_scene(args.scene, args.model, args.out, options=options, dem=args.dem, scene_id=args.scene_id,
                        acquired=args.acquired)
    stats = json.loads(outputs["stats"].read_text())
    summary = stats["summary"]
    print(f"{stats['scene_id']}: {summary['landslide_count']} landslides, {summary['landslide_area_km2']:.4f} km2 "
          f"of {summary['observed_area_km2']:.2f} km2 observed -> {args.out}")
    return 0
