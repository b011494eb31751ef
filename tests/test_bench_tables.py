"""analysis/bench_tables.py: evaluation runs -> the paper's Tables 2-8 with the paper's numbers and differences."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.bench_tables import TABLES, build_table, eval_results, to_markdown


def _eval(train, bench, metric, value, start, sweep=None, **params):
    return {"tags.modrwkv.kind": "eval", "tags.modrwkv.train_run_dir": train, "tags.modrwkv.train_sweep": sweep,
            "params.benchmark": bench, f"metrics.bench/{bench}/{metric}": value, "start_time": start,
            **{f"params.{k}": v for k, v in params.items()}}


def test_tables_put_ours_beside_the_paper():
    runs = pd.DataFrame([
        _eval("r1", "vqav2", "accuracy", 70.0, 1, "encoder_size", encoder="siglip2", backbone_scale="0.4b"),
        _eval("r1", "vqav2", "accuracy", 75.0, 2, "encoder_size", encoder="siglip2", backbone_scale="0.4b"),
        _eval("r1", "gqa", "accuracy", 50.0, 3, "encoder_size", encoder="siglip2", backbone_scale="0.4b"),
        _eval("r2", "ett_h1", "mse", 0.7, 4, "adapter_scale", encoder="wavenet", scale="4"),
        {"tags.modrwkv.kind": "job", "start_time": 0},  # a training run: not an evaluation
    ])
    evals = eval_results(runs)
    assert len(evals) == 3  # the later vqav2 evaluation of r1 replaces the earlier one
    t6 = build_table(TABLES["table6"], evals)
    row = t6[(t6["encoder"] == "siglip2") & (t6["backbone_scale"] == "0.4b")].iloc[0]
    assert row["VQAv2"] == 75.0 and row["VQAv2 paper"] == 72.04 and row["VQAv2 diff"] == pytest.approx(2.96)
    assert row["GQA"] == 50.0 and row["GQA diff"] == pytest.approx(50.0 - 55.52)
    assert pd.isna(row["TextVQA"]) and row["TextVQA paper"] == 38.75
    assert len(t6) == 6  # the paper's six configurations, ours among them
    md = to_markdown(TABLES["table6"], t6)
    assert "| siglip2 | 0.4b | 75.00 / 72.04 (+2.96) | - / 38.75 | 50.00 / 55.52 (-5.52) |" in md
    t5 = build_table(TABLES["table5"], evals)
    four = t5[t5["scale"] == "4"].iloc[0]
    assert four["ETTh1"] == 0.7 and four["ETTh1 paper"] == 0.629
    t2 = build_table(TABLES["table2"], evals)  # Table 2 takes every evaluation
    assert list(t2["backbone_scale"]) == ["0.4b", "2.9b"] and t2.iloc[0]["VQAv2"] == 75.0  # ours, the paper's
