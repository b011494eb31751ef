"""analysis/: a real smoke sweep (2 jobs, MLflow parent + children) -> summarize.py's table and plots; the notebook
executes on the same store; the paper-layout tables and figures from synthetic runs."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import summarize as summarize_cli
from analysis.paper_tables import TABLE6, TABLE7
from analysis.plots import plot_heatmap
from analysis.runs import list_sweeps, load_sweep
from analysis.tables import runs_table, sweep_table, to_markdown

REPO = Path(__file__).resolve().parent.parent

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory):
    """Runs `python src/train.py -m +sweep=smoke` (2 tiny jobs) into a fresh root; returns (root, tracking URI)."""
    root = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "MODRWKV_ROOT": str(root), "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"}
    proc = subprocess.run([sys.executable, str(REPO / "src" / "train.py"), "-m", "+sweep=smoke"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root, f"sqlite:///{root}/mlflow.db"


@pytest.mark.slow
def test_smoke_sweep_is_one_parent_with_two_children(smoke_store):
    _, uri = smoke_store
    sweeps = list_sweeps(uri)
    assert list(sweeps["sweep"]) == ["smoke"] and list(sweeps["children"]) == [2]
    parent, children = load_sweep(uri, sweep="smoke")
    assert set(children["tags.mlflow.parentRunId"]) == {parent["run_id"]}
    assert sorted(children["params.conv"]) == ["3,2", "none"]
    assert (children["status"] == "FINISHED").all()


@pytest.mark.slow
def test_summarize_writes_the_table_and_plots(smoke_store, tmp_path, capsys):
    _, uri = smoke_store
    assert summarize_cli.main(["--sweep", "smoke", "--tracking-uri", uri, "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "smoke.csv")
    assert list(table.columns[:2]) == ["conv (k,s)", "tokens"]
    assert {"tokens", "val/accuracy", "test/accuracy", "val/loss", "test/loss", "runs", "failed"} <= set(table.columns)
    assert list(table["conv (k,s)"]) == ["none", "3,2"]
    assert list(table["tokens"]) == [16, 7]  # tiny SigLIP: 16 patches; Conv1d (3, 2): floor((16 - 3) / 2) + 1
    assert table["val/accuracy"].between(0, 1).all() and list(table["runs"]) == [1, 1]
    md = (tmp_path / "smoke.md").read_text()
    assert md.count("\n| ") == 3 and "| none |" in md  # header + 2 rows
    for png in ("smoke_curves.png", "smoke_tokens.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG
    assert "smoke.md" in capsys.readouterr().out


@pytest.mark.slow
def test_summarize_unknown_sweep_says_which_exist(smoke_store, tmp_path, capsys):
    _, uri = smoke_store
    assert summarize_cli.main(["--sweep", "conv_reduction", "--tracking-uri", uri, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no sweep 'conv_reduction'" in err and "(sweeps there: smoke)" in err


@pytest.mark.slow
def test_notebook_executes_on_the_store(smoke_store, tmp_path):
    import nbclient
    import nbformat

    _, uri = smoke_store
    nb = nbformat.read(REPO / "analysis" / "sweeps.ipynb", as_version=4)
    env = {"MODRWKV_TRACKING_URI": uri, "MODRWKV_SWEEP": "smoke", "MODRWKV_ANALYSIS_OUT": str(tmp_path)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(REPO / "analysis")}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    text = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                   for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "sweep: smoke" in text and "conv (k,s)" in text
    assert (tmp_path / "smoke_curves.png").exists() and (tmp_path / "smoke_tokens.png").exists()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2


def _children(rows: list[dict], preset: str) -> pd.DataFrame:
    """A frame shaped like mlflow.search_runs' children (params.* / metrics.* / status)."""
    out = []
    for r in rows:
        out.append({"run_id": r.get("id", "x"), "status": r.get("status", "FINISHED"), "params.preset": preset,
                    "params.modality": "image", **{f"params.{k}": v for k, v in r["params"].items()},
                    **{f"metrics.{k}": v for k, v in r["metrics"].items()}})
    return pd.DataFrame(out)


def test_conv_table_in_the_papers_order_with_its_numbers():
    rows = [{"params": {"conv": c, "encoder_name": "siglip2-b16-384", "encoder": "siglip2"},
             "metrics": {"val/accuracy": acc, "val/loss": 1.0}} for c, acc in
            [("5,4", 0.5), ("none", 0.8), ("3,2", 0.7), ("4,3", 0.6), ("3,2", 0.5)]]
    rows[-1]["status"] = "FAILED"
    table = sweep_table(_children(rows, "paper"), "conv_reduction")
    assert list(table["conv (k,s)"]) == ["none", "3,2", "4,3", "5,4"]
    assert list(table["tokens"]) == [576, 287, 191, 143]  # SigLIP2-B/16-384's 576 patches (the paper counts 577)
    assert list(table["paper tokens"]) == [v[0] for v in TABLE7.values()]
    assert list(table["paper VQAv2"]) == [76.95, 75.21, 74.17, 73.21]
    row = table.iloc[1]
    assert (row["runs"], row["failed"], row["val/accuracy"]) == (2, 1, pytest.approx(0.6))  # two seeds averaged
    assert "paper VQAv2" not in sweep_table(_children(rows, "tiny"), "conv_reduction")  # tiny: ours alone
    md = to_markdown(table, "t")
    assert md.startswith("### t\n") and md.count("\n| ") == 5


