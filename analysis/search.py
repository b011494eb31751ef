"""The view of a Bayesian search (conf/search/): its trials from MLflow, the best configuration, the Pareto front,
parameter importances and PNG plots.

    python -m analysis.search --study search_paper                    # MLflow store of MODRWKV_ROOT (or .)
    python -m analysis.search --study search_paper_pareto --objective val/accuracy search/modality_tokens \
        --direction maximize minimize

Each trial is an MLflow child run tagged ``optuna.study``/``optuna.trial``/``optuna.state`` (a resumed search
has one parent run per session; the study tag gathers them). Importances: Optuna's fANOVA
(``optuna.importance.get_param_importances``) when the study's storage is given and has enough complete trials,
else the spread of the mean objective over each parameter's values (pandas), named in the output.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.runs import default_tracking_uri, search_all

# the searched choices as the runs log them (training/params.py), and how the plots name them
PARAMS = {"params.encoder": "encoder", "params.conv": "conv (k,s)", "params.scale": "adapter scale",
          "params.checkpoint": "backbone init"}


@dataclass
class SearchView:
    """What :func:`analyse` found and wrote."""

    trials: pd.DataFrame  # one row per trial: number, state, the searched params, the objective metrics
    objectives: list[str]
    directions: list[str]
    best: pd.DataFrame  # the best trial (one objective) or the Pareto front (several)
    importances: pd.Series  # parameter -> importance (sums to 1 over the parameters that vary)
    importance_method: str
    files: dict[str, Path] = field(default_factory=dict)


def search_trials(tracking_uri: str, study: str) -> pd.DataFrame:
    """The study's trials as MLflow recorded them (children tagged ``optuna.study``), ordered by trial number."""
    runs = search_all(tracking_uri)
    col = "tags.optuna.study"
    kids = runs[(runs[col] == study) & runs["tags.optuna.trial"].notna()] if col in runs else runs.iloc[0:0]
    if kids.empty:
        known = sorted(set(runs[col].dropna())) if col in runs else []
        raise LookupError(f"no trials of study {study!r} in {tracking_uri} (studies there: {known or 'none'})")
    out = pd.DataFrame({"trial": kids["tags.optuna.trial"].astype(int), "state": kids["tags.optuna.state"],
                        "run_id": kids["run_id"], "status": kids["status"]})
    for p, name in PARAMS.items():
        out[name] = kids[p] if p in kids else None
    for m in [c for c in kids if c.startswith("metrics.")]:
        out[m.removeprefix("metrics.")] = kids[m]
    return out.dropna(axis=1, how="all").sort_values("trial").reset_index(drop=True)


