"""Scheduled runs: each delivery mapped once, failures quarantined, runs idempotent and exclusive.

The first tests replace the per-delivery work by a small fake (folders with a ``meta.json`` that
say what the "mapping" finds) to check the ledger, lock, quarantine and idempotency logic quickly;
``test_end_to_end_*`` drives the real chain (lsmap.gf6 -> lsmap.preprocess -> lsmap.mapping) on
generated GF-6 deliveries.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import yaml
from rasterio.transform import from_origin
from shapely.geometry import box

from lsmap.config import validate_config
from lsmap.errors import LsmapError
from lsmap.inventory import LAYER_CURRENT, LAYER_HISTORY, read_inventory
from lsmap.ledger import Ledger
from lsmap.scheduled import (
    EXIT_LOCKED,
    OperationsSettings,
    RunLocked,
    SceneIdentity,
    run_lock,
    run_scheduled,
    scan_inbox,
    scene_id_for,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
UTM = "EPSG:32648"
X0, Y0 = 400_000.0, 3_300_000.0


def make_config(tmp_path: Path, **operations) -> dict:
    """A validated configuration whose deployment watches tmp_path/inbox for region 'quake'."""
    (tmp_path / "inbox").mkdir(exist_ok=True)
    config = {
        "results_dir": str(tmp_path / "results"),
        "regions": {"quake": {"dem": str(tmp_path / "dem.tif"), "scenes": {"placeholder": {}}}},
        "mapping": {"checkpoint": str(tmp_path / "model.pt")},
        "model": {"name": "fcn"},
        "training": {"dataset": str(tmp_path / "dataset")},
        "operations": {"region": "quake", "inbox": str(tmp_path / "inbox"), "settle_seconds": 0, **operations},
    }
    return validate_config(config, "test config")


# ------------------------------------------------------------------------------ a fake processor


def fake_delivery(inbox: Path, name: str, *, acquired: str, boxes=(), footprint=(0, 0, 3000, 2000), explode: int = 0) -> Path:
    """A folder delivery whose 'mapping' finds ``boxes`` (metres from X0, Y0) inside ``footprint``."""
    folder = inbox / name
    folder.mkdir(parents=True)
    meta = {"product_id": name[-4:], "acquired": acquired, "boxes": list(boxes), "footprint": footprint, "explode": explode}
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / f"{name}-PAN.tiff").write_bytes(os.urandom(2048))  # distinct bytes per delivery
    return folder


class FakeProcessor:
    """identify: meta.json must exist (else the 'missing .rpb' LsmapError); process: write the
    mask (observed inside the footprint) and the polygons the meta names."""

    def __init__(self, settings: OperationsSettings):
        self.settings = settings
        self.processed: list[str] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def identify(self, delivery: Path) -> SceneIdentity:
        meta = delivery / "meta.json"
        if not meta.exists():
            raise LsmapError(f"{delivery / 'X-PAN.rpb'}: RPC file is missing from the delivery")
        data = json.loads(meta.read_text())
        return SceneIdentity(data["product_id"], scene_id_for(delivery.name), data["acquired"], delivery)

    def process(self, delivery: Path, identity: SceneIdentity) -> dict[str, Path]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        meta = json.loads((delivery / "meta.json").read_text())
        attempts_file = self.settings.results_dir / "fake-attempts" / delivery.name  # not in the delivery: its bytes stay put
        attempts_file.parent.mkdir(parents=True, exist_ok=True)
        attempts = int(attempts_file.read_text()) + 1 if attempts_file.exists() else 1
        attempts_file.write_text(str(attempts))
        if attempts <= meta["explode"]:
            raise RuntimeError("CUDA out of memory")
        self.processed.append(delivery.name)
        out = self.settings.region_dir / identity.scene_id
        out.mkdir(parents=True, exist_ok=True)
        mask = np.full((100, 150), 255, np.uint8)  # 20 m pixels over x 0..3000, y 0..2000; 255 = not observed
        x0, y0, x1, y1 = (int(v / 20) for v in meta["footprint"])
        mask[100 - y1 : 100 - y0, x0:x1] = 0
        profile = dict(driver="GTiff", width=150, height=100, count=1, dtype="uint8", crs=UTM,
                       transform=from_origin(X0, Y0 + 2000, 20, 20), nodata=255)
        with rasterio.open(out / "mask.tif", "w", **profile) as dst:
            dst.write(mask, 1)
        geoms = [box(X0 + a, Y0 + b, X0 + c, Y0 + d) for a, b, c, d in meta["boxes"]]
        frame = gpd.GeoDataFrame({"id": np.arange(1, len(geoms) + 1, dtype=np.int64), "area_m2": [g.area for g in geoms],
                                  "prob_mean": 0.8, "prob_max": 0.9}, geometry=geoms, crs=UTM)
        frame.to_file(out / "landslides.gpkg", layer="landslides", driver="GPKG")
        return {"mask": out / "mask.tif", "polygons": out / "landslides.gpkg"}  # no footprint layer: read from the mask


def run(config, processor=None, **kwargs):
    settings = OperationsSettings.from_config(config)
    processor = processor or FakeProcessor(settings)
    return run_scheduled(config, settings=settings, processor=processor, echo=lambda _line: None, **kwargs), processor


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime (ns)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def ledger_rows(config) -> list[tuple]:
    with Ledger(OperationsSettings.from_config(config).ledger) as ledger:
        return [(r.name, r.state, r.checksum, r.attempts, r.error, json.dumps(r.outputs)) for r in ledger.records()]


# ------------------------------------------------------------------------------------- the tests


def test_new_deliveries_are_mapped_and_a_second_run_changes_nothing(tmp_path):
    config = make_config(tmp_path)
    inbox = tmp_path / "inbox"
    fake_delivery(inbox, "GF6_A_L1A0001", acquired="2022-09-07T03:30:00Z", boxes=[(1200, 500, 1300, 700), (100, 100, 200, 200)])
    fake_delivery(inbox, "GF6_B_L1A0002", acquired="2022-09-10T03:30:00Z", boxes=[(1206, 500, 1306, 760)], footprint=(1000, 0, 3000, 2000))

    summary, processor = run(config)
    assert sorted(processor.processed) == ["GF6_A_L1A0001", "GF6_B_L1A0002"]
    assert [s.scene_id for s in summary.new_scenes] == ["GF6_A_L1A0001", "GF6_B_L1A0002"]
    assert summary.failures == [] and summary.exit_status == 0
    # the scar seen by both acquisitions is one landslide: 2 in the inventory, not 3
    inventory = read_inventory(tmp_path / "results/quake/inventory.gpkg")
    assert len(inventory[LAYER_CURRENT]) == 2 and summary.inventory_landslides == 2
    assert summary.new_landslides == 2
    assert summary.area_added_m2 == pytest.approx(100 * 260 + 100 * 100)
    report = json.loads(Path(summary.summary_json).read_text())
    assert report["new_landslides"] == 2 and len(report["new_scenes"]) == 2
    assert "new landslides in the inventory: **2**" in Path(summary.summary_markdown).read_text()
    assert [r[1] for r in ledger_rows(config)] == ["done", "done"]

    files, rows = snapshot(tmp_path), ledger_rows(config)
    operations = tmp_path / "results/quake/operations"
    folder_mtime = operations.stat().st_mtime_ns
    time.sleep(0.05)  # mtimes would differ if anything were rewritten
    second, processor2 = run(config)
    assert second.nothing_to_do and processor2.processed == []
    assert snapshot(tmp_path) == files  # the lock file included: a no-op pass writes nothing
    assert operations.stat().st_mtime_ns == folder_mtime  # no file created or removed there either
    assert ledger_rows(config) == rows


def test_a_corrupt_delivery_is_quarantined_while_a_good_one_is_mapped(tmp_path):
    config = make_config(tmp_path)
    inbox = tmp_path / "inbox"
    bad = inbox / "GF6_BAD_L1A0009"
    bad.mkdir()
    (bad / "GF6_BAD-PAN.tiff").write_bytes(b"II*\x00 truncated")
    (inbox / "GF6_BAD_L1A0009.done").touch()
    fake_delivery(inbox, "GF6_OK_L1A0001", acquired="2022-09-07", boxes=[(100, 100, 200, 200)])

    summary, processor = run(config)
    assert processor.processed == ["GF6_OK_L1A0001"]
    assert summary.exit_status == 1
    (failure,) = summary.failures
    assert failure["state"] == "quarantined" and "X-PAN.rpb: RPC file is missing" in failure["error"]
    quarantine = tmp_path / "results/quake/operations/quarantine"
    assert (quarantine / "GF6_BAD_L1A0009" / "GF6_BAD-PAN.tiff").exists() and not bad.exists()
    assert (quarantine / "GF6_BAD_L1A0009.done").exists()
    assert "RPC file is missing" in (quarantine / "GF6_BAD_L1A0009.error.txt").read_text()
    states = {r[0]: (r[1], r[4]) for r in ledger_rows(config)}
    assert states["GF6_OK_L1A0001"] == ("done", None)
    assert states["GF6_BAD_L1A0009"][0] == "quarantined" and "X-PAN.rpb" in states["GF6_BAD_L1A0009"][1]
    assert run(config)[0].nothing_to_do  # the quarantined delivery does not come back by itself


def test_a_delivery_put_back_from_quarantine_is_retried(tmp_path):
    config = make_config(tmp_path)
    inbox = tmp_path / "inbox"
    (inbox / "GF6_C_L1A0003").mkdir()
    (inbox / "GF6_C_L1A0003" / "GF6_C-PAN.tiff").write_bytes(b"partial")
    run(config)
    quarantined = tmp_path / "results/quake/operations/quarantine/GF6_C_L1A0003"
    quarantined.rename(inbox / "GF6_C_L1A0003")  # the operator fixed it and put it back
    (inbox / "GF6_C_L1A0003" / "meta.json").write_text(json.dumps(
        {"product_id": "0003", "acquired": "2022-09-08", "boxes": [[10, 10, 60, 60]], "footprint": [0, 0, 3000, 2000], "explode": 0}))
    summary, processor = run(config)
    assert processor.processed == ["GF6_C_L1A0003"] and summary.failures == []
    assert ledger_rows(config)[0][1] == "done"


def test_unexpected_errors_are_retried_on_later_runs_then_quarantined(tmp_path):
    config = make_config(tmp_path, max_attempts=2)
    inbox = tmp_path / "inbox"
    fake_delivery(inbox, "GF6_FLAKY_L1A0001", acquired="2022-09-07", boxes=[(100, 100, 200, 200)], explode=1)
    fake_delivery(inbox, "GF6_BROKEN_L1A0002", acquired="2022-09-07", explode=5)

    first, _ = run(config)
    assert {f["name"]: f["state"] for f in first.failures} == {"GF6_FLAKY_L1A0001": "failed", "GF6_BROKEN_L1A0002": "failed"}
    assert all("RuntimeError: CUDA out of memory" == f["error"] for f in first.failures)
    second, processor = run(config)
    assert processor.processed == ["GF6_FLAKY_L1A0001"]
    assert [(f["name"], f["state"]) for f in second.failures] == [("GF6_BROKEN_L1A0002", "quarantined")]
    assert "gave up after 2 attempts" in second.failures[0]["error"]
    assert {r[0]: (r[1], r[3]) for r in ledger_rows(config)} == {"GF6_FLAKY_L1A0001": ("done", 2), "GF6_BROKEN_L1A0002": ("quarantined", 2)}
    assert run(config)[0].nothing_to_do


def test_a_broken_inventory_stops_the_run_without_quarantining_good_deliveries(tmp_path):
    config = make_config(tmp_path)
    inbox = tmp_path / "inbox"
    fake_delivery(inbox, "GF6_A_L1A0001", acquired="2022-09-07", boxes=[(100, 100, 200, 200)])
    fake_delivery(inbox, "GF6_B_L1A0002", acquired="2022-09-08", boxes=[(300, 100, 400, 200)], footprint=(260, 0, 3000, 2000))
    inventory = tmp_path / "results/quake/inventory.gpkg"
    inventory.parent.mkdir(parents=True)
    inventory.write_bytes(b"not a geopackage")
    with pytest.raises(LsmapError, match="inventory.gpkg: cannot read the inventory"):
        run(config)
    assert [(r[0], r[1]) for r in ledger_rows(config)] == [("GF6_A_L1A0001", "failed"), ("GF6_B_L1A0002", "discovered")]
    assert (inbox / "GF6_A_L1A0001").is_dir()
    inventory.unlink()  # the operator repairs it; the next run catches up
    summary, processor = run(config)
    assert sorted(processor.processed) == ["GF6_A_L1A0001", "GF6_B_L1A0002"] and summary.inventory_landslides == 2


def test_a_delivery_still_being_copied_is_not_taken(tmp_path):
    config = make_config(tmp_path, settle_seconds=3600)
    inbox = tmp_path / "inbox"
    fake_delivery(inbox, "GF6_FRESH_L1A0001", acquired="2022-09-07")
    (inbox / ".GF6_RSYNC_L1A0002.tar.gz.x7Yh2").write_bytes(b"rsync temp")  # hidden: in progress
    (inbox / "GF6_HALF_L1A0003.tar.gz.part").write_bytes(b"half")
    (inbox / "dem.tif").write_bytes(b"not a delivery")

    summary, processor = run(config)
    assert summary.nothing_to_do and processor.processed == []
    assert [w["name"] for w in summary.waiting] == ["GF6_FRESH_L1A0001"]
    assert ledger_rows(config) == []  # nothing recorded until complete

    (inbox / "GF6_FRESH_L1A0001.done").touch()  # the sender says it is complete
    summary, processor = run(config)
    assert processor.processed == ["GF6_FRESH_L1A0001"]


def test_settle_time_uses_the_newest_change_of_any_file(tmp_path):
    inbox = tmp_path / "inbox"
    folder = fake_delivery(inbox, "GF6_X_L1A0001", acquired="2022-09-07")
    old = time.time() - 7200
    for f in folder.iterdir():
        os.utime(f, (old, old))  # mtimes preserved by the copy tool (cp -p, rsync -t) ...
    (entry,) = scan_inbox(inbox, settle_seconds=600, require_done_marker=False)
    assert not entry.ready  # ... but ctime shows the files just arrived
    (entry,) = scan_inbox(inbox, settle_seconds=600, require_done_marker=False, now=time.time() + 601)
    assert entry.ready
    (entry,) = scan_inbox(inbox, settle_seconds=0, require_done_marker=True)
    assert not entry.ready and "GF6_X_L1A0001.done" in entry.reason


def test_identical_bytes_under_another_name_are_not_mapped_twice(tmp_path):
    config = make_config(tmp_path)
    inbox = tmp_path / "inbox"
    original = fake_delivery(inbox, "GF6_A_L1A0001", acquired="2022-09-07", boxes=[(100, 100, 200, 200)])
    copy = inbox / "GF6_A_L1A0001_copy"
    copy.mkdir()
    for f in original.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    summary, processor = run(config)
    assert processor.processed == ["GF6_A_L1A0001"]
    assert summary.duplicates == [{"name": "GF6_A_L1A0001_copy", "same_as": "GF6_A_L1A0001"}]


def test_a_redelivery_with_new_bytes_replaces_the_scene_in_the_inventory(tmp_path):
    config = make_config(tmp_path)
    inbox = tmp_path / "inbox"
    folder = fake_delivery(inbox, "GF6_A_L1A0001", acquired="2022-09-07", boxes=[(100, 100, 200, 200)])
    run(config)
    meta = json.loads((folder / "meta.json").read_text())
    meta["boxes"] = [[100, 100, 200, 300]]  # the reprocessed delivery maps the scar larger
    (folder / "meta.json").write_text(json.dumps(meta))
    summary, processor = run(config)
    assert processor.processed == ["GF6_A_L1A0001"]
    current = read_inventory(tmp_path / "results/quake/inventory.gpkg")[LAYER_CURRENT]
    assert len(current) == 1 and current["area_m2"].iloc[0] == pytest.approx(100 * 200)
    assert summary.area_added_m2 == pytest.approx(100 * 100)


def test_a_second_run_while_one_holds_the_lock_exits_cleanly(tmp_path):
    config = make_config(tmp_path)
    fake_delivery(tmp_path / "inbox", "GF6_A_L1A0001", acquired="2022-09-07", boxes=[(100, 100, 200, 200)])
    settings = OperationsSettings.from_config(config)
    processor = FakeProcessor(settings)
    processor.gate = threading.Event()
    first = threading.Thread(target=run_scheduled, kwargs=dict(config=config, settings=settings, processor=processor, echo=lambda _l: None))
    first.start()
    try:
        assert processor.entered.wait(30)  # the first run is inside a delivery
        with pytest.raises(RunLocked, match=r"another scheduled run holds the lock \(pid \d+"):
            run(config)
        config_file = tmp_path / "config.yaml"
        config_file.write_text(yaml.safe_dump(config))
        cli = subprocess.run([sys.executable, "-m", "lsmap.cli", "scheduled-run", "--config", str(config_file)],
                             capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
        assert cli.returncode == EXIT_LOCKED
        (line,) = cli.stderr.strip().splitlines()
        assert line.startswith("lsmap scheduled-run: ") and "another scheduled run holds the lock" in line
    finally:
        processor.gate.set()
        first.join(30)
    assert processor.processed == ["GF6_A_L1A0001"]
    assert [r[1] for r in ledger_rows(config)] == ["done"]


KILLABLE_RUN = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_scheduled import FakeProcessor
from lsmap.config import validate_config
from lsmap.scheduled import OperationsSettings, run_scheduled

config = validate_config(json.loads(Path({config!r}).read_text()))
settings = OperationsSettings.from_config(config)

class Stalls(FakeProcessor):
    def process(self, delivery, identity):
        Path({started!r}).touch()
        time.sleep(120)

run_scheduled(config, settings=settings, processor=Stalls(settings))
"""


