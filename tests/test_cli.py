"""The lsmap command: verbs listed, errors as one line."""

from __future__ import annotations

import subprocess
import sys

from lsmap.cli import VERBS, main


def test_help_lists_every_verb():
    result = subprocess.run([sys.executable, "-m", "lsmap.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for verb in VERBS:
        assert verb in result.stdout


def test_every_registered_verb_builds_its_parser():
    for verb in VERBS:
        result = subprocess.run([sys.executable, "-m", "lsmap.cli", verb, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, f"lsmap {verb} --help failed: {result.stderr[-2000:]}"
        assert f"lsmap {verb}" in result.stdout


def test_unknown_verb_fails():
    result = subprocess.run([sys.executable, "-m", "lsmap.cli", "mapp"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "mapp" in result.stderr


def test_lsmap_error_is_one_line_with_status_2(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    status = main(["map", str(tmp_path / "scene.tif"), "--model", str(missing), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and "error" in err
