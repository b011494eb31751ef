"""The sweeper behind ``hydra/sweeper=modrwkv_optuna``: hydra-optuna-sweeper's ask-and-tell search, extended.

hydra-optuna-sweeper (1.3) parses ``hydra.sweeper.params`` into Optuna distributions, asks the study for trials and
launches one Hydra job per trial. This subclass keeps its parsing and trial configuration and changes the loop:

- each job gets the overrides ``search.trial=<number>``, ``search.storage=<url>`` and ``search.study_name=<name>``
  (``search`` is ``search_key``): the job's :class:`~modrwkv.training.search.SearchCallback` opens the trial from
  the storage to report and prune, so the storage must be a database every job can open (SQLite by default);
- a job that raised ``optuna.TrialPruned`` is told as PRUNED (the stock sweeper tells every exception as FAIL), one
  that raised anything else or returned a missing or non-finite objective as FAIL; never as a score;
- ``n_trials`` is the study's total: a resumed study (same ``storage`` and ``study_name``) runs only the trials
  still missing, after marking the trials an interrupted sweep left RUNNING as FAIL (not counted: they run again);
- the MLflow state of each trial's run follows Optuna's (COMPLETE: FINISHED, PRUNED: KILLED, FAIL: FAILED, tag
  ``optuna.state``), and the parent run gets the study's counts and best trial;
- deletions (``~key``) on the command line reach the jobs unchanged;
- failures abort the search only when more than ``max_failure_rate`` of this sweep's trials failed, judged from
  its third trial on (one early failure does not end a long search).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf
from optuna.trial import TrialState

from .mlflow_runs import PARENT_ID_FILE
from .search import STATE_TAG, TRIAL_RUN_ATTR, search_summary

log = logging.getLogger("modrwkv.search")

INTERRUPTED_ATTR = "interrupted"  # user attribute of a trial an interruption left running (then told FAIL)
MIN_JUDGED = 3  # trials of a sweep before its failure rate can abort it
MLFLOW_STATUS = {TrialState.COMPLETE: None, TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}


def job_outcome(ret: JobReturn, n_objectives: int) -> tuple[TrialState, list[float] | None, str]:
    """(state, values, reason) of one finished job: COMPLETE with its values, PRUNED, or FAIL."""
    if ret.status != JobStatus.COMPLETED:
        err = ret._return_value  # the job's exception (JobReturn.return_value would re-raise it)
        if isinstance(err, optuna.TrialPruned):
            return TrialState.PRUNED, None, str(err)
        return TrialState.FAIL, None, f"{type(err).__name__}: {err}"
    value = ret.return_value
    values = [value] if n_objectives == 1 and not isinstance(value, (list, tuple)) else value
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        return TrialState.FAIL, None, f"the job returned {value!r}, not {n_objectives} number(s): set `objective`"
    if len(values) != n_objectives:
        return TrialState.FAIL, None, f"the job returned {len(values)} values for {n_objectives} objectives"
    if not all(math.isfinite(v) for v in values):
        return TrialState.FAIL, None, f"non-finite objective {values}"
    return TrialState.COMPLETE, values, ""


class SearchSweeper(OptunaSweeperImpl):
    """hydra-optuna-sweeper's ``OptunaSweeperImpl`` with pruning, resumption and MLflow states (module docstring)."""

    def __init__(self, *, search_key: str = "search", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.search_key = search_key

    # ---- MLflow ------------------------------------------------------------------------------------------------
    def _mlflow(self):
        """(client, parent run id) when the jobs log to MLflow (the parent is MLflowParentRun's), else (None, None)."""
        logger = self.config.get("logger") or {}
        if logger.get("kind") != "mlflow":
            return None, None
        from mlflow.tracking import MlflowClient

        f = Path(self.config.hydra.sweep.dir) / PARENT_ID_FILE
        return MlflowClient(tracking_uri=logger.tracking_uri), (f.read_text().strip() if f.exists() else None)

    def _sync_run(self, client, trial: optuna.trial.FrozenTrial, state: TrialState, reason: str) -> None:
        """Set the MLflow state of the trial's run (recorded by the job in the trial's user attributes)."""
        run_id = trial.user_attrs.get(TRIAL_RUN_ATTR)
        if client is None or run_id is None:
            return
        client.set_tag(run_id, STATE_TAG, state.name)
        if reason:
            client.set_tag(run_id, "optuna.reason", reason[:500])
        if MLFLOW_STATUS[state] is not None:
            client.set_terminated(run_id, status=MLFLOW_STATUS[state])

    def _trial_overrides(self, study: optuna.Study, trial: optuna.trial.Trial) -> tuple[str, ...]:
        """What the job needs to open its trial: number, storage URL and study name (quoted for Hydra's parser)."""
        k = self.search_key
        return (f"{k}.trial={trial.number}", f"{k}.storage='{self.storage}'", f"{k}.study_name='{study.study_name}'")

    def _frozen(self, study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
        return next(t for t in study.get_trials(deepcopy=False) if t.number == number)

    # ---- the search --------------------------------------------------------------------------------------------
    def _open_study(self, directions: list[str]) -> optuna.Study:
        """The study (created, or loaded to resume), with trials left RUNNING by an interrupted sweep marked FAIL."""
        if callable(self.sampler) and not isinstance(self.sampler, optuna.samplers.BaseSampler):
            raise ValueError("hydra.sweeper.sampler: GridSampler is not supported here; the grids are in sweeps/")
        study = optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=self.sampler,
                                    directions=directions, load_if_exists=True)
        if [d.name.lower() for d in study.directions] != [d.lower() for d in directions]:
            raise ValueError(f"study {study.study_name!r} in {self.storage} has directions "
                             f"{[d.name for d in study.directions]}, not hydra.sweeper.direction={directions}: "
                             "use another study_name")
        objective = OmegaConf.to_container(OmegaConf.create({"o": self.config.get("objective")}))["o"]
        study.set_user_attr("objective", objective)  # what the values are (analysis/search.py reads it)
        client, _ = self._mlflow()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            log.warning("trial %d was left %s by an interrupted search: marked FAIL", t.number, t.state.name)
            self._mark_interrupted(study, t.number)  # not counted in n_trials: the trial runs again
            study.tell(t.number, state=TrialState.FAIL)
            self._sync_run(client, t, TrialState.FAIL, "interrupted")
            self._close_interrupted_parent(client, t)
        if study.get_trials(deepcopy=False):
            # a seeded sampler would otherwise replay its first random suggestions (the trials already run)
            self.sampler.reseed_rng()
            log.info("resuming: the sampler is reseeded, so its start-up suggestions differ from the first session's")
        return study

    def _mark_interrupted(self, study: optuna.Study, number: int) -> None:
        store = optuna.storages.get_storage(self.storage)
        trial_id = store.get_trial_id_from_study_id_trial_number(store.get_study_id_from_name(study.study_name),
                                                                 number)
        store.set_trial_user_attr(trial_id, INTERRUPTED_ATTR, True)

    def _close_interrupted_parent(self, client, trial: optuna.trial.FrozenTrial) -> None:
        """The interrupted session's parent run never got its end: mark it KILLED (it holds the trial's run)."""
        run_id = trial.user_attrs.get(TRIAL_RUN_ATTR)
        if client is None or run_id is None:
            return
        parent = client.get_run(run_id).data.tags.get("mlflow.parentRunId")
        if parent and client.get_run(parent).info.status == "RUNNING":
            client.set_tag(parent, "optuna.interrupted_at_trial", str(trial.number))
            client.set_terminated(parent, status="KILLED")

    def sweep(self, arguments: list[str]) -> None:
        """Run the search: ask, launch, tell, until the study has ``n_trials`` finished trials."""
        self._process_searchspace_config()
        params_conf = self._parse_sweeper_params_config() + list(arguments)
        # deletions (~key) go to every job as they are (hydra-optuna-sweeper 1.3 would turn them into "~key=None")
        deletions = tuple(a for a in params_conf if a.startswith("~"))
        distributions, fixed = create_params_from_overrides([a for a in params_conf if not a.startswith("~")])
        if self.search_space_distributions:
            distributions = {**self.search_space_distributions, **distributions}
        for name in fixed:  # a value on the command line fixes that parameter
            distributions.pop(name, None)
        if not isinstance(self.storage, str):
            raise ValueError(f"hydra.sweeper.storage={self.storage!r}: give a database URL; the jobs reach their "
                             "trial through it (e.g. sqlite:///<root>/optuna.db, as conf/search/paper.yaml sets)")
        mine = {f"{self.search_key}.{k}" for k in ("trial", "storage", "study_name")}
        own = [k for k in (*distributions, *fixed, *deletions) if k.lstrip("+~").split("=")[0] in mine]
        if own:
            raise ValueError(f"{own}: the sweeper sets {self.search_key}.trial/storage/study_name itself")
        directions = self._get_directions()
        study = self._open_study(directions)
        client, parent = self._mlflow()
        done = sum(not t.user_attrs.get(INTERRUPTED_ATTR) for t in study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))
        to_go = max(0, self.n_trials - done)
        log.info("study %s in %s: %d trials done, %d to go (n_trials=%d), directions %s, sampler %s",
                 study.study_name, self.storage, done, to_go, self.n_trials, directions, type(self.sampler).__name__)
        if client is not None and parent is not None:
            client.set_tag(parent, "optuna.study", study.study_name)
            client.set_tag(parent, "optuna.storage", str(self.storage))
            client.set_tag(parent, "optuna.trials_before", str(done))
        failures = launched = 0
        while to_go > 0:
            batch = min(to_go, self.n_jobs)
            trials = [study.ask() for _ in range(batch)]
            overrides = [tuple(o) + deletions + self._trial_overrides(study, t)
                         for o, t in zip(self._configure_trials(trials, distributions, fixed), trials)]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            launched += len(returns)
            for trial, ret in zip(trials, returns):
                state, values, reason = job_outcome(ret, len(directions))
                study.tell(trial, values=values, state=state)
                if state != TrialState.COMPLETE:
                    log.warning("trial %d %s: %s", trial.number, state.name, reason)
                failures += state == TrialState.FAIL
                self._sync_run(client, self._frozen(study, trial.number), state, reason)
            to_go -= batch
            if failures and failures / launched > self.max_failure_rate and (launched >= MIN_JUDGED or to_go == 0):
                self._finish(study, client, parent)
                if client is not None and parent is not None:  # Hydra's multirun end (MLflowParentRun) won't run
                    client.set_terminated(parent, status="FAILED")
                raise RuntimeError(f"{failures} of {launched} trials failed (hydra.sweeper.max_failure_rate="
                                   f"{self.max_failure_rate}); see the warnings above and the FAILED MLflow runs")
        self._finish(study, client, parent)

    def _finish(self, study: optuna.Study, client, parent: str | None) -> None:
        """Log the study's counts and best trial(s); write optimization_results.yaml as the stock sweeper does."""
        summary = search_summary(study)
        log.info("study %s: %s", study.study_name, summary)
        if len(study.directions) == 1:
            results = {"name": "optuna", "best_params": summary.get("best_params"),
                       "best_value": summary.get("best_value")}
        else:
            results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values}
                                                       for t in study.best_trials]}
        results["trials"] = {k: summary[k] for k in ("trials", "complete", "pruned", "fail")}
        OmegaConf.save(OmegaConf.create(results), Path(self.config.hydra.sweep.dir) / "optimization_results.yaml")
        if client is None or parent is None:
            return
        for k in ("trials", "complete", "pruned", "fail"):
            client.log_metric(parent, f"search/n_{k}", summary[k])
        if "best_value" in summary:
            client.log_metric(parent, "search/best_value", summary["best_value"])
            client.set_tag(parent, "optuna.best_params", str(summary["best_params"])[:500])
