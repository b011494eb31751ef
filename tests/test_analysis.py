"""analysis/: a real smoke sweep (2 jobs, MLflow parent + children) -> summarize.py's table and plots; the notebook
executes on the same store; the paper-layout tables and figures from synthetic runs."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from analysis import summarize as summarize_cli  # noqa: E402
from analysis.paper_tables import TABLE6, TABLE7  # noqa: E402
from analysis.plots import plot_heatmap  # noqa: E402
from analysis.runs import list_sweeps, load_sweep  # noqa: E402
from analysis.tables import sweep_table, to_markdown  # noqa: E402

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
