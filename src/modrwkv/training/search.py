"""The training side of a Bayesian configuration search (conf/search/, Hydra's Optuna sweeper).

The sweeper (``hydra_plugins.modrwkv_search``) asks Optuna for a trial, launches the job with the override
``search.trial=<number>`` and tells Optuna the outcome. Inside the job, :class:`SearchCallback` reaches that trial
through the study's storage (the same ``hydra.sweeper.storage`` URL and ``study_name``, resolved into ``search.*``),
so it works with any launcher whose jobs can open the storage (in-process, submitit, SLURM on a shared disk):

- it reports the monitored validation metric after every validation and raises ``optuna.TrialPruned`` when the
  study's pruner says so (the sweeper records the trial as PRUNED, its MLflow run as KILLED);
- it raises :class:`TrialDiverged` when the loss or the monitored metric is not finite (a FAILED trial and run);
- it logs the cost metrics a Pareto search may minimise: ``search/modality_tokens`` (placeholder tokens per sample,
  what the Conv1d reduction shrinks) and ``search/step_time_s`` (wall time per optimiser step after a warm-up);
- it records the job's MLflow run id in the trial (user attribute ``mlflow_run_id``) and the trial in the run.

:func:`objective_value` turns the job's final metrics into what the sweeper is given: one float, or a list for a
multi-objective study; a missing or non-finite objective raises, so the trial is FAILED, never scored as zero.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch

from ..data.chat import PLACEHOLDER_ID

log = logging.getLogger("modrwkv.search")

TRIAL_RUN_ATTR = "mlflow_run_id"  # the trial's user attribute naming the job's MLflow run
COST_METRICS = ("search/modality_tokens", "search/step_time_s")  # what a Pareto search may minimise
STATE_TAG = "optuna.state"  # the MLflow tag a run's trial state is written to (COMPLETE, PRUNED, FAIL)


class TrialDiverged(RuntimeError):
    """The loss or the monitored metric became NaN or infinite: the trial fails (it is not scored)."""


def objective_value(objective: str | Sequence[str] | None, metrics: Mapping[str, float]) -> float | list[float] | None:
    """The value(s) of ``objective`` (a metric name, or a list of names for a Pareto search) in ``metrics``.

    None when no objective is configured. Raises ``KeyError`` for a metric the run did not produce (naming the
    ones it did) and :class:`TrialDiverged` for a non-finite value.
    """
    if objective is None:
        return None
    names = [objective] if isinstance(objective, str) else list(objective)
    values = []
    for name in names:
        if name not in metrics:
            raise KeyError(f"objective={name!r}: the run logged no such metric; it has {sorted(metrics)}")
        value = float(metrics[name])
        if not math.isfinite(value):
            raise TrialDiverged(f"objective {name} = {value}: the trial diverged")
        values.append(value)
    return values[0] if isinstance(objective, str) else values


def load_trial(storage: str, study_name: str, number: int, pruner=None):
    """The live ``optuna.trial.Trial`` number ``number`` of study ``study_name`` in ``storage`` (a URL).

    The sweeper created the trial (``study.ask()``) in another object, possibly another process; the storage's
    public lookups give its id, and the study is loaded with this job's ``pruner`` (pruners are not stored).
    """
    import optuna

    store = optuna.storages.get_storage(storage)
    study_id = store.get_study_id_from_name(study_name)
    trial_id = store.get_trial_id_from_study_id_trial_number(study_id, number)
    # no pruner: NopPruner (load_study would otherwise give the trial Optuna's default MedianPruner)
    study = optuna.load_study(study_name=study_name, storage=store, pruner=pruner or optuna.pruners.NopPruner())
    return optuna.trial.Trial(study, trial_id)


def _mlflow_run(trainer: L.Trainer):
    """(client, run id) of the trainer's MLflow logger, or (None, None)."""
    for logger in trainer.loggers:
        if type(logger).__name__ == "MLFlowLogger":
            return logger.experiment, logger.run_id
    return None, None


