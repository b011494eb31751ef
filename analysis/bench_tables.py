"""The benchmark evaluations (src/eval.py's MLflow runs) laid out as the paper's Tables 2-8, ours beside the paper's.

Each table has one row per configuration (its key parameters, from the training run), and per benchmark three
columns: ours, the paper's number for the same configuration, and ours - paper. The paper's rows we have not run
are listed too (ours empty). Ablation tables (5-8) use the evaluations of models trained in that sweep
(tag modrwkv.train_sweep) when there are any, else every evaluation.

    python analysis/summarize.py --paper-tables [--out analysis/out]
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.paper_tables import TABLE5, TABLE6, TABLE7, TABLE8, TS_DATASETS
from analysis.runs import search_all

VISION = (("VQAv2", "vqav2", "accuracy"), ("GQA", "gqa", "accuracy"), ("SQA-I", "sqa_img", "accuracy"),
          ("TextVQA", "textvqa", "accuracy"), ("POPE", "pope", "f1"), ("MMBench", "mmbench", "circular"),
          ("MMMU", "mmmu", "accuracy"))
VQA4 = (VISION[0], VISION[3], VISION[1], VISION[2])  # Tables 6-8's order: VQAv2 / TextVQA / GQA / SQA-I
ASR = (("clean", "librispeech_clean", "wer"), ("other", "librispeech_other", "wer"), ("dev", "aishell1_dev", "cer"),
       ("test", "aishell1_test", "cer"))
TS = tuple((label, bench, "mse") for label, bench in zip(
    TS_DATASETS, ("ecl", "ett_h1", "ett_h2", "ett_m1", "ett_m2", "weather", "traffic")))

# Table 2 (3B, SigLIP2), Table 3 (0.4B, per audio encoder), Table 4 (WaveNet, adapter 4x), from the paper
TABLE2 = {("siglip2", "2.9b"): (78.3, 60.8, 70.9, 51.1, 87.1, 66.6, 38.7)}
TABLE3 = {"wavlm-large": (2.43, 6.51, 9.68, 10.33), "wavlm-base-plus": (3.08, 10.38, 12.40, 13.46),
          "whisper-medium": (5.33, 12.28, 5.08, 5.83), "whisper-small": (6.24, 16.92, 6.29, 6.95)}
TABLE4 = {("wavenet", "4"): (0.342, 0.648, 0.453, 0.227, 0.426, 0.203, 0.342)}


@dataclass(frozen=True)
class TableSpec:
    """title; key: the parameter names of a row; columns: (label, benchmark, metric); paper: key -> values in column
    order (tuple of str keys); sweep: the training sweep of an ablation table."""

    title: str
    key: tuple[str, ...]
    columns: tuple
    paper: dict
    sweep: str | None = None


def _t7(values):
    return values[1:]  # Table 7 starts with the number of modality tokens


TABLES = {
    "table2": TableSpec("Table 2: vision benchmarks (3B, SigLIP2)", ("encoder", "backbone_scale"), VISION, TABLE2),
    "table3": TableSpec("Table 3: ASR, LibriSpeech WER / Aishell-1 CER (0.4B)", ("encoder_name",), ASR,
                        {(k,): v for k, v in TABLE3.items()}),
    "table4": TableSpec("Table 4: zero-shot forecasting MSE (lookback 720, horizon 96)", ("encoder", "scale"), TS,
                        TABLE4),
    "table5": TableSpec("Table 5: adapter hidden scale, forecasting MSE", ("scale",), TS,
                        {(str(k),): v for k, v in TABLE5.items()}, "adapter_scale"),
    "table6": TableSpec("Table 6: encoder x backbone size", ("encoder", "backbone_scale"), VQA4, TABLE6,
                        "encoder_size"),
    "table7": TableSpec("Table 7: Conv1d token reduction (1.5B, SigLIP2)", ("conv",), VQA4,
                        {(k,): _t7(v) for k, v in TABLE7.items()}, "conv_reduction"),
    "table8": TableSpec("Table 8: backbone checkpoint", ("backbone_scale", "checkpoint"), VQA4, TABLE8,
                        "backbone_init"),
}


def eval_results(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (training run, benchmark): its key parameters and every bench/<benchmark>/<metric> value (the
    latest evaluation when a benchmark was run several times)."""
    kind = runs.get("tags.modrwkv.kind", pd.Series(dtype=object))
    evals = runs[kind == "eval"].sort_values("start_time")
    if evals.empty:
        return pd.DataFrame()
    evals = evals.assign(train=evals.get("tags.modrwkv.train_run_dir"), sweep=evals.get("tags.modrwkv.train_sweep"))
    return evals.drop_duplicates(["train", "params.benchmark"], keep="last")


def _fmt(v) -> str:
    return "" if v is None or pd.isna(v) else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"


def build_table(spec: TableSpec, evals: pd.DataFrame) -> pd.DataFrame:
    """Ours / paper / difference per configuration of ``spec`` (rows keyed by its parameters)."""
    if not evals.empty and spec.sweep and (evals["sweep"] == spec.sweep).any():
        evals = evals[evals["sweep"] == spec.sweep]
    ours: dict[tuple, dict[str, float]] = {}
    for _, row in evals.iterrows():
        key = tuple(str(row.get(f"params.{k}")) for k in spec.key)
        for label, bench, metric in spec.columns:
            value = row.get(f"metrics.bench/{bench}/{metric}")
            if row.get("params.benchmark") == bench and value is not None and not pd.isna(value):
                ours.setdefault(key, {})[label] = float(value)
    keys = list(ours) + [k for k in spec.paper if k not in ours]
    rows = []
    for key in keys:
        paper = dict(zip([c[0] for c in spec.columns], spec.paper.get(key, ())))
        row = dict(zip(spec.key, key))
        for label, _, _ in spec.columns:
            mine, ref = ours.get(key, {}).get(label), paper.get(label)
            row[label] = mine
            row[f"{label} paper"] = ref
            row[f"{label} diff"] = None if mine is None or ref is None else mine - ref
        rows.append(row)
    return pd.DataFrame(rows, columns=[*spec.key, *[f"{c[0]}{s}" for c in spec.columns
                                                      for s in ("", " paper", " diff")]])


def to_markdown(spec: TableSpec, table: pd.DataFrame) -> str:
    """A markdown table: key columns, then "ours / paper (diff)" per benchmark."""
    labels = [c[0] for c in spec.columns]
    lines = [f"### {spec.title}", "", "| " + " | ".join([*spec.key, *labels]) + " |",
             "|" + "---|" * (len(spec.key) + len(labels))]
    for _, row in table.iterrows():
        cells = [str(row[k]) for k in spec.key]
        for label in labels:
            mine, ref, diff = row[label], row[f"{label} paper"], row[f"{label} diff"]
            cell = f"{_fmt(mine) or '-'} / {_fmt(ref) or '-'}"
            cells.append(cell + (f" ({'+' if diff >= 0 else ''}{_fmt(diff)})" if diff is not None
                                 and not pd.isna(diff) else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_tables(tracking_uri: str, out_dir: str | None = None) -> str:
    """Tables 2-8 as markdown (ours / paper (ours - paper)); with ``out_dir``, also <table>.csv and tables.md."""
    from pathlib import Path

    evals = eval_results(search_all(tracking_uri))
    parts = []
    for name, spec in TABLES.items():
        table = build_table(spec, evals)
        parts.append(to_markdown(spec, table))
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            table.to_csv(Path(out_dir) / f"{name}.csv", index=False)
    text = "\n\n".join(parts) + "\n"
    if out_dir:
        (Path(out_dir) / "paper_tables.md").write_text(text)
    return text
