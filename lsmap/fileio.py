"""Atomic outputs: write under a temporary name beside the target, rename when complete.

A killed or failed job therefore never leaves a file that looks finished (Snakemake and the
scheduled runs treat an existing output as done).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path


def partial_path(final: Path) -> Path:
    """The temporary sibling of ``final``; keeps the suffix so GDAL/OGR pick the right driver."""
    final = Path(final)
    return final.with_name(f".{final.stem}.partial-{os.getpid()}{final.suffix}")


@contextlib.contextmanager
def atomic_output(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success rename it to ``final``, on error delete it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(final)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (checkpoint and delivery provenance)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------- result sets
STAGING_PREFIX = ".lsmap-staging-"
SWAP_JOURNAL = ".lsmap-swap.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_result_set(out_dir: Path) -> None:
    """Finish or undo what a killed run left in ``out_dir``.

    A swap whose journal exists is rolled forward (the new set was complete when the journal was
    written); staging folders of dead processes are removed.
    """
    import json
    import shutil

    out_dir = Path(out_dir)
    journal = out_dir / SWAP_JOURNAL
    if journal.exists():
        entry = json.loads(journal.read_text())
        if not _pid_alive(int(entry["pid"])) or int(entry["pid"]) == os.getpid():
            staging = out_dir / entry["staging"]
            for name in entry["names"]:
                if (staging / name).exists():
                    os.replace(staging / name, out_dir / name)
            journal.unlink()
    for leftover in out_dir.glob(STAGING_PREFIX + "*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _pid_alive(int(pid)) or int(pid) == os.getpid():
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def atomic_result_set(out_dir: str | os.PathLike, names: list[str]) -> Iterator[Path]:
    """Yield a staging folder inside ``out_dir`` in which to write the files ``names``; on success
    swap them into ``out_dir`` as one set, on error remove the staging folder.

    ``out_dir`` therefore holds the previous complete set or the new complete set, never a mix and
    never nothing: once every new file is complete the swap writes a journal (``.lsmap-swap.json``,
    atomically), renames each new file over its old one and drops the journal. A run killed during
    those few renames is rolled forward by ``recover_result_set``, which the next run on the folder
    calls first. Other files in ``out_dir`` are left alone.
    """
    import json
    import shutil

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recover_result_set(out_dir)
    staging = out_dir / f"{STAGING_PREFIX}{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        missing = [name for name in names if not (staging / name).is_file()]
        if missing:
            raise RuntimeError(f"result set incomplete, missing {missing}")
        with atomic_output(out_dir / SWAP_JOURNAL) as tmp:
            tmp.write_text(json.dumps({"pid": os.getpid(), "staging": staging.name, "names": list(names)}))
        recover_result_set(out_dir)  # the roll-forward: each new file renamed over the old, journal gone
    finally:
        shutil.rmtree(staging, ignore_errors=True)
