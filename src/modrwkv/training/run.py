"""One training run from a composed config: build, train, evaluate, log to MLflow. Called by src/train.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from ..evaluation.checkpoint import RUN_ID_FILE
from ..safe_load import CheckpointError, read_checkpoint
from .checkpoint_io import AtomicCheckpointIO
from .config_check import ConfigError, preflight
from .distributed import check_launch, cluster_overrides, is_multirun
from .guard import DivergenceGuard
from .loggers import is_mlflow
from .module import ModRWKVModule
from .params import run_params
from .preemption import Preempted, PreemptionCheckpoint
from .run_bookkeeping import RunInfo, checkpoint_run_id, log_params_on_resume

log = logging.getLogger("modrwkv.train")


def make_logger(cfg: DictConfig):
    """The logger that conf/logger/<choice>.yaml builds under ``logger.build`` (``training/loggers.py``); False for
    logger=none."""
    return instantiate(cfg.logger.build)


def _final_metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}


def _end_run(logger, exception: BaseException) -> None:
    """Close the MLflow run of a job that did not finish: KILLED when stopped by a signal or Ctrl-C, else FAILED,
    with the reason as the tag ``modrwkv.end_reason``."""
    if not logger or not hasattr(logger, "finalize"):
        return
    killed = isinstance(exception, (SIGTERMException, Preempted, KeyboardInterrupt))
    if getattr(logger, "run_id", None) and hasattr(logger, "experiment"):
        reason = str(exception) or type(exception).__name__
        logger.experiment.set_tag(logger.run_id, "modrwkv.end_reason", f"{type(exception).__name__}: {reason}"[:4000])
    logger.finalize("KILLED" if killed else "failed")


def train(cfg: DictConfig) -> dict[str, float]:
    """Build, train and evaluate as ``cfg`` says; returns the final metrics.

    A crash or a diverged loss marks the MLflow run FAILED and raises; SIGTERM/SIGUSR1 saves ``last.ckpt``, marks the
    run KILLED and exits with ``128 + signal``."""
    cfg.paths.root = str(Path(cfg.paths.root).resolve())  # everything under it is then absolute too
    preflight(cfg)  # every option checked (ConfigError) and the MLflow store ready, before any work
    if cfg.get("resume"):  # an empty, truncated or unsafe file: one line, before any work
        try:
            read_checkpoint(cfg.resume, what="resume", mmap=True)
        except CheckpointError as exn:
            raise ConfigError(str(exn)) from None
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")
    model, datamodule, modality = instantiate(cfg.task.build)(cfg)  # conf/task/<choice>.yaml, training/tasks.py
    logger = make_logger(cfg)
    module = ModRWKVModule(model, modality, optim=OmegaConf.to_container(cfg.stage, resolve=True),
                           eval=OmegaConf.to_container(cfg.eval, resolve=True),
                           skip_counter=getattr(datamodule, "skips", None))
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c is not None]
    if not logger:  # the LR monitor needs a logger to write to
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    preemption = PreemptionCheckpoint()
    callbacks += [DivergenceGuard(**cfg.guard), preemption, RunInfo()]
    # a job that submitit started once per device: each process is one rank (no relaunch); else as configured
    cluster = cluster_overrides()
    plugins = [*cluster.pop("plugins", []), AtomicCheckpointIO()]
    trainer: L.Trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks, plugins=plugins, **cluster)
    check_launch(trainer, multirun=is_multirun())
    if logger:  # Lightning's loggers write on global rank 0 only (the run exists from here, on rank 0)
        run_id = getattr(logger, "run_id", None)
        resumed = cfg.get("resume") and run_id is not None and run_id == checkpoint_run_id(cfg.resume)
        if resumed:  # the checkpoint's own run, reopened: its params are already there
            log_params_on_resume(logger.experiment, run_id, run_params(cfg))
        else:
            logger.log_hyperparams(run_params(cfg))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("resume"), weights_only=True)
        if cfg.get("test_after_training", True) and not trainer.fast_dev_run:
            if getattr(datamodule, "has_split", lambda split: True)("test"):
                trainer.test(module, datamodule=datamodule)
            else:  # converted data may have train/ and val/ only
                log.warning("no test/ shards in %s: test phase skipped (the val/ metrics are the final ones)",
                            datamodule.root)
        metrics = _final_metrics(trainer)
        if "data/skipped" not in metrics and getattr(datamodule, "skips", None) is not None:
            metrics["data/skipped"] = float(datamodule.skips.skipped)
    except SIGTERMException as exn:
        stopped = Preempted(preemption.signum or 15, preemption.saved)
        _end_run(logger, stopped)
        log.warning("%s", stopped)
        raise stopped from exn
    except BaseException as exn:
        _end_run(logger, exn)
        raise
    if logger and is_mlflow(logger) and trainer.is_global_zero:  # the other ranks have no MLflow run
        client, run_id = logger.experiment, logger.run_id
        client.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        client.log_text(run_id, json.dumps(metrics, indent=1, sort_keys=True), "final_metrics.json")
        (Path(cfg.paths.output) / RUN_ID_FILE).write_text(run_id)  # src/eval.py links its runs to this one
        logger.finalize("success")
    log.info("final metrics: %s", metrics)
    return metrics
