"""``src/eval.py`` end to end, as a user runs it: a tiny model trained on converted-style shards (train/ and val/
only: the test phase is skipped), then a benchmark sweep on fixture files with its MLflow runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from . import benchmark_fixtures as fx
from .suite_utils import REPO, mlflow_runs, run_train

pytestmark = pytest.mark.slow
EVAL = REPO / "src" / "eval.py"


def run_eval(root, *overrides, check=True):
    env = {**os.environ, "MODRWKV_ROOT": str(root), "MODRWKV_BENCHMARKS": str(root / "bench"), "HYDRA_FULL_ERROR": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(EVAL), *overrides], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"eval.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from modrwkv.data.shapes_vqa import ShapesVQAConfig, generate_shapes_vqa
    from modrwkv.data.shards import write_shards

    root = tmp_path_factory.mktemp("eval")
    data = root / "shards"
    config = ShapesVQAConfig.preset(image_size=32)
    write_shards(generate_shapes_vqa(24, seed=0, config=config), data / "train")
    write_shards(generate_shapes_vqa(8, seed=1, config=config), data / "val")
    proc = run_train(root, "data=shards", f"data.root={data}", "hydra.run.dir=" + str(root / "run"))
    assert "test phase skipped" in proc.stdout + proc.stderr and "test/loss" not in proc.stdout + proc.stderr
    fx.write_vqav2(root / "bench" / "vqav2")
    fx.write_pope(root / "bench" / "pope")
    fx.write_mmbench(root / "bench" / "mmbench")
    return root


def test_benchmark_sweep_logs_linked_mlflow_runs(trained):
    root = trained
    run_eval(root, f"checkpoint={root / 'run'}", "benchmark=vqav2,pope,mmbench", "batch_size=4", "max_new_tokens=4")
    runs = mlflow_runs(root)
    train_run = runs[runs["tags.modrwkv.kind"] == "job"]
    evals = runs[runs["tags.modrwkv.kind"] == "eval"]
    parents = runs[runs["tags.modrwkv.kind"] == "sweep"]
    assert len(train_run) == 1 and len(evals) == 3 and len(parents) == 1
    assert (evals["tags.modrwkv.train_run_id"] == train_run["run_id"].iloc[0]).all()
    assert (evals["tags.mlflow.parentRunId"] == parents["run_id"].iloc[0]).all()
    assert set(evals["status"]) == {"FINISHED"} and parents["status"].iloc[0] == "FINISHED"
    assert set(evals["params.benchmark"]) == {"vqav2", "pope", "mmbench"}
    assert (evals["params.encoder"] == "siglip").all()  # the training run's parameters, for grouping
    for metric in ("bench/vqav2/accuracy", "bench/pope/f1", "bench/pope/random_yes_ratio", "bench/mmbench/circular"):
        value = evals[f"metrics.{metric}"].dropna()
        assert len(value) == 1 and 0.0 <= value.iloc[0] <= 100.0, metric
    for name, n in (("vqav2", 2), ("pope", 6), ("mmbench", 5)):
        assert evals[f"metrics.bench/{name}/samples_per_s"].dropna().iloc[0] > 0
        assert evals[f"metrics.bench/{name}/num_samples"].dropna().iloc[0] == n
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{root}/mlflow.db")
    vqa_id = evals[evals["params.benchmark"] == "vqav2"]["run_id"].iloc[0]
    lines = client.download_artifacts(vqa_id, "predictions/vqav2.jsonl", str(root))
    assert len(open(lines).read().splitlines()) == 2
    from analysis.bench_tables import paper_tables  # the evaluations as the paper's tables

    text = paper_tables(f"sqlite:///{root}/mlflow.db", str(root / "tables"))
    assert re.search(r"\| siglip \| 0\.4b \| [0-9.]+ / - \|", text) and "| siglip2 | 2.9b | - / 78.30 |" in text
    assert (root / "tables" / "table2.csv").exists()


def test_eval_errors_are_clear_and_early(trained):
    from modrwkv.evaluation.checkpoint import load_trained_run

    root = trained
    proc = run_eval(root, f"checkpoint={root / 'run'}", "benchmark=gqa", "logger=none", check=False)
    assert proc.returncode != 0 and "benchmark gqa:" in proc.stderr and "testdev_balanced_questions.json" in proc.stderr
    with pytest.raises(ValueError, match="is a image model .*needs a audio model"):
        load_trained_run(root / "run", modality="audio")  # checked before the model is built
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_trained_run(root / "nowhere")
