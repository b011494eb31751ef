"""The figures, as PNG files (matplotlib Figure objects rendered to PNG: no display needed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure  # drawn without pyplot: no backend or display involved


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_metric_vs_tokens(table: pd.DataFrame, metric: str, path: str | Path, paper_metric: str | None = None) -> Path:
    """Our ``metric`` (and the paper's, on a second axis, when in the table) against modality tokens (Table 7 / Fig. 2).

    ``table`` is a sweep table with a "tokens" column.
    """
    data = table.dropna(subset=["tokens"]).sort_values("tokens")
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    ax.plot(data["tokens"], data[metric], "o-", label=f"ours: {metric}")
    for _, row in data.iterrows():
        ax.annotate(str(row.get("conv (k,s)", "")), (row["tokens"], row[metric]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.set_xlabel("modality tokens per sample")
    ax.set_ylabel(metric)
    if paper_metric and paper_metric in data and data[paper_metric].notna().any():
        twin = ax.twinx()
        twin.plot(data["paper tokens"], data[paper_metric], "s--", color="tab:orange", label=paper_metric)
        twin.set_ylabel(paper_metric)
        twin.legend(loc="lower right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("metric vs modality tokens")
    return _save(fig, path)


def plot_training_curves(history: pd.DataFrame, path: str | Path) -> Path:
    """One panel per logged metric (train/loss, val/loss, val/accuracy, ...), one line per run, against step."""
    keys = [k for k in history["key"].unique()] if not history.empty else []
    fig = Figure(figsize=(4.5 * max(1, len(keys)), 3.5))
    axes = fig.subplots(1, max(1, len(keys)), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, run in history[history["key"] == key].groupby("run_name", sort=True):
            run = run.sort_values("step")
            ax.plot(run["step"], run["value"], marker="." if len(run) < 20 else None, label=str(name)[:40])
        ax.set_title(key)
        ax.set_xlabel("step")
    if keys:
        axes[0][0].legend(fontsize=7)
    else:
        axes[0][0].text(0.5, 0.5, "no metric history", ha="center", va="center")
    return _save(fig, path)


def plot_heatmap(table: pd.DataFrame, rows: str, cols: str, metric: str, path: str | Path) -> Path:
    """``metric`` on a rows x cols grid (Table 6's encoder x backbone size layout), values written in the cells."""
    grid = table.pivot_table(index=rows, columns=cols, values=metric, aggfunc="mean", sort=False)
    fig = Figure(figsize=(1.6 * grid.shape[1] + 2, 0.9 * grid.shape[0] + 1.5))
    ax = fig.subplots()
    im = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(i) for i in grid.index])
    ax.set_xlabel(cols)
    ax.set_ylabel(rows)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid.iat[i, j]
            if pd.notna(v):
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", color="w", fontsize=9)
    fig.colorbar(im, ax=ax, label=metric)
    ax.set_title(metric)
    return _save(fig, path)
