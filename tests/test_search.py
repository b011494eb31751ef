"""The Bayesian search (conf/search/paper.yaml, hydra/sweeper=modrwkv_optuna): a real 3-trial search at the tiny
preset nested under one MLflow parent, its resumption after an interruption (with a pruned trial), the outcome of
failed jobs, and analysis/search.py on the search's MLflow data."""

import math
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from hydra.core.utils import JobStatus
from optuna.trial import TrialState

from analysis.search import analyse, pareto_front
from modrwkv.training.search import TrialDiverged, objective_value
from modrwkv.training.search_sweeper import job_outcome
from tests.suite_utils import mlflow_runs, run_train

REPO = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"
# fewer steps than the suite's tiny runs: one validation (step 2) per trial, where the pruner is asked
SHORT = ["preset.max_steps=2", "preset.val_every=2", "preset.data_sizes={train:16,val:8,test:8}",
         "trainer.log_every_n_steps=50",  # the cost metrics must reach MLflow without Lightning's step logging
         "backbone=random",  # base/g1 need task=lm checkpoints (sweeps/README.md)
         "callbacks.search.warmup_steps=1"]  # step 2 is timed


def _study(root):
    return optuna.load_study(study_name="search_paper", storage=f"sqlite:///{root}/optuna.db")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """`python src/train.py -m +search=paper hydra.sweeper.n_trials=3` into a fresh root (system metrics on)."""
    root = tmp_path_factory.mktemp("search")
    proc = run_train(root, "-m", "+search=paper", "hydra.sweeper.n_trials=3", *SHORT,
                     "logger.log_system_metrics=true", "logger.system_metrics_interval_s=0.2")
    return root, proc


def test_three_trials_nested_under_one_parent(searched):
    root, proc = searched
    study = _study(root)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    runs = mlflow_runs(root)
    parents = runs[runs["tags.modrwkv.kind"] == "sweep"]
    assert len(parents) == 1
    parent = parents.iloc[0]
    kids = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert sorted(kids["tags.optuna.trial"].astype(int)) == [0, 1, 2]
    assert set(kids["status"]) == {"FINISHED"} and set(kids["tags.optuna.state"]) == {"COMPLETE"}
    for t in study.trials:  # Optuna's value is the run's val/accuracy; each trial knows its run
        run = kids[kids["run_id"] == t.user_attrs["mlflow_run_id"]].iloc[0]
        assert t.value == pytest.approx(run["metrics.val/accuracy"])
        assert run["params.encoder"] == t.params["encoder"]  # the trial's choice reached the job's config
    assert parent["metrics.search/n_complete"] == 3 and parent["tags.optuna.study"] == "search_paper"
    assert (kids["metrics.search/modality_tokens"] > 0).all() and (kids["metrics.search/step_time_s"] > 0).all()
    assert kids["metrics.system/cpu_utilization_percentage"].notna().all()  # MLflow system metrics, switched on


def test_analysis_of_the_search(searched, tmp_path):
    root, _ = searched
    view = analyse(f"sqlite:///{root}/mlflow.db", "search_paper", tmp_path, storage=f"sqlite:///{root}/optuna.db")
    assert list(view.trials["trial"]) == [0, 1, 2] and set(view.trials["state"]) == {"COMPLETE"}
    best = _study(root).best_value
    assert view.best["val/accuracy"].iloc[0] == pytest.approx(best)
    assert view.objectives == ["val/accuracy"] and view.directions == ["maximize"]  # the study's, from its storage
    total = view.importances.sum()  # fANOVA's or the spread's: normalised, or all zero when every trial ties
    assert total == 0 or math.isclose(total, 1.0, rel_tol=1e-6)
    by_loss = analyse(f"sqlite:///{root}/mlflow.db", "search_paper", tmp_path / "l", objectives=["val/loss"],
                      directions=["minimize"], storage=f"sqlite:///{root}/optuna.db")
    assert by_loss.importance_method == "spread of means"  # not the study's objective: fANOVA would be wrong
    assert math.isclose(by_loss.importances.sum(), 1.0, rel_tol=1e-6)  # val/loss differs between the trials
    assert by_loss.best["val/loss"].iloc[0] == by_loss.trials["val/loss"].min()
    assert view.files["importances"].read_bytes()[:8] == PNG
    assert view.files["history"].read_bytes()[:8] == PNG
    pareto = analyse(f"sqlite:///{root}/mlflow.db", "search_paper", tmp_path / "p",
                     objectives=["val/accuracy", "search/modality_tokens"], directions=["maximize", "minimize"])
    assert pareto.files["pareto"].read_bytes()[:8] == PNG and 1 <= len(pareto.best) <= 3
    with pytest.raises(LookupError, match="studies there"):
        analyse(f"sqlite:///{root}/mlflow.db", "no_such_study", tmp_path)


def test_notebook_shows_the_search(searched, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    root, _ = searched
    nb = nbformat.read(REPO / "analysis" / "search.ipynb", as_version=4)
    for k, v in {"MODRWKV_ROOT": root, "MODRWKV_STUDY": "search_paper", "MODRWKV_ANALYSIS_OUT": tmp_path}.items():
        monkeypatch.setenv(k, str(v))  # the kernel inherits this process's environment
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "analysis")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "study: search_paper" in text and "COMPLETE" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # history and importances
    assert (tmp_path / "search_history.png").exists()


