"""A sweep's children -> the paper's table layout: one row per configuration, our metrics, the paper's beside them."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from modrwkv.modalities import MODALITIES

from .paper_tables import paper_row
from .tokens import modality_tokens

# our metrics per modality, in column order (the final value each run logged)
METRICS = {name: spec.report_metrics for name, spec in MODALITIES.items()}
# params shown for a row, with their column titles; the spec of a sweep picks which identify its rows
COLUMN_TITLES = {"encoder": "encoder", "backbone_scale": "backbone", "backbone": "built size", "conv": "conv (k,s)",
                 "tokens": "tokens", "scale": "adapter scale", "checkpoint": "checkpoint", "adapter": "adapter"}
_ORDER = {"conv": ["none", "3,2", "4,3", "5,4"], "checkpoint": ["random", "base", "g1"],
          "backbone_scale": ["0.1b", "0.4b", "1.5b", "2.9b", "7.2b"], "encoder": ["siglip", "siglip2", "clip"]}


@dataclass(frozen=True)
class SweepSpec:
    """How a search is tabulated: the params that identify its rows (in the paper's order) and its title."""

    title: str
    keys: tuple[str, ...]


SPECS = {
    "encoder_size": SweepSpec("Table 6: vision encoder x backbone size", ("encoder", "backbone_scale", "backbone")),
    "conv_reduction": SweepSpec("Table 7: Conv1d token reduction", ("conv", "tokens")),
    "adapter_scale": SweepSpec("Table 5: adapter hidden scale (time series)", ("scale",)),
    "backbone_init": SweepSpec("Table 8: backbone initialisation", ("backbone_scale", "checkpoint", "backbone")),
    "smoke": SweepSpec("Smoke sweep: no reduction vs Conv1d (3, 2)", ("conv", "tokens")),
}


def flat_params(children: pd.DataFrame) -> pd.DataFrame:
    """params.* columns without the prefix, plus ``tokens`` (modality tokens per sample, where fixed)."""
    params = children.filter(like="params.").rename(columns=lambda c: c.removeprefix("params."))
    if {"encoder_name", "conv", "modality"} <= set(params):
        params["tokens"] = [modality_tokens(e, c) if m == "image" else None
                            for e, c, m in zip(params["encoder_name"], params["conv"], params["modality"])]
    return params


def varying_keys(params: pd.DataFrame) -> tuple[str, ...]:
    """The shown params whose value differs between runs (what a sweep without a spec varied)."""
    keys = [k for k in COLUMN_TITLES if k in params and params[k].astype(str).nunique() > 1]
    if "conv" in keys and "tokens" not in keys and "tokens" in params:
        keys.append("tokens")
    return tuple(keys) or ("adapter",)


def _sort_key(key: str):
    def order(values: pd.Series) -> pd.Series:
        if key in _ORDER:
            return values.map(lambda v: _ORDER[key].index(v) if v in _ORDER[key] else len(_ORDER[key]))
        numeric = pd.to_numeric(values, errors="coerce")
        return numeric if numeric.notna().all() else values.astype(str)

    return order


def _keys_and_metrics(children: pd.DataFrame, sweep: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(the flat params, the params that identify a configuration, the metrics logged) of a sweep's children."""
    params = flat_params(children)
    spec = SPECS.get(sweep)
    keys = [k for k in (spec.keys if spec else varying_keys(params)) if k in params]
    modality = params["modality"].iloc[0] if "modality" in params else "image"
    metrics = [m for m in METRICS.get(modality, ()) if f"metrics.{m}" in children]
    return params, keys, metrics


def _sorted(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return table.sort_values(keys, key=lambda col: _sort_key(col.name)(col)).reset_index(drop=True)


def sweep_table(children: pd.DataFrame, sweep: str, with_paper: bool | None = None) -> pd.DataFrame:
    """One row per configuration of the sweep, with our final metrics (mean over runs of one configuration, e.g.
    seeds; ``runs`` counts them, ``failed`` counts crashed ones) and, for the paper preset (or ``with_paper=True``),
    the paper's numbers. Where some configuration has several runs, each metric is followed by ``<metric> std``:
    the sample standard deviation (ddof 1) over that configuration's runs (empty for a single run)."""
    params, keys, metrics = _keys_and_metrics(children, sweep)
    data = params[keys].copy()
    for m in metrics:
        data[m] = children[f"metrics.{m}"]
    data["failed"] = (children["status"] == "FAILED").astype(int)
    data["runs"] = 1
    agg = {m: "mean" for m in metrics} | {"failed": "sum", "runs": "sum"}
    grouped = data.groupby(keys, dropna=False, sort=False)
    table = grouped.agg(agg).reset_index()
    if metrics and (table["runs"] > 1).any():
        spread = grouped[metrics].std(ddof=1).reset_index(drop=True)
        columns = list(keys)
        for m in metrics:
            table[f"{m} std"] = spread[m].to_numpy()
            columns += [m, f"{m} std"]
        table = table[columns + ["failed", "runs"]]
    table = _sorted(table, keys)
    if with_paper is None:
        with_paper = "preset" in params and (params["preset"] == "paper").all()
    if with_paper:
        paper = pd.DataFrame([paper_row(sweep, row) for row in table[keys].to_dict("records")], index=table.index)
        table = pd.concat([table, paper], axis=1)
    return table.rename(columns=COLUMN_TITLES)


def runs_table(children: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """One row per run of the sweep (e.g. each seed of each configuration): the configuration's params, ``seed``
    (where logged), ``status`` and the final metrics, in the sweep table's order, then by seed."""
    params, keys, metrics = _keys_and_metrics(children, sweep)
    order = keys + (["seed"] if "seed" in params and "seed" not in keys else [])
    data = params[order].copy()
    if "seed" in data:
        data["seed"] = pd.to_numeric(data["seed"], errors="coerce").astype("Int64")
    data["status"] = children["status"].to_numpy()
    for m in metrics:
        data[m] = children[f"metrics.{m}"].to_numpy()
    return _sorted(data, order).rename(columns=COLUMN_TITLES)


def to_markdown(table: pd.DataFrame, title: str | None = None, digits: int = 4) -> str:
    """A GitHub markdown table (no tabulate dependency); floats rounded to ``digits`` significant decimals."""

    def cell(v) -> str:
        if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.0f}"
        return str(v)

    lines = [f"### {title}", ""] if title else []
    cols = [str(c) for c in table.columns]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def title_of(sweep: str) -> str:
    spec = SPECS.get(sweep)
    return spec.title if spec else f"sweep {sweep}"