def test_a_killed_run_is_resumed_by_the_next_one(tmp_path):
    config = make_config(tmp_path)
    fake_delivery(tmp_path / "inbox", "GF6_A_L1A0001", acquired="2022-09-07", boxes=[(100, 100, 200, 200)])
    (tmp_path / "config.json").write_text(json.dumps(config))
    script = tmp_path / "killable.py"
    started = tmp_path / "started"
    script.write_text(KILLABLE_RUN.format(tests=str(Path(__file__).parent), config=str(tmp_path / "config.json"), started=str(started)))
    victim = subprocess.Popen([sys.executable, str(script)], cwd=PROJECT_ROOT)
    try:
        deadline = time.time() + 90
        while not started.exists() and victim.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert started.exists(), "the run to kill never reached its delivery"
        assert ledger_rows(config)[0][1] == "processing"
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)

    summary, processor = run(config)  # the kernel released the flock with the dead process
    assert summary.recovered == ["GF6_A_L1A0001"]
    assert processor.processed == ["GF6_A_L1A0001"]
    (row,) = ledger_rows(config)
    assert (row[1], row[3]) == ("done", 2)
    assert len(read_inventory(tmp_path / "results/quake/inventory.gpkg")[LAYER_CURRENT]) == 1


def test_the_lock_is_exclusive_and_released_on_exit(tmp_path):
    path = tmp_path / "run.lock"
    with run_lock(path):
        with pytest.raises(RunLocked):
            with run_lock(path):
                pass
    with run_lock(path):  # released
        pass