def test_resume_after_an_interruption_with_a_pruned_trial(searched):
    """A sweep killed mid-trial leaves that trial RUNNING: the same command resumes, marks it FAIL and runs only
    the missing trial (n_trials counts the study's finished ones); a pruner that always prunes makes it PRUNED."""
    root, _ = searched
    study = _study(root)
    study.ask()  # what an interrupted sweep leaves: trial 3, RUNNING, never told
    run_train(root, "-m", "+search=paper", "hydra.sweeper.n_trials=4", *SHORT,
              "search.pruner._target_=optuna.pruners.ThresholdPruner", "~search.pruner.n_startup_trials",
              "+search.pruner.lower=2.0", "search.pruner.n_warmup_steps=0")  # accuracy <= 1 < 2: pruned
    states = [t.state for t in _study(root).trials]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.FAIL, TrialState.PRUNED]
    runs = mlflow_runs(root)
    pruned = runs[runs["tags.optuna.trial"] == "4"].iloc[0]
    assert pruned["status"] == "KILLED" and pruned["tags.optuna.state"] == "PRUNED"
    assert pruned["metrics.search/pruned_at_step"] == 2
    parents = runs[runs["tags.modrwkv.kind"] == "sweep"].sort_values("start_time")
    assert len(parents) == 2 and parents.iloc[1]["tags.optuna.trials_before"] == "3"  # not the interrupted one
    assert pruned["tags.mlflow.parentRunId"] == parents.iloc[1]["run_id"]
    assert parents.iloc[1]["metrics.search/n_pruned"] == 1 and parents.iloc[1]["metrics.search/n_fail"] == 1


def _ret(status, value):
    return SimpleNamespace(status=status, _return_value=value, return_value=value)


def test_failed_diverged_and_pruned_jobs_are_not_scores():
    assert job_outcome(_ret(JobStatus.COMPLETED, 0.5), 1) == (TrialState.COMPLETE, [0.5], "")
    assert job_outcome(_ret(JobStatus.COMPLETED, [0.5, 17.0]), 2)[:2] == (TrialState.COMPLETE, [0.5, 17.0])
    assert job_outcome(_ret(JobStatus.FAILED, optuna.TrialPruned("at step 2")), 1)[0] == TrialState.PRUNED
    assert job_outcome(_ret(JobStatus.FAILED, TrialDiverged("loss nan")), 1)[0] == TrialState.FAIL
    for bad in (None, float("nan"), [1.0]):
        assert job_outcome(_ret(JobStatus.COMPLETED, bad), 1 if bad != [1.0] else 2)[0] == TrialState.FAIL
    assert objective_value(None, {}) is None
    assert objective_value(["val/accuracy", "search/modality_tokens"],
                           {"val/accuracy": 0.25, "search/modality_tokens": 16}) == [0.25, 16.0]
    with pytest.raises(KeyError, match="val/accuracy"):
        objective_value("val/accuracy", {"test/accuracy": 0.5})
    with pytest.raises(TrialDiverged):
        objective_value("val/loss", {"val/loss": float("inf")})


def test_pareto_front_keeps_the_undominated():
    import pandas as pd

    frame = pd.DataFrame({"acc": [0.5, 0.6, 0.4, 0.6], "tokens": [10, 20, 5, 30]})
    front = pareto_front(frame, ["acc", "tokens"], ["maximize", "minimize"])
    assert sorted(front.index) == [0, 1, 2]  # row 3 is dominated by row 1


def test_callback_fails_a_diverged_trial_and_prunes_through_the_storage(tmp_path):
    """SearchCallback on its own: a NaN loss raises TrialDiverged; with a trial, the report reaches the storage and
    the pruner's decision raises TrialPruned."""
    import torch

    from modrwkv.training.search import SearchCallback

    strategy = SimpleNamespace(reduce_boolean_decision=lambda d, all=True: d, broadcast=lambda o, src=0: o)
    trainer = SimpleNamespace(sanity_checking=False, global_step=2, strategy=strategy, loggers=[],
                              is_global_zero=True, callback_metrics={"train/loss": torch.tensor(float("nan"))})
    with pytest.raises(TrialDiverged, match="train/loss"):
        SearchCallback("val/accuracy").on_validation_end(trainer, None)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    number = study.ask().number
    cb = SearchCallback("val/accuracy", trial=number, storage=storage, study_name="s",
                        pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    cb.on_fit_start(trainer, None)
    trainer.callback_metrics = {"train/loss": torch.tensor(1.0), "val/accuracy": torch.tensor(0.5)}
    with pytest.raises(optuna.TrialPruned, match="step 2"):
        cb.on_validation_end(trainer, None)
    assert study.trials[0].intermediate_values == {2: 0.5}
    unpruned = SearchCallback("val/accuracy", trial=study.ask().number, storage=storage, study_name="s", pruner=None)
    unpruned.on_fit_start(trainer, None)
    assert isinstance(unpruned.trial.study.pruner, optuna.pruners.NopPruner)  # search.pruner=null: no pruning
    unpruned.on_validation_end(trainer, None)
    with pytest.raises(ValueError, match="hydra.sweeper.storage"):
        SearchCallback("val/accuracy", trial=0)
