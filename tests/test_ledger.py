"""The delivery ledger: atomic state changes, an audit trail, and no write when nothing changes."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from lsmap.errors import LsmapError
from lsmap.ledger import Ledger


def discovered(ledger: Ledger, name: str = "GF6_A.tar.gz", checksum: str = "c1", run_id: str = "r1"):
    return ledger.record_discovered(name, f"/inbox/{name}", checksum, f"1:100:{checksum}", 100, run_id)


def test_a_new_ledger_is_wal_and_records_a_delivery_through_its_states(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        record = discovered(ledger)
        assert (record.state, record.attempts, record.outputs) == ("discovered", 0, {})
        assert ledger.mark_processing(record.name, "r1") == 1
        ledger.set_identity(record.name, product_id="1120012345", scene_id="GF6_A", acquired="2022-09-10T03:30:00Z")
        ledger.mark_done(record.name, "r1", outputs={"mask": tmp_path / "mask.tif"}, product_id="1120012345", scene_id="GF6_A", acquired="2022-09-10T03:30:00Z")
        done = ledger.get(record.name)
        assert (done.state, done.attempts, done.product_id, done.outputs) == ("done", 1, "1120012345", {"mask": str(tmp_path / "mask.tif")})
        assert [e["state"] for e in ledger.events(record.name)] == ["discovered", "processing", "done"]
    journal = sqlite3.connect(tmp_path / "ledger.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"


def test_reading_the_ledger_changes_nothing_on_disk(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        discovered(ledger)
    before = (path.stat().st_mtime_ns, path.read_bytes())
    with Ledger(path) as ledger:
        assert len(ledger.records()) == 1 and ledger.records("failed") == []
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite"]  # WAL checkpointed and removed


def test_a_failed_state_change_leaves_no_trace(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        discovered(ledger)
        with pytest.raises(LsmapError, match="no ledger row"):
            ledger.mark_failed("not-there", "r1", "boom")
        with pytest.raises(ValueError):
            with ledger.transaction() as db:
                db.execute("UPDATE deliveries SET error = 'half done'")
                raise ValueError("interrupted mid-transaction")
        assert ledger.get("GF6_A.tar.gz").error is None
        assert [e["name"] for e in ledger.events()] == ["GF6_A.tar.gz"]


def test_redelivery_with_new_bytes_resets_the_row_and_same_bytes_keep_the_arrival(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        first = discovered(ledger)
        ledger.mark_processing(first.name, "r1")
        ledger.mark_failed(first.name, "r1", "RuntimeError: out of memory")
        again = discovered(ledger, checksum="c1", run_id="r2")  # put back as it was
        assert (again.state, again.attempts, again.error, again.arrival) == ("discovered", 0, None, first.arrival)
        changed = discovered(ledger, checksum="c2", run_id="r3")
        assert (changed.checksum, changed.state) == ("c2", "discovered")
        assert [e["message"] for e in ledger.events(first.name)][-2:] == ["put back for retry", "re-delivered with new content"]


def test_rows_left_processing_by_a_killed_run_are_queued_again(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        for name in ("a", "b"):
            discovered(ledger, name=name, checksum=name)
        ledger.mark_processing("a", "killed-run")
        assert ledger.recover_interrupted("next-run") == ["a"]
        a = ledger.get("a")
        assert (a.state, a.attempts, a.run_id) == ("discovered", 1, "next-run")
        assert "killed-run was interrupted" in ledger.events("a")[-1]["message"]
        assert ledger.recover_interrupted("another") == []


def test_concurrent_writers_lose_no_update(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        discovered(ledger, name="x")

    def claim(n: int) -> None:
        with Ledger(path) as own:  # one connection per thread, as separate processes would have
            for _ in range(n):
                own.mark_processing("x", "r")

    threads = [threading.Thread(target=claim, args=(25,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Ledger(path) as ledger:
        assert ledger.get("x").attempts == 100  # BEGIN IMMEDIATE: read-modify-write never interleaves
        assert len(ledger.events("x")) == 101


def test_a_file_that_is_not_a_ledger_is_a_one_line_error(tmp_path):
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LsmapError, match="ledger.sqlite: not a usable ledger database"):
        Ledger(path)


def test_run_rows_keep_the_summary(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.start_run("r1")
        ledger.finish_run("r1", {"new_scenes": 2})
        (run,) = ledger.runs()
        assert run["run_id"] == "r1" and run["finished"] and '"new_scenes": 2' in run["summary"]
