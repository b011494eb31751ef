"""One sweep -> its table (markdown + CSV) and figures (PNG), the work of summarize.py and the notebook."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from modrwkv.modalities import MODALITIES

from .plots import plot_heatmap, plot_metric_vs_tokens, plot_training_curves
from .runs import load_sweep, metric_history
from .tables import runs_table, sweep_table, title_of, to_markdown

# the metric a sweep is judged by, per modality (higher is better for accuracy, lower for the others)
MAIN_METRIC = {name: spec.main_metric for name, spec in MODALITIES.items()}


@dataclass
class Report:
    """What ``summarize`` produced: the table, the parent run and the files written."""

    sweep: str
    parent_run_id: str
    table: pd.DataFrame
    markdown: str
    files: dict[str, Path] = field(default_factory=dict)


def summarize(tracking_uri: str, out_dir: str | Path, sweep: str | None = None, parent_run_id: str | None = None,
              with_paper: bool | None = None, all_parents: bool = False) -> Report:
    """Read the sweep from MLflow, write ``<sweep>.md``, ``<sweep>.csv`` and the PNG figures into ``out_dir``.
    ``all_parents``: every multirun of that sweep name together (``load_sweep``)."""
    parent, children = load_sweep(tracking_uri, sweep=sweep, parent_run_id=parent_run_id, all_parents=all_parents)
    name = sweep or parent.get("tags.modrwkv.sweep") or parent["run_id"]
    stem = name if re.fullmatch(r"[\w.-]{1,64}", name) else f"sweep-{parent['run_id'][:8]}"  # unnamed: overrides
    table = sweep_table(children, name, with_paper=with_paper)
    modality = children["params.modality"].iloc[0] if "params.modality" in children else "image"
    metric = MAIN_METRIC.get(modality, "val/loss")
    preset = parent.get("tags.modrwkv.preset", "?")
    parents = sorted(set(children["tags.mlflow.parentRunId"])) if all_parents else [parent["run_id"]]
    which = f"parent run {parents[0]}" if len(parents) == 1 else f"parent runs {', '.join(parents)}"
    md = to_markdown(table, f"{title_of(name)} (preset {preset}, {which})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out / f"{stem}.md", "csv": out / f"{stem}.csv"}
    table.to_csv(files["csv"], index=False)
    if (table["runs"] > 1).any():  # several runs (seeds) of a configuration: each run's numbers too
        runs = runs_table(children, name)
        md += "\n" + to_markdown(runs, "Each run (mean and std above are over these)")
        files["runs_csv"] = out / f"{stem}_runs.csv"
        runs.to_csv(files["runs_csv"], index=False)
    files["markdown"].write_text(md)
    history = metric_history(tracking_uri, children, keys=("train/loss", "val/loss", metric))
    files["curves"] = plot_training_curves(history, out / f"{stem}_curves.png")
    if metric in table and "tokens" in table and table.get("conv (k,s)", pd.Series()).nunique() > 1:
        files["tokens"] = plot_metric_vs_tokens(table, metric, out / f"{stem}_tokens.png",
                                                paper_metric="paper VQAv2" if "paper VQAv2" in table else None)
    if metric in table and {"encoder", "backbone"} <= set(table) and table["encoder"].nunique() > 1:
        files["heatmap"] = plot_heatmap(table, "encoder", "backbone", metric, out / f"{stem}_heatmap.png")
    return Report(name, parent["run_id"], table, md, files)
