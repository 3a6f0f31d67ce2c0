"""``lsmap scheduled-run``: map every new GF-6 delivery of a deployment's inbox, once.

Run by cron or a systemd timer (``deploy/``), or by the Snakemake target ``scheduled_run``. One run:

1. takes an exclusive lock (``flock`` on ``<ledger>.lock``); a second run started meanwhile prints
   one line and exits with status 75 (EX_TEMPFAIL) without touching anything;
2. puts deliveries a killed run left in ``processing`` back in the queue;
3. scans the inbox (``operations.inbox``). An entry is a folder or a ``.tar.gz``/``.tgz``/``.tar``;
   hidden names and names ending in ``.part``/``.partial``/``.tmp``/``.filepart`` are copies in
   progress and are skipped. An entry is **complete** when ``<entry>.done`` (or ``<stem>.done``)
   exists beside it, or, unless ``require_done_marker`` is set, when none of its files changed
   (mtime *or* ctime, so copies that preserve mtimes are caught too) for ``settle_seconds``;
4. records complete entries in the ledger (SHA-256 of the bytes; a re-delivery with new bytes is
   processed again, identical bytes under another name are marked ``duplicate``);
5. for each queued delivery: reads it (``lsmap.gf6.read_delivery``: corrupt TIFF, missing
   ``.rpb``/``.xml`` -> quarantine), preprocesses it, maps it, adds it to
   ``results/<region>/inventory.gpkg`` (:mod:`lsmap.inventory`) and marks it ``done``.
   An ``LsmapError`` (bad input) moves the delivery to ``quarantine_dir`` with ``<name>.error.txt``
   beside it; any other error marks it ``failed`` and it is retried by the next runs, then
   quarantined after ``max_attempts``. One delivery's failure never stops the others;
6. when the pass changed the inventory, refreshes the region's products (stats.json/csv,
   frequency-area plot, GeoJSON/KML, ``passes.json``, report.html: :func:`refresh_region_products`),
   all staged in ``results/<region>/.refresh-<run>/`` and renamed into place once complete; a pass
   whose deliveries all failed only adds itself to ``passes.json`` and keeps the previous report;
7. writes the run summary ``<runs_dir>/<run_id>.json`` and ``.md`` (new scenes, new / updated /
   no-longer-seen landslides, area added, failures, products refreshed) and copies them to
   ``latest.json``/``latest.md``.

A run with nothing to do writes nothing at all (no ledger change, no summary, no new mtime):
running twice in a row is a no-op the second time. Exit status: 0 all good, 1 when a delivery
failed or was quarantined in this run, 2 bad configuration, 75 another run holds the lock.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output, sha256_file
from lsmap.ledger import DeliveryRecord, Ledger, utc_now

if TYPE_CHECKING:
    from lsmap.inventory import InventoryState

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURES, EXIT_LOCKED = 0, 1, 75
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
IN_PROGRESS_SUFFIXES = (".part", ".partial", ".tmp", ".filepart", ".crdownload")
DONE_SUFFIX = ".done"


# --------------------------------------------------------------------------------------- settings


@dataclass
class OperationsSettings:
    """The ``operations`` section of the configuration, with every path resolved."""

    region: str
    inbox: Path
    ledger: Path
    quarantine_dir: Path
    runs_dir: Path
    work_dir: Path
    results_dir: Path
    checkpoint: Path
    dem: Path | None
    settle_seconds: float = 300.0
    require_done_marker: bool = False
    max_attempts: int = 3
    max_deliveries_per_run: int = 0
    match_min_overlap: float = 0.2
    view_min_coverage: float = 0.5

    @property
    def lock_path(self) -> Path:
        return self.ledger.with_name(self.ledger.name + ".lock")

    @property
    def region_dir(self) -> Path:
        return self.results_dir / self.region

    @property
    def inventory(self) -> Path:
        return self.region_dir / "inventory.gpkg"

    @classmethod
    def from_config(cls, config: dict[str, Any], *, inbox: str | None = None, region: str | None = None) -> OperationsSettings:
        """Read ``config['operations']`` (validated config); ``inbox``/``region`` override it."""
        ops = dict(config.get("operations") or {})
        region = region or ops.get("region")
        if not region:
            raise LsmapError("config: operations.region is not set (the region whose inbox this deployment watches)")
        regions = config.get("regions", {})
        if region not in regions:
            raise LsmapError(f"config: operations.region '{region}' is not one of regions: {', '.join(sorted(regions))}")
        inbox = inbox or ops.get("inbox")
        if not inbox:
            raise LsmapError("config: operations.inbox is not set (the folder new deliveries arrive in)")
        results = Path(config.get("results_dir", "results"))
        base = results / region / "operations"
        spec = regions[region]
        checkpoint = ops.get("checkpoint") or spec.get("checkpoint") or config["mapping"]["checkpoint"]
        dem = ops.get("dem") or spec.get("dem")
        return cls(
            region=region,
            inbox=Path(inbox),
            ledger=Path(ops.get("ledger") or base / "ledger.sqlite"),
            quarantine_dir=Path(ops.get("quarantine_dir") or base / "quarantine"),
            runs_dir=Path(ops.get("runs_dir") or base / "runs"),
            work_dir=Path(ops.get("work_dir") or base / "work"),
            results_dir=results,
            checkpoint=Path(checkpoint),
            dem=Path(dem) if dem else None,
            settle_seconds=float(ops.get("settle_seconds", 300)),
            require_done_marker=bool(ops.get("require_done_marker", False)),
            max_attempts=int(ops.get("max_attempts", 3)),
            max_deliveries_per_run=int(ops.get("max_deliveries_per_run", 0)),
            match_min_overlap=float(ops.get("match_min_overlap", 0.2)),
            view_min_coverage=float(ops.get("view_min_coverage", 0.5)),
        )


# ------------------------------------------------------------------------------------------ lock


class RunLocked(LsmapError):
    """Another scheduled run holds the lock."""


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the duration; RunLocked at once if taken.

    flock is released by the kernel when the holder dies, however it dies, so a killed run never
    leaves a stale lock. Nothing is written to the lock file (a pass with nothing to do touches no
    file); the holder's pid for the message comes from the kernel's lock table.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunLocked(f"{path}: another scheduled run holds the lock ({lock_holder(fd)}); exiting") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def lock_holder(fd: int, proc_locks: Path = Path("/proc/locks")) -> str:
    """'pid N' of the process holding the flock on ``fd``'s file (Linux ``/proc/locks``: lines like
    ``1: FLOCK  ADVISORY  WRITE 4242 fd:01:1316 0 EOF``, device as hex major:minor, then the inode)."""
    st = os.fstat(fd)
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = proc_locks.read_text().splitlines()
    except OSError:
        return "holder unknown: no /proc/locks"
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted and fields[4].isdigit():
            return f"pid {fields[4]}"
    return "holder gone since"


# ----------------------------------------------------------------------------------------- inbox


@dataclass
class InboxEntry:
    """A candidate delivery in the inbox and whether it is complete enough to take."""

    name: str
    path: Path
    signature: str  # files:bytes:newest-mtime-ns; unchanged signature = unchanged delivery
    size_bytes: int
    ready: bool
    reason: str = ""


def _is_delivery_name(path: Path) -> bool:
    name = path.name
    if name.startswith(".") or name.endswith(IN_PROGRESS_SUFFIXES) or name.endswith(DONE_SUFFIX):
        return False
    return path.is_dir() or name.endswith(ARCHIVE_SUFFIXES)


def delivery_stem(name: str) -> str:
    """Entry name without its archive suffix: 'X_L1A123.tar.gz' -> 'X_L1A123'."""
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def scene_id_for(name: str) -> str:
    """The results/<region>/<scene_id>/ folder of a delivery: its stem, safe as a path and a wildcard."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", delivery_stem(name))


