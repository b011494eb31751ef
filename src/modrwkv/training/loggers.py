"""The Lightning loggers that conf/logger/<choice>.yaml build with ``_target_``: mlflow, csv (Lightning's own
CSVLogger) and none."""

from __future__ import annotations

import logging

from omegaconf import OmegaConf

from .mlflow_runs import get_or_create_experiment, job_run_name, parent_run_id
from .run_bookkeeping import checkpoint_run_id, close_dead_runs, process_tags, reopen_run

log = logging.getLogger("modrwkv.train")


def mlflow_logger(tracking_uri: str, experiment_name: str, artifact_location: str, root: str,
                  run_name: str | None = None, resume: str | None = None):
    """The MLflow logger of this job (a child of the sweep's parent run when in a multirun).

    Runs of this host whose process died are closed as KILLED first, and ``resume`` (a checkpoint) continues the
    checkpoint's own run (see ``run_bookkeeping``). ``root``: the project root (where a multirun's parent run id is
    found); ``run_name``: the run's name (default: the job's overrides)."""
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    job = OmegaConf.create({"paths": {"root": root}, "run_name": run_name})
    client = MlflowClient(tracking_uri=tracking_uri)
    close_dead_runs(client, get_or_create_experiment(client, experiment_name, artifact_location))
    tags = {"modrwkv.kind": "job", **process_tags()}
    parent = parent_run_id(job)
    if parent:
        tags["mlflow.parentRunId"] = parent
    previous = checkpoint_run_id(resume) if resume else None
    if previous and reopen_run(client, previous, str(resume)):
        log.info("resume: continuing MLflow run %s", previous)
        return MLFlowLogger(experiment_name=experiment_name, tracking_uri=tracking_uri, run_id=previous,
                            artifact_location=artifact_location)
    if previous:
        tags["modrwkv.resumed_run_id"] = previous  # that run is in another tracking store: link it
    return MLFlowLogger(experiment_name=experiment_name, run_name=job_run_name(job), tracking_uri=tracking_uri,
                        tags=tags, artifact_location=artifact_location)


def no_logger() -> bool:
    """No logger: Lightning's ``logger=False``."""
    return False


def is_mlflow(logger) -> bool:
    """Whether ``logger`` writes an MLflow run (which then also gets the config and final metrics as artifacts)."""
    from lightning.pytorch.loggers import MLFlowLogger

    return isinstance(logger, MLFlowLogger)