class SearchCallback(L.Callback):
    """Pruning, divergence checks and cost metrics for one trial of a search (see the module's docstring).

    Args:
        monitor: the validation metric reported to Optuna (e.g. ``val/accuracy``).
        trial: the trial's number (``search.trial``, set by the sweeper); None outside a search: then only the
            divergence check and the cost metrics run.
        storage, study_name: where the sweeper keeps the study (``hydra.sweeper.storage``/``study_name``).
        pruner: an ``optuna.pruners`` object (instantiated from ``search.pruner``), or None for no pruning.
        warmup_steps: optimiser steps left out of ``search/step_time_s`` (compilation, first-batch allocation).
        token_batches: batches whose modality tokens are averaged into ``search/modality_tokens``.
    """

    def __init__(self, monitor: str, trial: int | None = None, storage: str | None = None,
                 study_name: str | None = None, pruner=None, warmup_steps: int = 2, token_batches: int = 8):
        if trial is not None and not (storage and study_name):
            raise ValueError("search.trial is set but search.storage/search.study_name are not: they come from "
                             "hydra.sweeper.storage and hydra.sweeper.study_name (conf/search/paper.yaml)")
        self.monitor = monitor
        self.trial_number = trial
        self.storage, self.study_name, self.pruner = storage, study_name, pruner
        self.warmup_steps, self.token_batches = warmup_steps, token_batches
        self.trial = None
        self.reports = 0
        self._t_start, self._timed_steps, self._t_val, self._val_time = None, 0, None, 0.0
        self._tokens, self._token_samples, self._token_batches_seen = 0, 0, 0

    # ---- the trial --------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module):
        if self.trial_number is None or not trainer.is_global_zero:
            return
        self.trial = load_trial(self.storage, self.study_name, int(self.trial_number), self.pruner)
        client, run_id = _mlflow_run(trainer)
        if run_id is not None:
            self.trial.set_user_attr(TRIAL_RUN_ATTR, run_id)
            client.set_tag(run_id, "optuna.study", self.study_name)
            client.set_tag(run_id, "optuna.trial", str(self.trial_number))
        if len(self.trial.study.directions) > 1:
            log.info("multi-objective study: Optuna cannot prune it, the trial runs to the end")

    def on_validation_start(self, trainer, pl_module):
        self._t_val = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        if self._t_start is not None and self._t_val is not None:
            self._val_time += time.perf_counter() - max(self._t_val, self._t_start)  # validation is not a step
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        bad = [(n, float(metrics[n])) for n in ("train/loss", "val/loss", self.monitor)
               if n in metrics and not math.isfinite(float(metrics[n]))]
        # every rank stops together (a rank raising alone would leave the others waiting in a collective)
        if trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            raise TrialDiverged(f"{bad or 'another rank'} at step {trainer.global_step}: the trial diverged")
        if self.trial_number is None:
            return
        if self.monitor not in metrics:
            raise KeyError(f"search.monitor={self.monitor!r}: validation logged no such metric; it has "
                           f"{sorted(metrics)}")
        step, value = int(trainer.global_step), float(metrics[self.monitor])
        prune = False
        if self.trial is not None and len(self.trial.study.directions) == 1:  # global rank 0 holds the trial
            self.trial.report(value, step=step)
            self.reports += 1
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune, src=0):
            import optuna

            client, run_id = _mlflow_run(trainer) if trainer.is_global_zero else (None, None)
            if run_id is not None:
                client.set_tag(run_id, STATE_TAG, "PRUNED")
                client.log_metric(run_id, "search/pruned_at_step", step)
            raise optuna.TrialPruned(f"trial {self.trial_number} pruned at step {step}: {self.monitor}={value}")

    # ---- cost metrics -----------------------------------------------------------------------------------------
    def on_fit_end(self, trainer, pl_module):
        """The final cost values into the MLflow run (Lightning sends step metrics every log_every_n_steps only)."""
        client, run_id = _mlflow_run(trainer)
        if run_id is None or not trainer.is_global_zero:
            return
        for name in COST_METRICS:
            if name in trainer.callback_metrics:
                client.log_metric(run_id, name, float(trainer.callback_metrics[name]), step=trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._t_start is None and trainer.global_step >= self.warmup_steps:
            self._t_start = time.perf_counter()
            self._timed_steps = trainer.global_step
        if batch is not None and self._token_batches_seen < self.token_batches:
            ids = batch["input_ids"]  # (1, T) packed samples
            cu = batch.get("cu_seqlens")
            self._tokens += int((ids == PLACEHOLDER_ID).sum())
            self._token_samples += int(cu.numel() - 1) if cu is not None else ids.shape[0]
            self._token_batches_seen += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._token_samples:
            pl_module.log("search/modality_tokens", self._tokens / self._token_samples, batch_size=1)
        steps = trainer.global_step - self._timed_steps
        if self._t_start is not None and steps > 0:
            # wall time between batch starts: data, forward, backward, step; the GPU queue is drained by the
            # loss logging, so over several steps this is the device time per step
            step_time = (time.perf_counter() - self._t_start - self._val_time) / steps
            pl_module.log("search/step_time_s", torch.tensor(step_time), batch_size=1)


def search_summary(study) -> dict[str, Any]:
    """Counts of a study's trials by state, and the best value/params (single objective, when one completed)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    summary: dict[str, Any] = {s.name.lower(): sum(t.state == s for t in trials) for s in
                               (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    summary["trials"] = len(trials)
    if len(study.directions) == 1 and summary["complete"]:
        summary["best_value"] = study.best_value
        summary["best_params"] = dict(study.best_params)
    return summary
