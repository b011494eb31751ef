"""Read a sweep's runs from MLflow: the parent run (one per Hydra multirun) and its children, as pandas frames."""

from __future__ import annotations

import os

import pandas as pd

EXPERIMENT = "modrwkv"


def default_tracking_uri() -> str:
    """``sqlite:///<MODRWKV_ROOT or .>/mlflow.db``: where the training runs log by default (conf/logger/mlflow.yaml)."""
    root = os.path.abspath(os.environ.get("MODRWKV_ROOT", "."))
    return f"sqlite:///{root}/mlflow.db"


def search_all(tracking_uri: str, experiment: str = EXPERIMENT) -> pd.DataFrame:
    """Every run of the experiment (mlflow.search_runs with the tracking URI passed explicitly)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        raise LookupError(f"no MLflow experiment {experiment!r} at {tracking_uri}: run a sweep first "
                          "(python src/train.py -m +sweep=smoke)")
    return mlflow.search_runs(experiment_names=[experiment], max_results=100_000)


def _tag(df: pd.DataFrame, name: str) -> pd.Series:
    col = f"tags.{name}"
    return df[col] if col in df else pd.Series([None] * len(df), index=df.index, dtype=object)


def list_sweeps(tracking_uri: str, experiment: str = EXPERIMENT) -> pd.DataFrame:
    """One row per parent run: run_id, sweep name, preset, start time, number of children, status."""
    runs = search_all(tracking_uri, experiment)
    parents = runs[_tag(runs, "modrwkv.kind") == "sweep"]
    out = pd.DataFrame({"run_id": parents["run_id"], "sweep": _tag(parents, "modrwkv.sweep"),
                        "preset": _tag(parents, "modrwkv.preset"), "start_time": parents["start_time"],
                        "status": parents["status"]})
    out["children"] = [int((_tag(runs, "mlflow.parentRunId") == r).sum()) for r in out["run_id"]]
    return out.sort_values("start_time", ascending=False).reset_index(drop=True)


def load_sweep(tracking_uri: str, sweep: str | None = None, parent_run_id: str | None = None,
               experiment: str = EXPERIMENT, all_parents: bool = False) -> tuple[pd.Series, pd.DataFrame]:
    """(the parent run, its children) of a sweep, picked by ``parent_run_id`` or by name (the latest of that name).

    Children are the runs tagged ``mlflow.parentRunId`` = the parent's id, with params.* / metrics.* columns.
    ``all_parents`` (with ``sweep``): the children of every parent run of that name together (e.g. seeds or
    configurations run as separate multiruns into one store); the parent returned is the latest.
    """
    if (sweep is None) == (parent_run_id is None):
        raise ValueError("give exactly one of sweep (a name) or parent_run_id")
    runs = search_all(tracking_uri, experiment)
    if parent_run_id is not None:
        parents = runs[runs["run_id"] == parent_run_id]
        what = f"parent run {parent_run_id}"
    else:
        is_sweep = _tag(runs, "modrwkv.kind") == "sweep"
        named = (_tag(runs, "modrwkv.sweep") == sweep) | (_tag(runs, "mlflow.runName") == sweep)
        parents = runs[is_sweep & named].sort_values("start_time", ascending=False)
        what = f"sweep {sweep!r}"
    if parents.empty:
        known = ", ".join(sorted(set(_tag(runs, "modrwkv.sweep").dropna()))) or "none"
        raise LookupError(f"no {what} in {tracking_uri} (sweeps there: {known})")
    parent = parents.iloc[0]
    ids = list(parents["run_id"]) if all_parents else [parent["run_id"]]
    children = runs[_tag(runs, "mlflow.parentRunId").isin(ids)].reset_index(drop=True)
    if children.empty:
        raise LookupError(f"{what} (run {parent['run_id']}) has no child runs")
    return parent, children


def metric_history(tracking_uri: str, children: pd.DataFrame,
                   keys: tuple[str, ...] = ("train/loss", "val/loss", "val/accuracy", "val/mse")) -> pd.DataFrame:
    """Long frame (run_id, run_name, key, step, value) of each child's logged history of ``keys``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    rows = []
    for _, run in children.iterrows():
        name = run.get("tags.mlflow.runName", run["run_id"])
        for key in keys:
            for m in client.get_metric_history(run["run_id"], key):
                rows.append({"run_id": run["run_id"], "run_name": name, "key": key, "step": m.step,
                             "value": m.value})
    return pd.DataFrame(rows, columns=["run_id", "run_name", "key", "step", "value"])