def test_settings_default_to_the_region_folders_and_name_bad_regions(tmp_path):
    config = make_config(tmp_path)
    settings = OperationsSettings.from_config(config)
    assert settings.ledger == tmp_path / "results/quake/operations/ledger.sqlite"
    assert settings.inventory == tmp_path / "results/quake/inventory.gpkg"
    assert settings.dem == tmp_path / "dem.tif" and settings.checkpoint == tmp_path / "model.pt"
    with pytest.raises(LsmapError, match="operations.region 'nowhere' is not one of regions: quake"):
        OperationsSettings.from_config(config, region="nowhere")
    missing_inbox = make_config(tmp_path, inbox=str(tmp_path / "no-such-inbox"))
    with pytest.raises(LsmapError, match="no-such-inbox: inbox folder not found"):
        run(missing_inbox)


# --------------------------------------------------------------------------- the real chain, end to end


def constant_checkpoint(path: Path, logit: float = 3.0) -> Path:
    """A resnet18 FCN whose output is ``logit`` everywhere (p = 0.95): every observed pixel is
    mapped as landslide, so each scene's polygons are exactly its footprint - a known answer for
    the plumbing (a trained model is not needed to check what the scheduled run does with maps)."""
    import torch

    from lsmap.checkpoint import Checkpoint, InputSpec, save_checkpoint
    from lsmap.models import build_model

    kwargs = {"in_channels": 4, "num_classes": 1, "backbone": "resnet18"}
    model = build_model("fcn", pretrained="none", **kwargs)
    state = model.state_dict()
    for name in ("up32to16.weight", "up16to8.weight", "score8.weight"):
        state[name] = torch.zeros_like(state[name])  # drop every image-dependent term ...
    state["score8.bias"] = torch.full_like(state["score8.bias"], logit)  # ... keep a constant logit
    spec = InputSpec(["blue", "green", "red", "nir"], [800.0, 900.0, 800.0, 2500.0], [400.0, 400.0, 400.0, 800.0], 128)
    return save_checkpoint(Checkpoint("fcn", kwargs, state, spec), path)


