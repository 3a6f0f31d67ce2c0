"""The Snakemake workflow: every target plans (dry run) on a test config, lint is clean, and a
region whose data is missing stops with one line that names the missing file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.workflow

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(project_root: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [*SNAKEMAKE, "--snakefile", str(project_root / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def test_config(project_root, tmp_path_factory) -> tuple[Path, dict]:
    """The shipped config with every real input replaced by an (empty) file in a scratch folder."""
    workdir = tmp_path_factory.mktemp("workflow")
    config = yaml.safe_load((project_root / "config.yaml").read_text())
    for region in config["regions"].values():
        if region.get("synthetic"):
            continue
        for key in ("dem",):
            placeholder = workdir / region[key]
            placeholder.parent.mkdir(parents=True, exist_ok=True)
            placeholder.touch()
        for scene in region["scenes"].values():
            for key in ("delivery", "image"):
                if key in scene:
                    placeholder = workdir / scene[key]
                    placeholder.parent.mkdir(parents=True, exist_ok=True)
                    placeholder.touch()
    (workdir / config["training"]["dataset"]).mkdir(parents=True, exist_ok=True)
    path = workdir / "config.test.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


def all_targets(config: dict) -> list[str]:
    return [f"map_{region}" for region in config["regions"]] + ["map_demo", "train_all", "benchmark_all"]


def test_every_target_plans_in_a_dry_run(project_root, test_config):
    path, config = test_config
    for target in all_targets(config):
        result = run_snakemake(project_root, path.parent, target, "-n", "--quiet", "rules", "--configfile", str(path))
        assert result.returncode == 0, f"dry run of {target} failed:\n{result.stderr[-3000:]}"


def test_lint_is_clean(project_root, test_config):
    path, _ = test_config
    result = run_snakemake(project_root, path.parent, "--lint", "--configfile", str(path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Lints for" not in result.stdout + result.stderr, result.stdout[-3000:]


def test_region_with_missing_data_names_the_file(project_root, tmp_path):
    config = yaml.safe_load((project_root / "config.yaml").read_text())
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_snakemake(project_root, tmp_path, "map_luding", "-n", "--configfile", str(path))
    assert result.returncode != 0
    missing = next(iter(config["regions"]["luding"]["scenes"].values()))["delivery"]
    output = result.stdout + result.stderr  # snakemake 9 logs errors to stdout
    message_lines = [line for line in output.splitlines() if "is missing" in line]
    assert message_lines, output[-3000:]
    assert "README" in message_lines[0] and ("luding" in message_lines[0])
    assert any(missing in line or config["regions"]["luding"]["dem"] in line for line in message_lines)


def test_misspelt_config_key_stops_snakemake_naming_it(project_root, tmp_path):
    config = yaml.safe_load((project_root / "config.yaml").read_text())
    config["training"]["epocs"] = 3
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_snakemake(project_root, tmp_path, "train_all", "-n", "--configfile", str(path))
    assert result.returncode != 0
    assert "'epocs' was unexpected" in result.stdout + result.stderr
