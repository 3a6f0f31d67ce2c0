"""The workflow configuration is validated against its schema: typos and wrong types fail by name."""

from __future__ import annotations

import copy

import pytest
import yaml

from lsmap.config import load_config, validate_config
from lsmap.errors import LsmapError


@pytest.fixture()
def shipped_config(project_root):
    return yaml.safe_load((project_root / "config.yaml").read_text())


def test_shipped_config_is_valid_and_gets_defaults(project_root):
    config = load_config(project_root / "config.yaml")
    assert set(config["regions"]) >= {"luding", "jiuzhaigou", "wenchuan", "demo"}
    training = config["training"]
    # The paper's training settings (Zhao et al. 2024, section 4.1).
    assert (training["input_size"], training["batch_size"], training["epochs"]) == (256, 8, 100)
    assert (training["optimizer"], training["lr"], training["loss"]) == ("adam", 1e-4, "iou")


def test_misspelt_key_is_rejected_naming_the_key(shipped_config):
    bad = copy.deepcopy(shipped_config)
    bad["mapping"]["tile_sise"] = 512
    with pytest.raises(LsmapError, match="tile_sise"):
        validate_config(bad)


def test_misspelt_key_inside_a_region_is_rejected(shipped_config):
    bad = copy.deepcopy(shipped_config)
    bad["regions"]["luding"]["scenes"]["GF6_PMS_E102.1_N29.6_20220910"]["deliverry"] = "x.tar.gz"
    with pytest.raises(LsmapError, match="deliverry"):
        validate_config(bad)


def test_wrong_type_is_rejected(shipped_config):
    bad = copy.deepcopy(shipped_config)
    bad["training"]["batch_size"] = "eight"
    with pytest.raises(LsmapError, match="eight"):
        validate_config(bad)


def test_unknown_model_name_is_rejected(shipped_config):
    bad = copy.deepcopy(shipped_config)
    bad["model"]["name"] = "deeplabv4"
    with pytest.raises(LsmapError, match="deeplabv4"):
        validate_config(bad)


def test_scene_with_both_delivery_and_image_is_rejected(shipped_config):
    bad = copy.deepcopy(shipped_config)
    bad["regions"]["luding"]["scenes"]["GF6_PMS_E102.1_N29.6_20220910"]["image"] = "ard.tif"
    with pytest.raises(LsmapError):
        validate_config(bad)


def test_unreadable_config_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("regions: [unclosed\n")
    with pytest.raises(LsmapError, match="broken.yaml"):
        load_config(path)