def synthetic_inbox(tmp_path: Path) -> tuple[Path, Path]:
    """Two overlapping GF-6 acquisitions of one landscape (a folder and a .tar.gz, 3 days apart)
    and a third delivery whose MUX .rpb is missing. Returns (inbox, DEM)."""
    from datetime import datetime, timezone

    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    from lsmap.gf6 import write_synthetic_delivery
    from lsmap.synthetic import generate_landscape

    land = generate_landscape(tmp_path / "landscape", seed=5, size_px=448, rotation_deg=0.0)
    with rasterio.open(land.reflectance) as src:
        reflectance, transform, crs = src.read().astype(np.float32) / 1e4, src.transform, src.crs
    with rasterio.open(land.dem) as src:
        dem, dem_transform = src.read(1).astype(np.float64), src.transform
    inbox = tmp_path / "inbox"
    n = 256  # 512 m scenes; the DEM (the whole landscape) covers their parallax margins
    for name, (row, col), day, archive in (
        ("GF6_PMS_E102.1_N33.4_20220907_L1A0001", (64, 64), 7, False),
        ("GF6_PMS_E102.1_N33.4_20220910_L1A0002", (128, 128), 10, True),
        ("GF6_PMS_E102.2_N33.4_20220910_L1A0003", (96, 96), 10, False),
    ):
        window = Window(col, row, n, n)
        target = inbox if archive else inbox / name
        write_synthetic_delivery(
            target, reflectance[:, row : row + n, col : col + n], window_transform(window, transform), crs, dem,
            dem_transform=dem_transform, name=name, acquired=datetime(2022, 9, day, 3, 30, tzinfo=timezone.utc), archive=archive,
        )
    (inbox / "GF6_PMS_E102.2_N33.4_20220910_L1A0003" / "GF6_PMS_E102.2_N33.4_20220910_L1A0003-MUX.rpb").unlink()
    return inbox, land.dem


