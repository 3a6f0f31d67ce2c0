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
