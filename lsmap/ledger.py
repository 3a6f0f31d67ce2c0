"""The delivery ledger of a deployment: one SQLite row per inbox delivery and its processing state.

The scheduled run (:mod:`lsmap.scheduled`) is the only writer and holds an exclusive lock while it
writes, but the ledger does not rely on that alone: it runs in WAL mode (readers such as a
dashboard or ``sqlite3 ledger.sqlite 'select ...'`` never block the run), every state change is
one ``BEGIN IMMEDIATE`` transaction together with its row in the ``events`` audit table, and a
read-only run leaves the database file untouched (idempotent runs change no mtime).

States of a delivery::

    discovered  --> processing --> done
        ^               |      \\-> failed       (unexpected error; retried next run, up to max_attempts)
        |               |      \\-> quarantined  (bad input: corrupt TIFF, missing .rpb, ... or too many attempts)
        +-- interrupted-+          duplicate    (same bytes as a delivery already in the ledger)

A row left in ``processing`` by a killed run is put back to ``discovered`` by
:meth:`Ledger.recover_interrupted` at the start of the next run.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lsmap.errors import LsmapError

STATES = ("discovered", "processing", "done", "failed", "quarantined", "duplicate")
SCHEMA_VERSION = 1

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS deliveries (
    name            TEXT PRIMARY KEY,           -- entry name in the inbox (file or folder)
    path            TEXT NOT NULL,              -- where it was found
    product_id      TEXT,                       -- from the delivery metadata, once read
    scene_id        TEXT,                       -- the results/<region>/<scene_id>/ folder
    acquired        TEXT,                       -- acquisition time (ISO 8601), once read
    checksum        TEXT NOT NULL,              -- sha256 of the delivery bytes
    signature       TEXT NOT NULL,              -- files:bytes:newest-mtime, to skip re-hashing
    size_bytes      INTEGER NOT NULL,
    arrival         TEXT NOT NULL,              -- when the ledger first saw it complete (UTC)
    state           TEXT NOT NULL CHECK (state IN ({", ".join(repr(s) for s in STATES)})),
    attempts        INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    outputs         TEXT NOT NULL DEFAULT '{{}}',  -- JSON {{name: path}}
    quarantine_path TEXT,
    run_id          TEXT,                       -- the run that last changed the row
    updated         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state);
CREATE INDEX IF NOT EXISTS deliveries_checksum ON deliveries (checksum);
CREATE TABLE IF NOT EXISTS events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    time     TEXT NOT NULL,
    run_id   TEXT,
    name     TEXT NOT NULL,
    state    TEXT NOT NULL,
    message  TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    run_id   TEXT PRIMARY KEY,
    started  TEXT NOT NULL,
    finished TEXT,
    summary  TEXT                               -- JSON of the run summary
);
"""


