"""Training profiles: config.yaml with the configs/ profiles merged over it, as snakemake --configfile does."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsmap.errors import LsmapError
from lsmap.train import TrainConfig, merged_workflow_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_cpu_recipe_profile_overrides_config_yaml_and_cpu_bijie_key_by_key():
    config = merged_workflow_config([ROOT / "config.yaml", ROOT / "configs" / "cpu_bijie.yaml",
                                     ROOT / "configs" / "cpu_bijie_recipe.yaml"])
    recipe = TrainConfig.from_workflow_config(config, "improved_deeplabv3plus")
    # from the recipe profile
    assert (recipe.input_size, recipe.size_policy, recipe.epochs, recipe.steps_per_epoch) == (192, "resize", 8, 75)
    assert (recipe.optimizer, recipe.weight_decay, recipe.val_max_chips) == ("adamw", 1e-4, None)
    # from cpu_bijie.yaml, which the recipe does not repeat
    assert (recipe.backbone, recipe.pretrained, recipe.device) == ("resnet18", "none", "cpu")
    # nested keys merge one by one: the source folders of cpu_bijie.yaml survive the recipe's training: section
    assert config["training"]["source"]["images"] == "../shared/data/bijie/images"


def test_a_later_profile_wins_and_a_bad_value_names_the_files(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("training:\n  epochs: 3\n  lr: 0.01\n")
    second.write_text("training:\n  epochs: 5\n")
    config = merged_workflow_config([ROOT / "config.yaml", first, second])
    assert config["training"]["epochs"] == 5 and config["training"]["lr"] == 0.01
    second.write_text("training:\n  epochs: many\n")
    with pytest.raises(LsmapError, match="b.yaml: invalid configuration at training.epochs"):
        merged_workflow_config([ROOT / "config.yaml", first, second])
    second.write_text("- not a mapping\n")
    with pytest.raises(LsmapError, match="b.yaml: configuration must be a YAML mapping"):
        merged_workflow_config([ROOT / "config.yaml", second])
