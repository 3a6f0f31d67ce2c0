"""lsmap.progress: one helper for every stage's progress (tqdm on a terminal, log lines otherwise)."""

from __future__ import annotations

import logging

from lsmap.progress import Progress


def test_without_a_terminal_progress_is_log_lines_at_intervals_and_one_at_the_end(caplog, monkeypatch):
    clock = iter([0.0, 10.0, 40.0, 50.0, 55.0])  # start, then one reading per update
    monkeypatch.setattr("lsmap.progress.time.monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="lsmap.test"):
        with Progress(4, "scene.tif", "tile", logger=logging.getLogger("lsmap.test"), interval_s=30.0) as progress:
            for _ in range(4):
                progress.update()
    lines = [r.getMessage() for r in caplog.records if r.name == "lsmap.test"]
    # 10 s: too soon; 40 s: 30 s after the start; 50 s: too soon; 55 s: the last unit
    assert lines == ["scene.tif: 2 of 4 tiles (50%), 0.05 tiles/s", "scene.tif: 4 of 4 tiles (100%), 0.0727 tiles/s"]


def test_where_logging_would_drop_the_lines_tqdm_writes_them_to_stderr(capsys):
    silent = logging.getLogger("lsmap.test.unconfigured")
    silent.propagate = False  # no handler anywhere above it
    try:
        with Progress(3, "polygons", "block", logger=silent) as progress:
            assert progress.bar is not None and not progress.lines
            progress.update(3)
    finally:
        silent.propagate = True
    assert "polygons" in capsys.readouterr().err


def test_disabled_progress_writes_nothing(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="lsmap.test"):
        with Progress(2, "off", "chip", enabled=False, logger=logging.getLogger("lsmap.test")) as progress:
            progress.update(2)
    assert progress.bar is None and not caplog.records and capsys.readouterr().err == ""
