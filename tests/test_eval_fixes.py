"""Fixes found while evaluating: stage 1 on a random backbone is refused; shards without test/ skip the test phase."""

from __future__ import annotations

import pytest

from analysis.sweep_configs import compose
from modrwkv.training.build import ConfigError, check_config


def test_stage1_on_a_random_backbone_is_refused():
    with pytest.raises(ConfigError, match="randomly initialised.*stage.allow_untrained_backbone=true"):
        check_config(compose(["stage=stage1"]))
    check_config(compose(["stage=stage1", "stage.allow_untrained_backbone=true"]))  # explicit override
    check_config(compose(["stage=stage1", "stage.init_from=/some/stage2.ckpt"]))  # a trained model to start from
    check_config(compose(["stage=stage2"]))  # the backbone trains: fine


def test_shards_without_a_test_split(tmp_path):
    from modrwkv.data.shapes_vqa import generate_shapes_vqa
    from modrwkv.data.shards import write_shards
    from modrwkv.training.datamodule import ModRWKVDataModule

    for split in ("train", "val"):
        write_shards(generate_shapes_vqa(2, seed=0), tmp_path / split)
    dm = ModRWKVDataModule("image", str(tmp_path), source="shards")
    dm.prepare_data()
    assert dm.has_split("train") and dm.has_split("val") and not dm.has_split("test")
