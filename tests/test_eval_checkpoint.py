"""Loading a training run for evaluation: weights only from the checkpoint (weights_only=True), no weight files."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from analysis.sweep_configs import compose
from modrwkv.evaluation.checkpoint import load_trained_run, locate
from modrwkv.safe_load import CheckpointError
from modrwkv.training.build import build_model


class NotATensor:
    """A class a safe loader must refuse to unpickle."""


def _run_dir(root, cfg, state):
    (root / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, root / ".hydra" / "config.yaml")
    (root / "checkpoints").mkdir()
    torch.save(state, root / "checkpoints" / "last.ckpt")
    return root


def test_a_run_loads_from_its_checkpoint_alone(tmp_path):
    torch.manual_seed(0)
    trained = build_model(compose(["logger=none"]))
    state = {"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()}, "global_step": 4}
    # the run's config names a backbone weight file that is not here: the checkpoint holds every weight anyway
    cfg = compose(["logger=none", "backbone=base", f"paths.weights={tmp_path / 'no-weights'}"])
    run = _run_dir(tmp_path / "run", cfg, state)
    model, info = load_trained_run(run / "checkpoints" / "last.ckpt")
    assert info.run_dir == run and info.cfg.backbone.name == "base" and info.mlflow_run_id is None
    for k, v in trained.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert not model.training
    assert locate(run) == (run, run / "checkpoints" / "last.ckpt")


def test_bad_checkpoints_are_refused(tmp_path):
    cfg = compose(["logger=none"])
    model = build_model(cfg)
    partial = {f"model.{k}": v for k, v in list(model.state_dict().items())[:-3]}
    run = _run_dir(tmp_path / "partial", cfg, {"state_dict": partial})
    with pytest.raises(ValueError, match="does not fit the model"):
        load_trained_run(run)
    evil = _run_dir(tmp_path / "evil", cfg, {"state_dict": {}, "extra": NotATensor()})
    with pytest.raises(CheckpointError, match="refused to load"):  # weights only: no arbitrary objects
        load_trained_run(evil)
