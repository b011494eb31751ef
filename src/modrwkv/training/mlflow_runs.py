"""MLflow: one parent run per Hydra multirun (a Hydra callback), each job a nested child run (its Lightning logger).

The parent's run id is written into the sweep folder, so jobs find it whichever launcher runs them (in-process,
submitit on this machine or on SLURM). The tracking URI is always passed explicitly (never read from
MLFLOW_TRACKING_URI at import time). A local SQLite store and its experiment are created by ``prepare_store`` under
a file lock, so that jobs starting at the same moment on a new database do not race in MLflow's schema creation.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("modrwkv.mlflow")

PARENT_ID_FILE = "mlflow_parent_run_id"


def get_or_create_experiment(client, name: str, artifact_location: str | None) -> str:
    """The experiment's id, creating it (with artifacts under the project) if needed."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # another process created it between our two calls
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def prepare_store(cfg: DictConfig) -> None:
    """Create the MLflow store of ``cfg.logger`` (schema and experiment) once, under a lock beside a SQLite file.

    The first process to take the lock creates the tables and the experiment; the others wait, then find both.
    Remote stores (http, databases) handle concurrent clients themselves: for them only the experiment is ensured.
    """
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    from .store_check import sqlite_path

    uri = str(cfg.logger.tracking_uri)
    db = sqlite_path(uri)
    if db is None:
        get_or_create_experiment(MlflowClient(tracking_uri=uri), cfg.logger.experiment_name,
                                 cfg.logger.get("artifact_location"))
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db) + ".lock"):  # fcntl lock: released when the holder exits, even by kill -9
        get_or_create_experiment(MlflowClient(tracking_uri=uri), cfg.logger.experiment_name,
                                 cfg.logger.get("artifact_location"))


def sweep_name(cfg: DictConfig) -> str:
    """The name of a sweep: ``sweep_name`` if set, else the multirun's override string."""
    if cfg.get("sweep_name"):
        return str(cfg.sweep_name)
    overrides = OmegaConf.select(cfg, "hydra.overrides.task", default=[]) or []
    return " ".join(overrides) or "multirun"


class MLflowParentRun(Callback):
    """Hydra callback: opens the parent run at multirun start, closes it at the end."""

    def __init__(self):
        self.run_id: str | None = None
        self.client = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if config.logger.get("kind") != "mlflow":
            return
        from mlflow.tracking import MlflowClient

        from .config_errors import ConfigError, exit_with
        from .store_check import check_tracking_uri

        root = Path(config.paths.root).resolve()
        uri = config.logger.tracking_uri
        problem = check_tracking_uri(str(uri))
        if problem is not None:  # before the sweep starts: one line, exit status 2 (as train.py for a job)
            exit_with(ConfigError(f"logger.tracking_uri={uri}: {problem}; point it at a writable place or log to "
                                  "CSV files (logger=csv)"))
        prepare_store(config)
        self.client = MlflowClient(tracking_uri=uri)
        exp_id = get_or_create_experiment(self.client, config.logger.experiment_name,
                                          config.logger.artifact_location)
        from .run_bookkeeping import close_dead_runs, process_tags

        close_dead_runs(self.client, exp_id)
        name = sweep_name(config)
        tags = {"modrwkv.kind": "sweep", "modrwkv.sweep": name, "modrwkv.preset": str(config.preset.name),
                **process_tags()}  # a sweep whose process dies is closed by the next run (run_bookkeeping)
        run = self.client.create_run(exp_id, run_name=name, tags=tags)
        self.run_id = run.info.run_id
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_absolute():
            sweep_dir = root / sweep_dir
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_ID_FILE).write_text(self.run_id)
        overrides = OmegaConf.select(config, "hydra.overrides.task", default=[]) or []
        self.client.log_param(self.run_id, "overrides", " ".join(overrides)[:500])
        log.info("MLflow parent run %s (%s) at %s", self.run_id, name, uri)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self.run_id is None:
            return
        children = self.client.search_runs([self.client.get_run(self.run_id).info.experiment_id],
                                           filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'")
        failed = sum(r.info.status == "FAILED" for r in children)
        self.client.set_tag(self.run_id, "modrwkv.children", str(len(children)))
        self.client.set_tag(self.run_id, "modrwkv.failed_children", str(failed))
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


def parent_run_id(cfg: DictConfig) -> str | None:
    """In a multirun job: the parent run id written by ``MLflowParentRun``; otherwise None."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except ValueError:  # not running under Hydra (e.g. a test calling the trainer directly)
        return None
    if str(hc.mode) != "RunMode.MULTIRUN":
        return None
    sweep_dir = Path(hc.sweep.dir)
    if not sweep_dir.is_absolute():
        sweep_dir = Path(cfg.paths.root) / sweep_dir
    f = sweep_dir / PARENT_ID_FILE
    return f.read_text().strip() if f.exists() else None


def job_run_name(cfg: DictConfig) -> str:
    """A child's name: its own overrides (what distinguishes it in the sweep), or the run_name."""
    if cfg.get("run_name"):
        return str(cfg.run_name)
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().job.override_dirname or "default"
    except ValueError:
        return "default"
