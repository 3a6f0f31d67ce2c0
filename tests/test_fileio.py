"""Outputs appear complete or not at all."""

from __future__ import annotations

import hashlib

import pytest

from lsmap.fileio import atomic_output, partial_path, sha256_file


def test_atomic_output_renames_only_on_success(tmp_path):
    final = tmp_path / "sub" / "mask.tif"
    with atomic_output(final) as tmp:
        assert tmp.suffix == ".tif" and tmp.parent == final.parent
        tmp.write_bytes(b"data")
        assert not final.exists()
    assert final.read_bytes() == b"data"
    assert list(final.parent.iterdir()) == [final]


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    final = tmp_path / "landslides.gpkg"
    final.write_bytes(b"previous run")
    with pytest.raises(RuntimeError):
        with atomic_output(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert final.read_bytes() == b"previous run"
    assert not partial_path(final).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["landslides.gpkg"]


def test_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "blob.bin"
    payload = bytes(range(256)) * 9000  # several read chunks
    path.write_bytes(payload)
    assert sha256_file(path, chunk_bytes=4096) == hashlib.sha256(payload).hexdigest()