def pareto_front(frame: pd.DataFrame, objectives: list[str], directions: list[str]) -> pd.DataFrame:
    """The rows no other row dominates (at least as good in every objective, better in one)."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    vals = frame[objectives].to_numpy() * signs  # larger is better in every column
    keep = [not any((o >= v).all() and (o > v).any() for o in vals) for v in vals]
    return frame[keep].sort_values(objectives[0], ascending=directions[0] != "maximize")


def spread_importances(frame: pd.DataFrame, objective: str) -> pd.Series:
    """Per parameter: max - min of the mean objective over its values, normalised to sum to 1 (0 if none vary)."""
    spread = {}
    for name in PARAMS.values():
        if name in frame and frame[name].nunique() > 1:
            means = frame.groupby(name)[objective].mean()
            spread[name] = float(means.max() - means.min())
    s = pd.Series(spread, dtype=float)
    return s / s.sum() if s.sum() > 0 else s


def study_objectives(storage: str, study: str) -> tuple[list[str] | None, list[str]]:
    """(objective metric names, directions) of the study, as the sweeper stored them."""
    import optuna

    s = optuna.load_study(study_name=study, storage=storage)
    objective = s.user_attrs.get("objective")
    names = None if objective is None else [objective] if isinstance(objective, str) else list(objective)
    return names, [d.name.lower() for d in s.directions]


def optuna_importances(storage: str, study: str) -> pd.Series:
    """Optuna's fANOVA importances of the study's parameters (its own names, e.g. ``adapter.scale``)."""
    import optuna

    s = optuna.load_study(study_name=study, storage=storage)
    return pd.Series(optuna.importance.get_param_importances(s), dtype=float)


def _plots(view: SearchView, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    done = view.trials[view.trials["state"] == "COMPLETE"]
    obj, maximize = view.objectives[0], view.directions[0] == "maximize"
    fig, ax = plt.subplots(figsize=(6, 3.5))
    colours = {"COMPLETE": "tab:blue", "PRUNED": "tab:orange", "FAIL": "tab:red"}
    for state, rows in view.trials.groupby("state"):
        if obj in rows:
            ax.scatter(rows["trial"], rows[obj], label=state, color=colours.get(state, "grey"))
    if not done.empty:
        best = done[obj].cummax() if maximize else done[obj].cummin()
        ax.step(done["trial"], best, where="post", color="black", label="best so far")
    ax.set(xlabel="trial", ylabel=obj, title="search history")
    ax.legend(fontsize=8)
    files["history"] = out / "search_history.png"
    fig.tight_layout()
    fig.savefig(files["history"], dpi=120)
    plt.close(fig)
    if not view.importances.empty:
        fig, ax = plt.subplots(figsize=(5, 3))
        view.importances.sort_values().plot.barh(ax=ax)
        ax.set(xlabel=f"importance ({view.importance_method})", title=f"what matters for {obj}")
        files["importances"] = out / "search_importances.png"
        fig.tight_layout()
        fig.savefig(files["importances"], dpi=120)
        plt.close(fig)
    if len(view.objectives) > 1 and not done.empty:
        x, y = view.objectives[:2]
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(done[x], done[y], color="lightgrey", label="trials")
        front = view.best.sort_values(x)
        ax.plot(front[x], front[y], "o-", color="tab:red", label="Pareto front")
        ax.set(xlabel=x, ylabel=y, title="Pareto front")
        ax.legend(fontsize=8)
        files["pareto"] = out / "search_pareto.png"
        fig.tight_layout()
        fig.savefig(files["pareto"], dpi=120)
        plt.close(fig)
    return files


def analyse(tracking_uri: str, study: str, out: Path, objectives: list[str] | None = None,
            directions: list[str] | None = None, storage: str | None = None) -> SearchView:
    """Read the study's trials from MLflow; write trials.csv, best.csv, importances.csv and the PNGs to ``out``.

    ``objectives``/``directions`` default to the study's (stored by the sweeper in ``storage``), else
    conf/search/paper.yaml's (val/accuracy, maximised). ``storage``: the study's Optuna storage; with it, and the
    study's own single objective, the importances are fANOVA's (else pandas').
    """
    stored, stored_dirs = study_objectives(storage, study) if storage is not None else (None, [])
    objectives = objectives or stored or ["val/accuracy"]
    if directions is None:
        directions = stored_dirs if objectives == stored else ["maximize"] * len(objectives)
    if len(directions) != len(objectives) or any(d not in ("maximize", "minimize") for d in directions):
        raise ValueError(f"directions={directions}: one of maximize/minimize per objective {objectives}")
    trials = search_trials(tracking_uri, study)
    missing = [o for o in objectives if o not in trials]
    if missing:
        raise KeyError(f"objective(s) {missing} not logged by the trials; they have {sorted(trials.columns)}")
    done = trials[trials["state"] == "COMPLETE"]
    if done.empty:
        best = done
    elif len(objectives) == 1:
        best = done.sort_values(objectives[0], ascending=directions[0] != "maximize").head(1)
    else:
        best = pareto_front(done, objectives, directions)
    method = "spread of means"
    imp = spread_importances(done, objectives[0]) if not done.empty else pd.Series(dtype=float)
    if storage is not None and objectives == stored and len(objectives) == 1:
        try:
            imp, method = optuna_importances(storage, study), "fANOVA"
        except (RuntimeError, ValueError) as e:  # too few complete trials, or no parameter varies
            print(f"fANOVA importances unavailable ({e}); using the spread of means", file=sys.stderr)
    view = SearchView(trials, objectives, directions, best, imp, method)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("trials", trials), ("best", best), ("importances", imp.rename("importance"))):
        path = out / f"search_{name}.csv"
        frame.to_csv(path)
        view.files[name] = path
    view.files.update(_plots(view, out))
    return view


def main(argv: list[str] | None = None) -> int:
    """The command line: print the counts, the best trial or front and the importances; 2 on a bad study/metric."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default="search_paper", help="the study name (hydra.sweeper.study_name)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: sqlite:///<MODRWKV_ROOT>/mlflow.db)")
    p.add_argument("--storage", default=None, help="the Optuna storage, for fANOVA importances "
                                                   "(default: sqlite:///<MODRWKV_ROOT>/optuna.db if it exists)")
    p.add_argument("--objective", nargs="+", default=None, help="metric(s), as in the search's `objective`")
    p.add_argument("--direction", nargs="+", default=None, help="maximize/minimize per objective")
    p.add_argument("--out", type=Path, default=Path("analysis/search_out"))
    a = p.parse_args(argv)
    root = Path(os.environ.get("MODRWKV_ROOT", ".")).resolve()
    storage = a.storage or (f"sqlite:///{root}/optuna.db" if (root / "optuna.db").exists() else None)
    try:
        view = analyse(a.tracking_uri or default_tracking_uri(), a.study, a.out, a.objective, a.direction, storage)
    except (LookupError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    counts = view.trials["state"].value_counts().to_dict()
    print(f"study {a.study}: {len(view.trials)} trials {counts}")
    print("best" if len(view.objectives) == 1 else "Pareto front", view.best.to_string(index=False), sep=":\n")
    print(f"importances ({view.importance_method}):", view.importances.round(3).to_dict())
    for kind, path in view.files.items():
        print(kind, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