def _files_of(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


def scan_entry(path: Path, *, settle_seconds: float, require_done_marker: bool, now: float | None = None) -> InboxEntry:
    """Size/time signature of one entry and whether it is complete (module docstring, step 3)."""
    now = time.time() if now is None else now
    stats = [p.stat() for p in _files_of(path)]
    size = sum(s.st_size for s in stats)
    newest_mtime = max((s.st_mtime_ns for s in stats), default=0)
    newest_change = max((max(s.st_mtime, s.st_ctime) for s in stats), default=now)
    signature = f"{len(stats)}:{size}:{newest_mtime}"
    entry = InboxEntry(path.name, path, signature, size, ready=True)
    markers = (path.with_name(path.name + DONE_SUFFIX), path.with_name(delivery_stem(path.name) + DONE_SUFFIX))
    if any(marker.exists() for marker in markers):
        return entry
    if require_done_marker:
        entry.ready, entry.reason = False, f"waiting for {markers[0].name}"
    elif now - newest_change < settle_seconds:
        age = max(0.0, now - newest_change)
        entry.ready, entry.reason = False, f"changed {age:.0f} s ago; taken once unchanged for {settle_seconds:.0f} s"
    return entry


def scan_inbox(inbox: Path, *, settle_seconds: float, require_done_marker: bool, now: float | None = None) -> list[InboxEntry]:
    """All candidate deliveries in ``inbox``, sorted by name."""
    if not inbox.is_dir():
        raise LsmapError(f"{inbox}: inbox folder not found (operations.inbox)")
    return [
        scan_entry(path, settle_seconds=settle_seconds, require_done_marker=require_done_marker, now=now)
        for path in sorted(inbox.iterdir())
        if _is_delivery_name(path)
    ]


def delivery_checksum(path: Path) -> str:
    """SHA-256 of an archive's bytes, or of a folder's (relative path, file SHA-256) list."""
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in _files_of(path):
        digest.update(f"{file.relative_to(path).as_posix()}\t{sha256_file(file)}\n".encode())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ processing


@dataclass
class SceneIdentity:
    """What a readable delivery is: filled by the processor's ``identify``."""

    product_id: str
    scene_id: str
    acquired: str  # ISO 8601, UTC
    root: Path  # folder holding the delivery's files (extracted for archives)
    extracted: bool = False


class DeliveryProcessor(Protocol):
    """The per-delivery work; tests replace it to check the ledger, lock and idempotency logic."""

    def identify(self, delivery: Path) -> SceneIdentity:
        """Read and check the delivery; LsmapError naming the file when it is unreadable."""

    def process(self, delivery: Path, identity: SceneIdentity) -> dict[str, Path]:
        """Preprocess and map; returns map_scene's paths, at least 'polygons' (landslides.gpkg
        with layers "landslides" and "footprint") and 'mask'."""


class Gf6Processor:
    """The real chain: lsmap.gf6 -> lsmap.preprocess -> lsmap.mapping, into results/<region>/<scene>/."""

    def __init__(self, config: dict[str, Any], settings: OperationsSettings, threads: int = 2):
        if not settings.checkpoint.is_file():
            raise LsmapError(f"{settings.checkpoint}: checkpoint not found (operations.checkpoint, the region's checkpoint or mapping.checkpoint)")
        if settings.dem is None:
            raise LsmapError(f"config: region '{settings.region}' has no `dem` and operations.dem is not set")
        if not settings.dem.is_file():
            raise LsmapError(f"{settings.dem}: DEM not found (regions.{settings.region}.dem or operations.dem)")
        self.config = config
        self.settings = settings
        self.threads = threads

    def identify(self, delivery: Path) -> SceneIdentity:
        from lsmap.gf6 import read_delivery

        extract_to = None
        if not delivery.is_dir():
            extract_to = self.settings.work_dir / scene_id_for(delivery.name)
            shutil.rmtree(extract_to, ignore_errors=True)  # leftovers of a killed run
        try:
            meta = read_delivery(delivery, extract_to=extract_to)
        except BaseException:
            if extract_to is not None:
                shutil.rmtree(extract_to, ignore_errors=True)
            raise
        acquired = meta.acquired.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return SceneIdentity(meta.product_id, scene_id_for(delivery.name), acquired, meta.root, extract_to is not None)

    def process(self, delivery: Path, identity: SceneIdentity) -> dict[str, Path]:
        from lsmap.mapping import MappingOptions, map_scene
        from lsmap.preprocess import preprocess_delivery

        scene_dir = self.settings.region_dir / identity.scene_id
        try:
            ard = preprocess_delivery(identity.root, self.settings.dem, scene_dir / "ard", config=self.config, threads=self.threads)
        finally:
            if identity.extracted:
                shutil.rmtree(identity.root, ignore_errors=True)
        maps = map_scene(
            ard["reflectance"], self.settings.checkpoint, scene_dir,
            options=MappingOptions.from_config(self.config.get("mapping", {}), progress=False, workers=self.threads),
            dem=ard.get("dem"), scene_id=identity.scene_id, acquired=identity.acquired,
        )
        from lsmap.quicklook import make_quicklook

        # The report's picture of the scene and the background of its map (a decimated read: small).
        make_quicklook(ard["reflectance"], maps["polygons"], scene_dir / "quicklook.png", scene_dir / "quicklook.tif",
                       scene_id=identity.scene_id, acquired=identity.acquired)
        maps = {**maps, "quicklook": scene_dir / "quicklook.png", "quicklook_cog": scene_dir / "quicklook.tif"}
        return {**{f"ard_{name}": Path(path) for name, path in ard.items()}, **{name: Path(path) for name, path in maps.items()}}


# ------------------------------------------------------------------------------------------- run


@dataclass
class SceneResult:
    name: str
    scene_id: str
    product_id: str
    acquired: str
    landslides: int
    landslide_area_m2: float
    inventory_new_landslides: int
    inventory_area_added_m2: float
    seconds: float
    outputs: dict[str, str]


@dataclass
class RunSummary:
    run_id: str
    region: str
    inbox: str
    started: str
    finished: str = ""
    new_scenes: list[SceneResult] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    new_landslides: int = 0
    area_added_m2: float = 0.0
    inventory_landslides: int = 0
    inventory_area_m2: float = 0.0
    updated_landslides: int = 0
    no_longer_seen: int = 0
    newly_observed_km2: float = 0.0
    refreshed: list[str] = field(default_factory=list)  # region products rewritten by this pass
    report_kept: str = ""  # why the previous report.html was left in place, when it was
    summary_json: str = ""
    summary_markdown: str = ""
    nothing_to_do: bool = False

    @property
    def exit_status(self) -> int:
        return EXIT_FAILURES if self.failures else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("nothing_to_do")
        return data


def new_run_id() -> str:
    """Sortable and unique within a deployment (runs are serialised by the lock): UTC time to the µs."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


@dataclass
class _Plan:
    register: list[InboxEntry] = field(default_factory=list)  # new, or known name with a new signature
    waiting: list[InboxEntry] = field(default_factory=list)

    @staticmethod
    def make(ledger: Ledger, entries: list[InboxEntry]) -> _Plan:
        plan = _Plan()
        for entry in entries:
            if not entry.ready:
                plan.waiting.append(entry)
                continue
            known = ledger.get(entry.name)
            if known is None or known.signature != entry.signature:
                plan.register.append(entry)
            elif known.state == "quarantined" and known.quarantine_path:
                plan.register.append(entry)  # it was moved away and someone put it back: retry
        return plan


def run_scheduled(
    config: dict[str, Any],
    *,
    settings: OperationsSettings | None = None,
    processor: DeliveryProcessor | None = None,
    threads: int = 2,
    echo: Callable[[str], None] = print,
) -> RunSummary:
    """One scheduled run (module docstring). Raises RunLocked when another run holds the lock.

    ``processor``: the per-delivery work (default :class:`Gf6Processor` with ``threads``).
    """
    settings = settings or OperationsSettings.from_config(config)
    if not settings.inbox.is_dir():  # before the lock and the ledger: a wrong path creates nothing
        raise LsmapError(f"{settings.inbox}: inbox folder not found (operations.inbox)")
    started = utc_now()
    with run_lock(settings.lock_path):
        entries = scan_inbox(settings.inbox, settle_seconds=settings.settle_seconds, require_done_marker=settings.require_done_marker)
        view = Ledger.read_only(settings.ledger)  # a pass with nothing new creates or touches no file
        if view is not None:
            with view:
                summary = _nothing_to_do(view, entries, settings, started, echo)
            if summary is not None:
                return summary
        with Ledger(settings.ledger) as ledger:
            summary = _nothing_to_do(ledger, entries, settings, started, echo)
            if summary is not None:
                return summary
            plan = _Plan.make(ledger, entries)
            run_id = new_run_id()
            summary = RunSummary(run_id, settings.region, str(settings.inbox), started)
            summary.waiting = [{"name": e.name, "reason": e.reason} for e in plan.waiting]
            ledger.start_run(run_id)
            summary.recovered = ledger.recover_interrupted(run_id)
            for name in summary.recovered:
                echo(f"scheduled-run: {name}: resuming after an interrupted run")
            _register(ledger, plan.register, run_id, summary, echo)
            from lsmap.inventory import InventoryState, inventory_state  # geopandas: only when there is work

            try:
                before = inventory_state(settings.inventory)
            except LsmapError as exc:  # the first add_scene stops the run on it, after the ledger knows
                log.warning("%s", exc)
                before = InventoryState()
            _process_queue(config, settings, ledger, run_id, summary, processor, threads, echo)
            update_region_products(settings, summary, before, echo)
            _finish(settings, ledger, summary, echo)
    return summary


def _nothing_to_do(ledger: Ledger, entries: list[InboxEntry], settings, started: str, echo) -> RunSummary | None:
    """The summary of a pass with nothing to register or process (and its one line), else None."""
    plan = _Plan.make(ledger, entries)
    queued = ledger.records("processing") + [r for r in ledger.records("discovered", "failed") if Path(r.path).exists()]
    if plan.register or queued or owed_refresh(settings.region_dir) is not None:
        return None
    summary = RunSummary(new_run_id(), settings.region, str(settings.inbox), started)
    summary.waiting = [{"name": e.name, "reason": e.reason} for e in plan.waiting]
    summary.nothing_to_do = True
    waiting = f", {len(plan.waiting)} still arriving" if plan.waiting else ""
    echo(f"scheduled-run: nothing new in {settings.inbox} ({len(ledger.records())} deliveries in the ledger{waiting})")
    return summary


def _register(ledger: Ledger, entries: list[InboxEntry], run_id: str, summary: RunSummary, echo: Callable[[str], None]) -> None:
    for entry in entries:
        checksum = delivery_checksum(entry.path)
        known = ledger.get(entry.name)
        if known is not None and known.checksum == checksum and known.state not in ("quarantined",):
            ledger.update_signature(entry.name, entry.signature)  # touched or copied again, same bytes
            continue
        twins = [r for r in ledger.with_checksum(checksum) if r.name != entry.name and r.state != "quarantined"]
        ledger.record_discovered(entry.name, entry.path, checksum, entry.signature, entry.size_bytes, run_id)
        if twins:
            ledger.mark_duplicate(entry.name, run_id, twins[0].name)
            summary.duplicates.append({"name": entry.name, "same_as": twins[0].name})
            echo(f"scheduled-run: {entry.name}: same bytes as {twins[0].name}; not processed again")


def _process_queue(config, settings, ledger, run_id, summary, processor, threads, echo) -> None:
    queue = [r for r in ledger.records("discovered", "failed") if Path(r.path).exists()]
    if settings.max_deliveries_per_run > 0:
        queue = queue[: settings.max_deliveries_per_run]
    if not queue:
        return
    if processor is None:
        processor = Gf6Processor(config, settings, threads)  # checks checkpoint and DEM once, before any delivery
    for record in queue:
        _process_one(record, settings, ledger, run_id, summary, processor, echo)


def _process_one(record: DeliveryRecord, settings, ledger: Ledger, run_id: str, summary: RunSummary, processor, echo) -> None:
    import geopandas as gpd

    from lsmap.inventory import InventoryRules, add_scene

    name, path = record.name, Path(record.path)
    attempt = ledger.mark_processing(name, run_id)
    echo(f"scheduled-run: {name}: processing (attempt {attempt})")
    start = time.perf_counter()
    try:
        identity = processor.identify(path)
        ledger.set_identity(name, product_id=identity.product_id, scene_id=identity.scene_id, acquired=identity.acquired)
        outputs = processor.process(path, identity)
        polygons = gpd.read_file(outputs["polygons"], layer="landslides")
        footprint = scene_footprint(outputs)
    except LsmapError as exc:  # bad input: this delivery (or its DEM) needs a person
        _quarantine(record, settings, ledger, run_id, summary, str(exc), echo)
        return
    except Exception as exc:  # a bug or a resource problem, not the delivery's fault: retry later
        _failed(record, settings, ledger, run_id, summary, attempt, exc, echo)
        return
    # From here the inventory changes: should this pass die before its refresh is complete, this
    # (still empty) staging folder tells the next pass that the region products are owed.
    (settings.region_dir / f"{STAGING_PREFIX}{run_id}").mkdir(parents=True, exist_ok=True)
    try:
        update = add_scene(
            settings.inventory, scene_id=identity.scene_id, acquired=identity.acquired, polygons=polygons,
            footprint=footprint, rules=InventoryRules(settings.match_min_overlap, settings.view_min_coverage),
        )
    except BaseException as exc:
        # The inventory is shared by every delivery: a problem with it stops the run (the
        # delivery is retried by the next one), it never quarantines a good delivery.
        ledger.mark_failed(name, run_id, f"inventory update: {exc}")
        raise
    outputs = {**outputs, "inventory": settings.inventory}
    ledger.mark_done(name, run_id, outputs=outputs, product_id=identity.product_id, scene_id=identity.scene_id, acquired=identity.acquired)
    seconds = time.perf_counter() - start
    summary.new_scenes.append(SceneResult(
        name=name, scene_id=identity.scene_id, product_id=identity.product_id, acquired=identity.acquired,
        landslides=len(polygons), landslide_area_m2=float(polygons["area_m2"].sum()) if "area_m2" in polygons else float(polygons.geometry.area.sum()),
        inventory_new_landslides=len(update.new_landslide_ids), inventory_area_added_m2=update.area_added_m2,
        seconds=round(seconds, 1), outputs={k: str(v) for k, v in outputs.items()},
    ))
    echo(f"scheduled-run: {name}: done in {seconds:.0f} s, {len(polygons)} landslides, {len(update.new_landslide_ids)} new in the inventory")


def scene_footprint(outputs: dict[str, Path]):
    """The area a mapped scene observed: the "footprint" layer map_scene writes beside the polygons,
    else lsmap.stats.valid_footprint of its mask."""
    import geopandas as gpd
    import pyogrio

    polygons = Path(outputs["polygons"])
    if "footprint" in set(pyogrio.list_layers(polygons)[:, 0]):
        return gpd.read_file(polygons, layer="footprint")
    from lsmap.stats import raster_area_crs, valid_footprint

    area_crs = raster_area_crs(outputs["mask"])
    return gpd.GeoDataFrame(geometry=[valid_footprint(outputs["mask"], area_crs)], crs=area_crs)


def _failed(record: DeliveryRecord, settings, ledger: Ledger, run_id: str, summary: RunSummary, attempt: int, exc: Exception, echo) -> None:
    """An unexpected error: retried by the next runs, quarantined after ``max_attempts``."""
    reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".rstrip(": ")
    log.error("%s: attempt %d failed\n%s", record.name, attempt, traceback.format_exc())
    if attempt >= settings.max_attempts:
        _quarantine(record, settings, ledger, run_id, summary, f"gave up after {attempt} attempts: {reason}", echo)
        return
    ledger.mark_failed(record.name, run_id, reason)
    summary.failures.append({"name": record.name, "state": "failed", "attempt": attempt, "error": reason})
    echo(f"scheduled-run: {record.name}: failed (attempt {attempt} of {settings.max_attempts}, retried next run): {reason}")


def _quarantine(record: DeliveryRecord, settings, ledger: Ledger, run_id: str, summary: RunSummary, error: str, echo) -> None:
    """Move the delivery (and its .done marker) out of the inbox, with its error beside it."""
    source = Path(record.path)
    target = settings.quarantine_dir / record.name
    if target.exists():
        target = settings.quarantine_dir / f"{record.name}.{run_id}"
    moved: Path | None = None
    try:
        settings.quarantine_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), target)
        moved = target
        for marker in (source.with_name(source.name + DONE_SUFFIX), source.with_name(delivery_stem(source.name) + DONE_SUFFIX)):
            if marker.exists():
                shutil.move(str(marker), settings.quarantine_dir / marker.name)
        with atomic_output(target.with_name(target.name + ".error.txt")) as tmp:
            tmp.write_text(f"{utc_now()} run {run_id}\n{error}\n")
    except OSError as exc:  # read-only inbox: the ledger still knows, and the entry is not retried
        log.warning("%s: could not move to quarantine (%s); left in place", source, exc)
    ledger.mark_quarantined(record.name, run_id, error, moved)
    summary.failures.append({"name": record.name, "state": "quarantined", "error": error, "quarantine_path": str(moved) if moved else None})
    echo(f"scheduled-run: {record.name}: quarantined: {error}")


def _finish(settings: OperationsSettings, ledger: Ledger, summary: RunSummary, echo) -> None:
    from lsmap.inventory import LAYER_CURRENT, read_inventory

    summary.new_landslides = sum(scene.inventory_new_landslides for scene in summary.new_scenes)
    summary.area_added_m2 = sum(scene.inventory_area_added_m2 for scene in summary.new_scenes)
    layers = read_inventory(settings.inventory)
    if layers:
        summary.inventory_landslides = len(layers[LAYER_CURRENT])
        summary.inventory_area_m2 = float(layers[LAYER_CURRENT]["area_m2"].sum())
    summary.finished = utc_now()
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = settings.runs_dir / f"{summary.run_id}.json", settings.runs_dir / f"{summary.run_id}.md"
    summary.summary_json, summary.summary_markdown = str(json_path), str(md_path)
    data = summary.to_dict()
    for path in (json_path, settings.runs_dir / "latest.json"):
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(data, indent=2) + "\n")
    for path in (md_path, settings.runs_dir / "latest.md"):
        with atomic_output(path) as tmp:
            tmp.write_text(summary_markdown(summary))
    ledger.finish_run(summary.run_id, data)
    refreshed = f"; refreshed {', '.join(Path(p).name for p in summary.refreshed)}" if summary.refreshed else ""
    echo(
        f"scheduled-run: {len(summary.new_scenes)} new scene(s), {summary.new_landslides} new landslide(s), "
        f"{summary.area_added_m2 / 1e4:+.2f} ha, {len(summary.failures)} failure(s){refreshed}; summary {md_path}"
    )


def summary_markdown(summary: RunSummary) -> str:
    """The per-run report for people: what arrived, what it added, what failed."""
    lines = [
        f"# Scheduled run {summary.run_id} — region {summary.region}",
        "",
        f"Inbox `{summary.inbox}`, started {summary.started}, finished {summary.finished}.",
        "",
        f"- new scenes: **{len(summary.new_scenes)}**",
        f"- new landslides in the inventory: **{summary.new_landslides}**",
        f"- area added to the inventory: **{summary.area_added_m2 / 1e4:,.2f} ha** ({summary.area_added_m2:,.0f} m²)",
        f"- updated (a newer view stands): {summary.updated_landslides}; no longer seen: {summary.no_longer_seen}",
        f"- newly observed: {summary.newly_observed_km2:,.3f} km²",
        f"- inventory now: {summary.inventory_landslides} landslides, {summary.inventory_area_m2 / 1e4:,.2f} ha",
        f"- failures: **{len(summary.failures)}**",
        "",
    ]
    if summary.refreshed:
        lines += ["## Region products refreshed", ""] + [f"- `{path}`" for path in summary.refreshed] + [""]
    if summary.report_kept:
        lines += ["## Region products kept", "", summary.report_kept, ""]
    if summary.new_scenes:
        lines += ["## New scenes", "", "| delivery | scene | acquired | landslides | area (ha) | new in inventory | area added (ha) | time (s) |",
                  "|---|---|---|---:|---:|---:|---:|---:|"]
        for s in summary.new_scenes:
            lines.append(f"| {s.name} | {s.scene_id} | {s.acquired} | {s.landslides} | {s.landslide_area_m2 / 1e4:.2f} | "
                         f"{s.inventory_new_landslides} | {s.inventory_area_added_m2 / 1e4:+.2f} | {s.seconds:.0f} |")
        lines.append("")
    if summary.failures:
        lines += ["## Failures", "", "| delivery | state | error |", "|---|---|---|"]
        for f in summary.failures:
            lines.append(f"| {f['name']} | {f['state']} | {f['error'].replace('|', '/')} |")
        lines.append("")
    for title, items, key in (("Still arriving (not taken yet)", summary.waiting, "reason"), ("Duplicates (not processed)", summary.duplicates, "same_as")):
        if items:
            lines += [f"## {title}", ""] + [f"- {item['name']}: {item[key]}" for item in items] + [""]
    if summary.recovered:
        lines += ["## Resumed after an interrupted run", ""] + [f"- {name}" for name in summary.recovered] + [""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ region products

PASSES_FILE = "passes.json"
STAGING_PREFIX = ".refresh-"
# What a refresh rewrites in results/<region>/, in the order they are swapped in (the page last).
REGION_PRODUCTS = ("stats.json", "stats.csv", "frequency_area.png", "landslides.geojson", "landslides.kml",
                   PASSES_FILE, "report.html")


def update_region_products(settings: OperationsSettings, summary: RunSummary, before: InventoryState, echo) -> None:
    """After the deliveries of a pass: record the pass (what changed) in ``passes.json`` and, when
    the pass changed the inventory, refresh every region product (:func:`refresh_region_products`).
    A pass that changed nothing (all its deliveries failed) leaves the previous products in place
    and only adds itself, with its failures, to the pass list."""
    from lsmap.inventory import inventory_changes, inventory_state

    changes = inventory_changes(before, inventory_state(settings.inventory))
    summary.updated_landslides = len(changes.updated_ids)
    summary.no_longer_seen = len(changes.no_longer_seen_ids)
    summary.newly_observed_km2 = changes.newly_observed_m2 / 1e6
    owed = owed_refresh(settings.region_dir)  # the pass list of a refresh a killed pass did not finish
    passes = owed if owed is not None else read_passes(settings.region_dir / PASSES_FILE)
    if summary.new_scenes or summary.failures:  # a pass that only completes an owed refresh adds no row
        passes = passes + [pass_record(summary, changes)]
    if summary.new_scenes or owed is not None:
        summary.refreshed = [str(p) for p in refresh_region_products(settings, passes, summary.run_id)]
        echo(f"scheduled-run: refreshed {', '.join(Path(p).name for p in summary.refreshed)} in {settings.region_dir}")
        return
    with atomic_output(settings.region_dir / PASSES_FILE) as tmp:
        tmp.write_text(json.dumps({"region": settings.region, "passes": passes}, indent=1) + "\n")
    report = settings.region_dir / "report.html"
    summary.report_kept = (f"No delivery of this pass reached the inventory: `{report}` and the statistics are those of the "
                           f"previous pass; this pass and its failures are added to `{settings.region_dir / PASSES_FILE}`.")
    echo(f"scheduled-run: no delivery reached the inventory; previous report kept, pass added to {PASSES_FILE}")


def pass_record(summary: RunSummary, changes) -> dict[str, Any]:
    """One entry of the report's pass list (``passes.json``)."""
    return {
        "run_id": summary.run_id,
        "started": summary.started,
        "deliveries": [s.name for s in summary.new_scenes] + [f["name"] for f in summary.failures],
        "scenes": [{"scene_id": s.scene_id, "acquired": s.acquired} for s in summary.new_scenes],
        "failures": [{"name": f["name"], "state": f["state"], "error": f["error"]} for f in summary.failures],
        "new_landslides": len(changes.new_ids),
        "updated_landslides": len(changes.updated_ids),
        "no_longer_seen": len(changes.no_longer_seen_ids),
        "newly_observed_km2": changes.newly_observed_m2 / 1e6,
        "new_landslide_ids": changes.new_ids,  # styled as "new in the latest pass" on the map
    }


def owed_refresh(region_dir: Path) -> list[dict[str, Any]] | None:
    """The pass list staged by a refresh that never finished (the pass was killed), else None.
    Its deliveries are already in the inventory, so the next pass refreshes even with nothing new."""
    leftovers = sorted(region_dir.glob(f"{STAGING_PREFIX}*"))
    if not leftovers:
        return None
    for folder in reversed(leftovers):  # the newest readable one
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return list(json.loads((folder / PASSES_FILE).read_text())["passes"])
    return read_passes(region_dir / PASSES_FILE)  # killed before its pass list was staged


def read_passes(path: Path) -> list[dict[str, Any]]:
    """The pass list so far ([] before the first pass). An unreadable file is kept aside, not lost."""
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text())["passes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        aside = path.with_name(f"{path.name}.unreadable-{new_run_id()}")
        log.warning("%s: unreadable pass list (%s); moved to %s, starting a new one", path, exc, aside)
        os.replace(path, aside)
        return []


def refresh_region_products(settings: OperationsSettings, passes: list[dict[str, Any]], run_id: str) -> list[Path]:
    """Rewrite ``REGION_PRODUCTS`` from the inventory: statistics of its standing landslides over
    the union of the observed footprints, frequency–area plot, GeoJSON/KML exports, the pass list
    and report.html. Everything is built in ``.refresh-<run>/`` first and moved in only when all
    of it is complete, so a pass killed while refreshing leaves the previous set untouched (the
    next pass deletes the leftover folder). Returns the refreshed paths."""
    from lsmap.export import export_region
    from lsmap.inventory import LAYER_CURRENT, LAYER_FOOTPRINTS, LAYER_OBSERVATIONS, read_inventory
    from lsmap.report import build_region_report
    from lsmap.stats import plot_frequency_area

    region_dir = settings.region_dir
    for leftover in region_dir.glob(f"{STAGING_PREFIX}*"):  # a pass killed mid-refresh
        shutil.rmtree(leftover, ignore_errors=True)
    staging = region_dir / f"{STAGING_PREFIX}{run_id}"
    staging.mkdir(parents=True)
    try:
        # First: the pass list, which also marks the refresh as owed should this pass be killed.
        with atomic_output(staging / PASSES_FILE) as tmp:
            tmp.write_text(json.dumps({"region": settings.region, "passes": passes}, indent=1) + "\n")
        layers = read_inventory(settings.inventory)
        stats = inventory_region_stats(settings, layers[LAYER_CURRENT], layers[LAYER_FOOTPRINTS], layers[LAYER_OBSERVATIONS])
        del layers
        edges, counts = stats["frequency_area"]["bin_edges_m2"], stats["frequency_area"]["counts"]
        (staging / "stats.json").write_text(json.dumps(stats, indent=2))
        (staging / "stats.csv").write_text(stats_csv(stats))
        summary = stats["summary"]
        plot_frequency_area(edges, counts, staging / "frequency_area.png",
                            f"{settings.region}: {summary['landslide_count']} landslides, {summary['landslide_area_km2']:.3f} km²")
        export_region(settings.inventory, staging / "landslides.geojson", staging / "landslides.kml",
                      name=f"lsmap landslides: {settings.region}")
        scenes = list(stats["scenes"])
        existing = lambda name: {s: region_dir / s / name for s in scenes if (region_dir / s / name).exists()}  # noqa: E731
        build_region_report(staging / "stats.json", staging / "report.html", frequency_area_png=staging / "frequency_area.png",
                            landslides_geojson=staging / "landslides.geojson", quicklooks=existing("quicklook.png"),
                            scene_rasters=existing("mask.tif"), backgrounds=existing("quicklook.tif"), passes=passes,
                            description=f"cumulative inventory, {len(passes)} scheduled pass(es)")
        refreshed = []
        for name in REGION_PRODUCTS:  # every file complete: swap them in (renames, the page last)
            os.replace(staging / name, region_dir / name)
            refreshed.append(region_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return refreshed


def inventory_region_stats(settings: OperationsSettings, current, footprints, observations) -> dict[str, Any]:
    """stats.json (the contract of lsmap.mapping.summarize_region) of the cumulative inventory:
    its standing landslides, observed = union of the footprints, unobserved = union of the scene
    extents (their mask.tif) minus observed, on the inventory's projected CRS (areas in m²)."""
    import shapely

    from lsmap.stats import frequency_area, summarize

    crs = current.crs
    extents = {s: mask_extent(settings.region_dir / s / "mask.tif", crs) for s in footprints["scene_id"]
               if (settings.region_dir / s / "mask.tif").exists()}
    observed = shapely.union_all(footprints.geometry.to_numpy()) if len(footprints) else shapely.Polygon()
    extent = shapely.union_all([observed, *extents.values()])
    scenes = {}
    for row in footprints.sort_values(["acquired", "scene_id"]).itertuples():
        areas = observations.loc[observations["scene_id"] == row.scene_id].geometry.area.to_numpy()
        seen = row.geometry.area
        scene_extent = extents.get(row.scene_id)
        scenes[row.scene_id] = summarize(areas, seen, max(0.0, scene_extent.area - seen) if scene_extent is not None else 0.0)
    areas = current["area_m2"].to_numpy(dtype=float)
    edges, counts = frequency_area(areas)
    return {
        "region": settings.region,
        "provenance": inventory_provenance(settings, footprints),
        "area_crs": crs.to_string(),
        "overlap_rule": "cumulative inventory (lsmap.inventory): one landslide per overlapping chain of observations, the newest clear view stands",
        "summary": summarize(areas, observed.area, max(0.0, extent.area - observed.area)),
        "scenes": scenes,
        "frequency_area": {"bin_edges_m2": edges, "counts": counts},
        "inventory": str(settings.inventory),
    }


def mask_extent(mask: Path, crs):
    """A scene raster's full extent on ``crs`` (edges densified before reprojecting). As
    lsmap.mapping.raster_extent, which cannot be imported here cheaply: lsmap.mapping imports torch
    (20 s and 500 MB for a pass that only refreshes products)."""
    import geopandas as gpd
    import rasterio
    import shapely

    with rasterio.open(mask) as src:
        bounds = src.bounds
        crs_of_mask = src.crs
    outline = shapely.segmentize(shapely.box(*bounds), max(bounds.right - bounds.left, bounds.top - bounds.bottom) / 64)
    return gpd.GeoSeries([outline], crs=crs_of_mask).to_crs(crs).iloc[0]


def inventory_provenance(settings: OperationsSettings, footprints) -> dict[str, Any]:
    """Model and configuration from the scenes' scene_stats.json (written by map_scene), the
    scenes with their acquisition dates from the inventory."""
    import lsmap

    mapped = []
    for scene_id in footprints["scene_id"]:
        path = settings.region_dir / scene_id / "scene_stats.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            mapped.append(json.loads(path.read_text())["provenance"])
    first = mapped[0] if mapped else {}
    provenance = {
        "lsmap_version": lsmap.__version__,
        "checkpoint": first.get("checkpoint", str(settings.checkpoint)),
        "checkpoint_sha256": first.get("checkpoint_sha256", ""),
        "config_sha256": first.get("config_sha256", ""),
        "scenes": [{"scene_id": row.scene_id, "acquired": row.acquired,
                    "image": str(settings.region_dir / row.scene_id / "ard" / "reflectance.tif")}
                   for row in footprints.sort_values(["acquired", "scene_id"]).itertuples()],
        "created_utc": utc_now(),
    }
    distinct = sorted({p.get("checkpoint_sha256", "") for p in mapped} - {""})
    if len(distinct) > 1:
        provenance["checkpoint_sha256_all"] = distinct
    return provenance


def stats_csv(stats: dict[str, Any]) -> str:
    """stats.csv: one row per scene and one for the region, the summary keys (as summarize_region)."""
    from lsmap.stats import SUMMARY_KEYS

    lines = [",".join(["level", "id"] + SUMMARY_KEYS)]
    rows = [("scene", k, v) for k, v in stats["scenes"].items()] + [("region", stats["region"], stats["summary"])]
    lines += [",".join([level, key] + [f"{values[k]:.6g}" for k in SUMMARY_KEYS]) for level, key, values in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- CLI


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config.yaml", help="workflow configuration with an `operations` section (default: config.yaml)")
    parser.add_argument("--inbox", help="override operations.inbox")
    parser.add_argument("--region", help="override operations.region")
    parser.add_argument("--status", action="store_true", help="print the ledger (one line per delivery) and exit")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1), help="CPU threads for preprocessing and inference")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress of every stage")


def print_status(settings: OperationsSettings) -> None:
    if not settings.ledger.exists():
        print(f"{settings.ledger}: no ledger yet (no scheduled run has recorded anything)")
        return
    with Ledger(settings.ledger) as ledger:
        records = ledger.records()
        print(f"{settings.ledger}: {len(records)} deliveries")
        for r in records:
            error = f"  {r.error}" if r.error else ""
            print(f"{r.state:<12} {r.attempts:>2}  {r.arrival}  {r.name}{error}")


def _raise_on_sigterm(signum, frame):  # noqa: ARG001
    # systemd stops the unit and `timeout` ends the run with SIGTERM: unwind through atomic_output
    # (no partial files); the delivery stays 'processing' and the next run resumes it.
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> int:
    from lsmap.config import load_config

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    settings = OperationsSettings.from_config(config, inbox=args.inbox, region=args.region)
    if args.status:
        print_status(settings)
        return EXIT_OK
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        summary = run_scheduled(config, settings=settings, threads=args.threads)
    except RunLocked as exc:
        print(f"lsmap scheduled-run: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    return summary.exit_status
