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


# ------------------------------------------------------------------------------- result sets
from lsmap.fileio import SWAP_JOURNAL, atomic_result_set, recover_result_set  # noqa: E402

NAMES = ["probability.tif", "mask.tif", "scene_stats.json"]


def _write_set(folder, tag: str, names=NAMES) -> None:
    for name in names:
        (folder / name).write_text(f"{tag} {name}")


def _set_of(folder) -> set[str]:
    return {(folder / name).read_text().split()[0] for name in NAMES if (folder / name).exists()}


def test_result_set_replaces_the_previous_one_whole_and_keeps_other_files(tmp_path):
    _write_set(tmp_path, "old")
    (tmp_path / "quicklook.png").write_text("not ours")
    with atomic_result_set(tmp_path, NAMES) as staging:
        _write_set(staging, "new")
        assert _set_of(tmp_path) == {"old"}  # nothing final-named changes before the swap
    assert _set_of(tmp_path) == {"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES + ["quicklook.png"])


def test_a_failed_run_keeps_the_previous_set_and_leaves_no_staging(tmp_path):
    _write_set(tmp_path, "old")
    with pytest.raises(RuntimeError, match="model exploded"):
        with atomic_result_set(tmp_path, NAMES) as staging:
            _write_set(staging, "new", NAMES[:2])
            raise RuntimeError("model exploded")
    assert _set_of(tmp_path) == {"old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)


def test_an_incomplete_set_is_never_swapped_in(tmp_path):
    _write_set(tmp_path, "old")
    with pytest.raises(RuntimeError, match="incomplete"):
        with atomic_result_set(tmp_path, NAMES) as staging:
            _write_set(staging, "new", NAMES[:2])
    assert _set_of(tmp_path) == {"old"}


def test_a_run_killed_during_the_swap_is_rolled_forward_by_the_next(tmp_path, monkeypatch):
    """Kill after the journal and one rename: the folder holds a mix until the next run (or any
    recover_result_set) completes the new set from the journal."""
    import os
    import shutil

    import lsmap.fileio as fileio

    _write_set(tmp_path, "old")
    real_replace, renamed = os.replace, []

    class Killed(BaseException):
        pass

    def replace_then_die(src, dst):
        real_replace(src, dst)
        renamed.append(dst)
        if len(renamed) == 2:  # the journal, then one file of the set
            raise Killed

    monkeypatch.setattr(fileio.os, "replace", replace_then_die)
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: None)  # SIGKILL: no cleanup runs
    with pytest.raises(Killed):
        with atomic_result_set(tmp_path, NAMES) as staging:
            _write_set(staging, "new")
    monkeypatch.undo()
    assert (tmp_path / SWAP_JOURNAL).exists() and _set_of(tmp_path) == {"old", "new"}
    monkeypatch.setattr(fileio, "_pid_alive", lambda pid: False)  # the killed run's pid is gone
    recover_result_set(tmp_path)
    assert _set_of(tmp_path) == {"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)