def utc_now() -> str:
    """Current UTC time, ISO 8601 with seconds ('2024-05-01T10:00:00Z')."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class DeliveryRecord:
    """One ledger row."""

    name: str
    path: str
    checksum: str
    signature: str
    size_bytes: int
    arrival: str
    state: str
    updated: str
    attempts: int = 0
    product_id: str | None = None
    scene_id: str | None = None
    acquired: str | None = None
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    quarantine_path: str | None = None
    run_id: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> DeliveryRecord:
        values = dict(row)
        values["outputs"] = json.loads(values["outputs"] or "{}")
        return cls(**values)


class Ledger:
    """The SQLite ledger at ``path`` (created with its tables on first use)."""

    def __init__(self, path: str | os.PathLike, timeout_s: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a transaction takes the
            # write lock at its start and two writers can never interleave read-modify-write.
            self._db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise LsmapError(f"{self.path}: not a usable ledger database ({exc})") from exc

    @classmethod
    def read_only(cls, path: str | os.PathLike) -> Ledger | None:
        """A read-only view that creates no file (no ``-wal``/``-shm``), or None where that is not
        exact: no ledger yet, or a ``-wal`` file holding writes not yet checkpointed. Only valid
        while the run lock is held (no writer can appear meanwhile)."""
        path = Path(path)
        if not path.is_file() or path.with_name(path.name + "-wal").exists():
            return None
        ledger = cls.__new__(cls)
        ledger.path = path
        try:
            ledger._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
            ledger._db.row_factory = sqlite3.Row
            if ledger._db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                ledger.close()
                return None
        except sqlite3.DatabaseError:
            return None
        return ledger

    def _init_schema(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LsmapError(f"{self.path}: ledger schema {version} is newer than this lsmap reads ({SCHEMA_VERSION})")
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode=WAL")  # persistent: set once, on creation
        self._db.execute("PRAGMA synchronous=FULL")  # the ledger is small; durability matters more
        if version < SCHEMA_VERSION:
            with self.transaction() as db:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- reading ---------------------------------------------------------------------------------

    def get(self, name: str) -> DeliveryRecord | None:
        row = self._db.execute("SELECT * FROM deliveries WHERE name = ?", (name,)).fetchone()
        return DeliveryRecord.from_row(row) if row else None

    def records(self, *states: str) -> list[DeliveryRecord]:
        """All rows (or those in ``states``), oldest arrival first."""
        query = "SELECT * FROM deliveries"
        if states:
            query += f" WHERE state IN ({', '.join('?' * len(states))})"
        rows = self._db.execute(query + " ORDER BY arrival, name", states).fetchall()
        return [DeliveryRecord.from_row(row) for row in rows]

    def with_checksum(self, checksum: str) -> list[DeliveryRecord]:
        rows = self._db.execute("SELECT * FROM deliveries WHERE checksum = ? ORDER BY arrival", (checksum,))
        return [DeliveryRecord.from_row(row) for row in rows.fetchall()]

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM events", ()
        if name is not None:
            query, args = query + " WHERE name = ?", (name,)
        return [dict(row) for row in self._db.execute(query + " ORDER BY id", args).fetchall()]

    def runs(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._db.execute("SELECT * FROM runs ORDER BY started, run_id").fetchall()]

    # -- writing: each method is one transaction and logs one event ------------------------------

    def _set(self, db: sqlite3.Connection, name: str, run_id: str | None, state: str, message: str | None, **columns: Any) -> None:
        if state not in STATES:
            raise ValueError(f"unknown ledger state {state!r}")
        columns.update(state=state, run_id=run_id, updated=utc_now())
        if "outputs" in columns:
            columns["outputs"] = json.dumps({k: str(v) for k, v in columns["outputs"].items()}, sort_keys=True)
        assignments = ", ".join(f"{column} = ?" for column in columns)
        cursor = db.execute(f"UPDATE deliveries SET {assignments} WHERE name = ?", (*columns.values(), name))
        if cursor.rowcount != 1:
            raise LsmapError(f"{self.path}: no ledger row for delivery {name!r}")
        db.execute(
            "INSERT INTO events (time, run_id, name, state, message) VALUES (?, ?, ?, ?, ?)",
            (columns["updated"], run_id, name, state, message),
        )

    def record_discovered(
        self, name: str, path: str | os.PathLike, checksum: str, signature: str, size_bytes: int, run_id: str | None
    ) -> DeliveryRecord:
        """Add a complete delivery, or reset a known name whose bytes changed (a re-delivery)."""
        now = utc_now()
        with self.transaction() as db:
            known = db.execute("SELECT checksum FROM deliveries WHERE name = ?", (name,)).fetchone()
            if known is None:
                db.execute(
                    "INSERT INTO deliveries (name, path, checksum, signature, size_bytes, arrival, state, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'discovered', ?)",
                    (name, str(path), checksum, signature, size_bytes, now, now),
                )
                message, arrival = "new delivery", {}
            elif known["checksum"] != checksum:
                message, arrival = "re-delivered with new content", {"arrival": now}
            else:
                message, arrival = "put back for retry", {}
            self._set(
                db, name, run_id, "discovered", message, path=str(path), checksum=checksum, signature=signature,
                size_bytes=size_bytes, attempts=0, error=None, quarantine_path=None, **arrival,
            )
        return self.get(name)  # type: ignore[return-value]

    def update_signature(self, name: str, signature: str) -> None:
        """Same bytes, new file times (copied again): remember the new signature, skip re-hashing next time."""
        with self.transaction() as db:
            db.execute("UPDATE deliveries SET signature = ? WHERE name = ?", (signature, name))

    def mark_processing(self, name: str, run_id: str) -> int:
        """Claim a delivery for this run; returns the attempt number (1 for the first)."""
        with self.transaction() as db:
            attempts = db.execute("SELECT attempts FROM deliveries WHERE name = ?", (name,)).fetchone()["attempts"] + 1
            self._set(db, name, run_id, "processing", f"attempt {attempts}", attempts=attempts, error=None)
        return attempts

    def mark_done(
        self, name: str, run_id: str, *, outputs: dict[str, Any], product_id: str | None = None,
        scene_id: str | None = None, acquired: str | None = None,
    ) -> None:
        with self.transaction() as db:
            self._set(db, name, run_id, "done", None, outputs=outputs, product_id=product_id, scene_id=scene_id, acquired=acquired, error=None)

    def mark_failed(self, name: str, run_id: str, error: str) -> None:
        with self.transaction() as db:
            self._set(db, name, run_id, "failed", error, error=error)

    def mark_quarantined(self, name: str, run_id: str, error: str, quarantine_path: str | os.PathLike | None) -> None:
        with self.transaction() as db:
            where = str(quarantine_path) if quarantine_path is not None else None
            self._set(db, name, run_id, "quarantined", error, error=error, quarantine_path=where)

    def mark_duplicate(self, name: str, run_id: str, original: str) -> None:
        with self.transaction() as db:
            message = f"same bytes as delivery {original!r}"
            self._set(db, name, run_id, "duplicate", message, error=message)

    def set_identity(self, name: str, *, product_id: str, scene_id: str, acquired: str | None) -> None:
        """Remember what the delivery's metadata says it is (before processing it)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE deliveries SET product_id = ?, scene_id = ?, acquired = ? WHERE name = ?",
                (product_id, scene_id, acquired, name),
            )

    def recover_interrupted(self, run_id: str) -> list[str]:
        """Rows a killed run left in ``processing`` go back to ``discovered``; returns their names.

        Only safe while holding the run lock: then no other process can be working on them.
        """
        with self.transaction() as db:
            rows = db.execute("SELECT name, run_id FROM deliveries WHERE state = 'processing'").fetchall()
            for row in rows:
                self._set(db, row["name"], run_id, "discovered", f"run {row['run_id']} was interrupted; retrying")
        return [row["name"] for row in rows]

    def start_run(self, run_id: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO runs (run_id, started) VALUES (?, ?)", (run_id, utc_now()))

    def finish_run(self, run_id: str, summary: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET finished = ?, summary = ? WHERE run_id = ?",
                (utc_now(), json.dumps(summary, sort_keys=True), run_id),
            )