def test_end_to_end_deliveries_are_mapped_once_and_a_shared_landslide_counted_once(tmp_path):
    inbox, dem = synthetic_inbox(tmp_path)
    config = make_config(tmp_path)
    config["regions"]["quake"]["dem"] = str(dem)
    config["mapping"].update(checkpoint=str(constant_checkpoint(tmp_path / "model.pt")), tile_size=128, overlap_px=16,
                             chunk_px=256, batch_size=4, device="cpu", precision="fp32", min_area_m2=100.0)
    settings = OperationsSettings.from_config(config)

    summary = run_scheduled(config, settings=settings, threads=2, echo=lambda _l: None)

    a, b, bad = "GF6_PMS_E102.1_N33.4_20220907_L1A0001", "GF6_PMS_E102.1_N33.4_20220910_L1A0002", "GF6_PMS_E102.2_N33.4_20220910_L1A0003"
    assert [s.scene_id for s in summary.new_scenes] == [a, b]
    assert [s.product_id for s in summary.new_scenes] == ["0001", "0002"]
    assert [s.acquired for s in summary.new_scenes] == ["2022-09-07T03:30:00Z", "2022-09-10T03:30:00Z"]
    for scene in (a, b):
        folder = settings.region_dir / scene
        for name in ("ard/reflectance.tif", "probability.tif", "mask.tif", "landslides.gpkg"):
            assert (folder / name).is_file(), f"{scene}/{name} missing"
        assert len(gpd.read_file(folder / "landslides.gpkg", layer="landslides")) >= 1
    assert not any(settings.work_dir.glob("*/*")), "extracted archive left behind"
    (failure,) = summary.failures
    assert failure["name"] == bad and failure["state"] == "quarantined"
    assert f"{bad}-MUX.rpb: RPC file is missing from the delivery" in failure["error"]
    assert (settings.quarantine_dir / bad).is_dir() and not (inbox / bad).exists()

    # Both scenes mapped the shared ground as landslide; the inventory holds it once, from the newer scene.
    layers = read_inventory(settings.inventory)
    current, history = layers[LAYER_CURRENT], layers[LAYER_HISTORY]
    assert len(current) == 1
    assert current.iloc[0]["scene_id"] == b and current.iloc[0]["first_scene_id"] == a
    assert current.iloc[0]["n_observations"] == 2
    assert history["status"].tolist() == ["superseded"] * len(history) and set(history["scene_id"]) == {a}
    assert summary.inventory_landslides == 1 and summary.new_landslides == 1
    b_polygons = gpd.read_file(settings.region_dir / b / "landslides.gpkg", layer="landslides").to_crs(current.crs)
    assert current.iloc[0]["area_m2"] == pytest.approx(b_polygons.geometry.area.sum(), rel=1e-6)

    files, rows = snapshot(tmp_path / "results"), ledger_rows(config)
    second = run_scheduled(config, settings=settings, threads=2, echo=lambda _l: None)
    assert second.nothing_to_do
    assert ledger_rows(config) == rows
    lock = "quake/operations/ledger.sqlite.lock"
    assert {k: v for k, v in snapshot(tmp_path / "results").items() if k != lock} == {k: v for k, v in files.items() if k != lock}


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="Linux lock table")
def test_lock_holder_is_named_from_the_kernel_lock_table_without_writing_the_lock_file(tmp_path):
    """The loser of a lock race used to read an empty file ("unknown holder"): the holder's pid now
    comes from /proc/locks, so it is there from the instant the flock is taken."""
    import fcntl

    from lsmap.scheduled import lock_holder, run_lock

    lock = tmp_path / "ledger.sqlite.lock"
    with run_lock(lock):
        fd = os.open(lock, os.O_RDONLY)
        try:
            with pytest.raises(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert lock_holder(fd) == f"pid {os.getpid()}"
        finally:
            os.close(fd)
    assert lock.stat().st_size == 0
    fd = os.open(lock, os.O_RDONLY)
    try:
        assert lock_holder(fd) == "holder gone since"  # released: no FLOCK line for this inode
    finally:
        os.close(fd)


# ------------------------------------------------------------------- region products after a pass

REGION_PRODUCTS = ("stats.json", "stats.csv", "frequency_area.png", "landslides.geojson", "landslides.kml", "passes.json", "report.html")


def embedded_json(html: str, element_id: str):
    import re

    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


def test_each_pass_refreshes_the_region_products_and_records_what_changed(tmp_path):
    config = make_config(tmp_path)
    inbox, region = tmp_path / "inbox", tmp_path / "results/quake"
    # Pass 1: A observes x 0..2000 m (4 km² of the 6 km² scene grid) and maps two landslides.
    fake_delivery(inbox, "GF6_A_L1A0001", acquired="2022-09-07T03:30:00Z", boxes=[(100, 100, 200, 200), (1200, 500, 1300, 700)],
                  footprint=(0, 0, 2000, 2000))
    first, _ = run(config)
    assert first.refreshed == [str(region / name) for name in REGION_PRODUCTS]
    stats = json.loads((region / "stats.json").read_text())
    assert stats["summary"]["landslide_count"] == 2
    assert stats["summary"]["landslide_area_km2"] == pytest.approx((100 * 100 + 100 * 200) / 1e6)
    assert stats["summary"]["observed_area_km2"] == pytest.approx(4.0)
    assert stats["summary"]["unobserved_area_km2"] == pytest.approx(2.0)  # the rest of the scene's grid
    assert stats["provenance"]["scenes"] == [{"scene_id": "GF6_A_L1A0001", "acquired": "2022-09-07T03:30:00",
                                             "image": str(region / "GF6_A_L1A0001/ard/reflectance.tif")}]
    assert (region / "stats.csv").read_text().splitlines()[-1].startswith("region,quake,2,0.03,4,2,")
    assert len(json.loads((region / "landslides.geojson").read_text())["features"]) == 2
    markdown = Path(first.summary_markdown).read_text()
    assert "## Region products refreshed" in markdown and f"- `{region / 'report.html'}`" in markdown

    # Pass 2: B (newer) observes x 1000..3000: re-maps the landslide at x 1200 (updated), finds a new
    # one at x 2500, and adds 2 km² never observed before.
    fake_delivery(inbox, "GF6_B_L1A0002", acquired="2022-09-10T03:30:00Z", boxes=[(1206, 500, 1306, 760), (2500, 100, 2600, 200)],
                  footprint=(1000, 0, 3000, 2000))
    second, _ = run(config)
    assert (second.new_landslides, second.updated_landslides, second.no_longer_seen) == (1, 1, 0)
    assert second.newly_observed_km2 == pytest.approx(2.0)
    stats = json.loads((region / "stats.json").read_text())
    assert stats["summary"]["landslide_count"] == 3 and stats["summary"]["observed_area_km2"] == pytest.approx(6.0)
    assert stats["summary"]["unobserved_area_km2"] == pytest.approx(0.0, abs=1e-9)
    assert list(stats["scenes"]) == ["GF6_A_L1A0001", "GF6_B_L1A0002"]

    # Pass 3: C (newest) sees the landslide at x 100 clearly and maps nothing there: no longer seen.
    fake_delivery(inbox, "GF6_C_L1A0003", acquired="2022-09-12T03:30:00Z", boxes=[], footprint=(0, 0, 500, 500))
    third, _ = run(config)
    assert (third.new_landslides, third.updated_landslides, third.no_longer_seen) == (0, 0, 1)
    assert third.newly_observed_km2 == pytest.approx(0.0, abs=1e-9)

    passes = json.loads((region / "passes.json").read_text())["passes"]
    assert [(p["new_landslides"], p["updated_landslides"], p["no_longer_seen"]) for p in passes] == [(2, 0, 0), (1, 1, 0), (0, 0, 1)]
    assert [p["deliveries"] for p in passes] == [["GF6_A_L1A0001"], ["GF6_B_L1A0002"], ["GF6_C_L1A0003"]]
    html = (region / "report.html").read_text()
    assert html.count('<tr class="latest">') == 1 and "GF6_C_L1A0003" in html
    features = embedded_json(html, "landslide-geojson")["features"]
    assert len(features) == 2 and all(f["properties"]["new_in_latest_pass"] is False for f in features)
    # after pass 2 the new landslide was B's second polygon; the page of pass 2 styled it new
    assert passes[1]["new_landslide_ids"] == ["GF6_B_L1A0002/2"]


def test_the_map_marks_landslides_new_in_the_latest_pass(tmp_path):
    config = make_config(tmp_path)
    inbox, region = tmp_path / "inbox", tmp_path / "results/quake"
    fake_delivery(inbox, "GF6_A_L1A0001", acquired="2022-09-07", boxes=[(100, 100, 200, 200)])
    run(config)
    fake_delivery(inbox, "GF6_B_L1A0002", acquired="2022-09-10", boxes=[(2500, 100, 2600, 200)], footprint=(1000, 0, 3000, 2000))
    run(config)
    features = embedded_json((region / "report.html").read_text(), "landslide-geojson")["features"]
    flags = {f["properties"]["landslide_id"]: f["properties"]["new_in_latest_pass"] for f in features}
    assert flags == {"GF6_A_L1A0001/1": False, "GF6_B_L1A0002/1": True}


def test_a_pass_whose_deliveries_all_fail_keeps_the_previous_report(tmp_path):
    config = make_config(tmp_path)
    inbox, region = tmp_path / "inbox", tmp_path / "results/quake"
    fake_delivery(inbox, "GF6_A_L1A0001", acquired="2022-09-07", boxes=[(100, 100, 200, 200)])
    run(config)
    kept = {name: ((region / name).read_bytes(), (region / name).stat().st_mtime_ns) for name in REGION_PRODUCTS if name != "passes.json"}
    broken = fake_delivery(inbox, "GF6_B_L1A0002", acquired="2022-09-10")
    (broken / "meta.json").unlink()  # the fake's "missing .rpb": quarantined
    time.sleep(0.05)
    summary, _ = run(config)
    assert summary.exit_status == 1 and summary.refreshed == [] and "previous pass" in summary.report_kept
    assert {name: ((region / name).read_bytes(), (region / name).stat().st_mtime_ns) for name in kept} == kept
    passes = json.loads((region / "passes.json").read_text())["passes"]
    assert len(passes) == 2 and passes[1]["new_landslides"] == 0
    assert passes[1]["failures"][0]["name"] == "GF6_B_L1A0002" and passes[1]["failures"][0]["state"] == "quarantined"
    assert "Region products kept" in Path(summary.summary_markdown).read_text()


KILLED_IN_REFRESH = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_scheduled import FakeProcessor
import lsmap.report
from lsmap.config import validate_config
from lsmap.scheduled import OperationsSettings, run_scheduled

config = validate_config(json.loads(Path({config!r}).read_text()))
settings = OperationsSettings.from_config(config)

def stalls(*args, **kwargs):  # the statistics, plot and exports are staged; the page never comes
    Path({started!r}).touch()
    time.sleep(120)

lsmap.report.build_region_report = stalls
run_scheduled(config, settings=settings, processor=FakeProcessor(settings))
"""


def test_a_pass_killed_mid_refresh_leaves_the_previous_products_and_the_next_pass_completes_them(tmp_path):
    config = make_config(tmp_path)
    inbox, region = tmp_path / "inbox", tmp_path / "results/quake"
    fake_delivery(inbox, "GF6_A_L1A0001", acquired="2022-09-07", boxes=[(100, 100, 200, 200)])
    run(config)
    before = {name: (region / name).read_bytes() for name in REGION_PRODUCTS}
    fake_delivery(inbox, "GF6_B_L1A0002", acquired="2022-09-10", boxes=[(2500, 100, 2600, 200)], footprint=(1000, 0, 3000, 2000))
    (tmp_path / "config.json").write_text(json.dumps(config))
    script, started = tmp_path / "killable.py", tmp_path / "started"
    script.write_text(KILLED_IN_REFRESH.format(tests=str(Path(__file__).parent), config=str(tmp_path / "config.json"), started=str(started)))
    victim = subprocess.Popen([sys.executable, str(script)], cwd=PROJECT_ROOT)
    try:
        deadline = time.time() + 90
        while not started.exists() and victim.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert started.exists(), "the run to kill never reached the report"
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
    assert {name: (region / name).read_bytes() for name in REGION_PRODUCTS} == before  # the previous, complete set
    assert len(list(region.glob(".refresh-*"))) == 1  # what the killed pass staged, never swapped in

    # B is in the inventory already (done before the refresh); the next pass owes the refresh.
    summary, processor = run(config)
    assert processor.processed == [] and len(summary.refreshed) == len(REGION_PRODUCTS)
    assert json.loads((region / "stats.json").read_text())["summary"]["landslide_count"] == 2
    passes = json.loads((region / "passes.json").read_text())["passes"]
    assert [p["deliveries"] for p in passes] == [["GF6_A_L1A0001"], ["GF6_B_L1A0002"]]  # the killed pass's row kept
    assert not list(region.glob(".refresh-*"))
    again, _ = run(config)
    assert again.nothing_to_do


def test_a_pass_killed_after_changing_the_inventory_leaves_the_refresh_owed(tmp_path):
    config = make_config(tmp_path)
    inbox, region = tmp_path / "inbox", tmp_path / "results/quake"
    fake_delivery(inbox, "GF6_A_L1A0001", acquired="2022-09-07", boxes=[(100, 100, 200, 200)])
    run(config)
    passes = (region / "passes.json").read_text()
    # What a pass killed between its add_scene and its refresh leaves: the empty staging folder.
    (region / ".refresh-20220910T000000.000000Z").mkdir()
    summary, processor = run(config)
    assert not summary.nothing_to_do and processor.processed == []
    assert len(summary.refreshed) == len(REGION_PRODUCTS) and not list(region.glob(".refresh-*"))
    assert (region / "passes.json").read_text() == passes  # no delivery, no new row
    assert run(config)[0].nothing_to_do
