"""One training run from a composed config: build, train, evaluate, log to MLflow. Called by src/train.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..evaluation.checkpoint import RUN_ID_FILE
from .build import build_model
from .distributed import check_launch, cluster_overrides, is_multirun
from .mlflow_runs import job_run_name, parent_run_id
from .module import ModRWKVModule
from .params import run_params

log = logging.getLogger("modrwkv.train")


def load_stage_checkpoint(model: torch.nn.Module, path: str) -> None:
    """Start from another run's weights (e.g. stage 2 from stage 1): model weights only, not the optimiser."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"stage.init_from={path}: no such checkpoint (a Lightning .ckpt of an earlier stage)")
    ckpt = torch.load(p, map_location="cpu", weights_only=False)
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise ValueError(f"{path} does not fit this model (different encoder/adapter/backbone?): "
                         f"missing {missing[:8]}, unexpected {unexpected[:8]}")
    log.info("initialised from %s", path)


def make_logger(cfg: DictConfig):
    """The MLflow logger of this job (a child of the sweep's parent run when in a multirun), or a CSV logger."""
    kind = cfg.logger.kind
    if kind == "mlflow":
        from lightning.pytorch.loggers import MLFlowLogger

        tags = {"modrwkv.kind": "job"}
        parent = parent_run_id(cfg)
        if parent:
            tags["mlflow.parentRunId"] = parent
        return MLFlowLogger(experiment_name=cfg.logger.experiment_name, run_name=job_run_name(cfg),
                            tracking_uri=cfg.logger.tracking_uri, tags=tags,
                            artifact_location=cfg.logger.artifact_location)
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=cfg.paths.output, name="csv")
    if kind == "none":
        return False
    raise ValueError(f"unknown logger.kind {kind!r}; use mlflow, csv or none")


def _final_metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}


def train(cfg: DictConfig) -> dict[str, float]:
    """Build, train and evaluate as ``cfg`` says; returns the final metrics. A crash marks the MLflow run FAILED."""
    cfg.paths.root = str(Path(cfg.paths.root).resolve())  # everything under it is then absolute too
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")
    if cfg.get("task", {}).get("name", "multimodal") == "lm":
        from .lm import build_lm_run

        model, datamodule, modality = build_lm_run(cfg)
    else:
        model = build_model(cfg)
        if cfg.stage.get("init_from"):
            load_stage_checkpoint(model, cfg.stage.init_from)
        datamodule = instantiate(cfg.data).bind(model)
        modality = cfg.modality.name
    logger = make_logger(cfg)
    module = ModRWKVModule(model, modality, optim=OmegaConf.to_container(cfg.stage, resolve=True),
                           eval=OmegaConf.to_container(cfg.eval, resolve=True),
                           skip_counter=getattr(datamodule, "skips", None))
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c is not None]
    if not logger:  # the LR monitor needs a logger to write to
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    # a job that submitit started once per device: each process is one rank (no relaunch); else as configured
    trainer: L.Trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks, **cluster_overrides())
    check_launch(trainer, multirun=is_multirun())
    if logger:  # Lightning's loggers write on global rank 0 only
        logger.log_hyperparams(run_params(cfg))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("resume"))
        if cfg.get("test_after_training", True) and not trainer.fast_dev_run:
            if getattr(datamodule, "has_split", lambda split: True)("test"):
                trainer.test(module, datamodule=datamodule)
            else:  # converted data may have train/ and val/ only
                log.warning("no test/ shards in %s: test phase skipped (the val/ metrics are the final ones)",
                            datamodule.root)
        metrics = _final_metrics(trainer)
        if "data/skipped" not in metrics and getattr(datamodule, "skips", None) is not None:
            metrics["data/skipped"] = float(datamodule.skips.skipped)
    except BaseException:
        if logger and hasattr(logger, "finalize"):
            logger.finalize("failed")
        raise
    if logger and cfg.logger.kind == "mlflow" and trainer.is_global_zero:  # the other ranks have no MLflow run
        client, run_id = logger.experiment, logger.run_id
        client.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        client.log_text(run_id, json.dumps(metrics, indent=1, sort_keys=True), "final_metrics.json")
        (Path(cfg.paths.output) / RUN_ID_FILE).write_text(run_id)  # src/eval.py links its runs to this one
        logger.finalize("success")
    log.info("final metrics: %s", metrics)
    return metrics