def test_encoder_size_table_and_heatmap(tmp_path):
    rows = [{"params": {"encoder": e, "backbone_scale": s, "backbone": s}, "metrics": {"val/accuracy": i / 10}}
            for i, (e, s) in enumerate((e, s) for s in ("2.9b", "0.4b", "1.5b") for e in ("clip", "siglip2"))]
    table = sweep_table(_children(rows, "paper"), "encoder_size")
    assert list(zip(table["encoder"], table["backbone"]))[:3] == [("siglip2", "0.4b"), ("siglip2", "1.5b"),
                                                                  ("siglip2", "2.9b")]
    assert list(table["paper VQAv2"]) == [TABLE6[(e, s)][0] for e, s in zip(table["encoder"], table["backbone"])]
    path = plot_heatmap(table, "encoder", "backbone", "val/accuracy", tmp_path / "h.png")
    assert path.read_bytes()[:8] == PNG


def _seeded_backbone_init() -> list[dict]:
    """3 checkpoints x 3 seeds of the backbone_init sweep, val/accuracy = base + seed / 100."""
    base = {"random": 0.80, "base": 0.85, "g1": 0.90}
    return [{"id": f"{c}-{seed}", "params": {"backbone_scale": "0.4b", "checkpoint": c, "backbone": "tiny",
                                             "seed": str(seed)},
             "metrics": {"val/accuracy": base[c] + seed / 100, "val/loss": 1.0, "test/accuracy": 0.5,
                         "test/loss": 2.0 - seed / 10}}
            for seed in (2, 0, 1) for c in ("g1", "random", "base")]


def test_seeds_are_averaged_with_their_spread_and_listed_per_run():
    children = _children(_seeded_backbone_init(), "tiny")
    table = sweep_table(children, "backbone_init")
    assert list(table["checkpoint"]) == ["random", "base", "g1"] and list(table["runs"]) == [3, 3, 3]
    assert list(table.columns[3:7]) == ["val/accuracy", "val/accuracy std", "test/accuracy", "test/accuracy std"]
    assert table["val/accuracy"].tolist() == pytest.approx([0.81, 0.86, 0.91])  # mean of +0, +0.01, +0.02
    assert table["val/accuracy std"].tolist() == pytest.approx([0.01] * 3)      # sample std (ddof 1)
    assert table["test/accuracy std"].tolist() == pytest.approx([0.0] * 3)
    assert table["test/loss std"].tolist() == pytest.approx([0.1] * 3)
    runs = runs_table(children, "backbone_init")
    assert list(zip(runs["checkpoint"], runs["seed"])) == [(c, s) for c in ("random", "base", "g1") for s in (0, 1, 2)]
    assert runs.loc[2, "val/accuracy"] == pytest.approx(0.82) and set(runs["status"]) == {"FINISHED"}
    md = to_markdown(runs)
    assert md.count("\n| ") == 9 and "| random | 0 |" not in md and "| tiny | 0 | FINISHED |" in md


def test_one_run_per_configuration_has_no_std_columns():
    rows = [r for r in _seeded_backbone_init() if r["params"]["seed"] == "0"]
    table = sweep_table(_children(rows, "tiny"), "backbone_init")
    assert not [c for c in table.columns if c.endswith(" std")] and list(table["runs"]) == [1, 1, 1]


def test_summarize_writes_each_seed_when_configurations_repeat(tmp_path):
    """A store with two backbone_init parent runs (seeds 0, 1 in the first, seed 2 in the second multirun):
    --all-parents tabulates the 9 children together (std columns, the per-run table in the markdown and its CSV);
    without it, the latest parent's 3 children alone."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("modrwkv")
    parents = [client.create_run(exp, start_time=t, tags={"modrwkv.kind": "sweep", "modrwkv.sweep": "backbone_init",
                                                          "modrwkv.preset": "tiny", "mlflow.runName": "backbone_init"})
               for t in (1_000, 2_000)]
    for r in _seeded_backbone_init():
        parent = parents[r["params"]["seed"] == "2"].info.run_id
        run = client.create_run(exp, tags={"mlflow.parentRunId": parent, "mlflow.runName": r["id"]})
        for k, v in {**r["params"], "modality": "image", "preset": "tiny"}.items():
            client.log_param(run.info.run_id, k, v)
        for k, v in r["metrics"].items():
            client.log_metric(run.info.run_id, k, v, step=300)
        client.set_terminated(run.info.run_id)
    for parent in parents:
        client.set_terminated(parent.info.run_id)
    mlflow.set_tracking_uri(uri)
    out = tmp_path / "out"
    args = ["--sweep", "backbone_init", "--tracking-uri", uri, "--out", str(out)]
    assert summarize_cli.main(args + ["--all-parents"]) == 0
    table = pd.read_csv(out / "backbone_init.csv")
    assert table["val/accuracy std"].tolist() == pytest.approx([0.01] * 3) and list(table["runs"]) == [3, 3, 3]
    runs = pd.read_csv(out / "backbone_init_runs.csv")
    assert len(runs) == 9 and list(runs["seed"][:3]) == [0, 1, 2]
    md = (out / "backbone_init.md").read_text()
    assert "val/accuracy std" in md and "### Each run" in md and md.count("\n| ") == 4 + 10
    assert "parent runs " in md and all(p.info.run_id in md for p in parents)
    assert summarize_cli.main(args) == 0  # the latest multirun alone: seed 2
    table = pd.read_csv(out / "backbone_init.csv")
    assert list(table["runs"]) == [1, 1, 1] and table["val/accuracy"].tolist() == pytest.approx([0.82, 0.87, 0.92])
