"""One benchmark evaluation of a trained run from a composed ``conf/eval.yaml``: load, read, generate, score, log.

Each evaluation is an MLflow run (tag ``modrwkv.kind=eval``) linked to the training run (``modrwkv.train_run_id``,
and the training run's own parameters, so analysis groups evaluations like trainings) and, in a multirun, nested
under the sweep's parent run. Metrics are named ``bench/<benchmark>/<metric>``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from .benchmarks.registry import get_benchmark
from .checkpoint import load_trained_run
from .runner import BenchmarkResult, evaluate

log = logging.getLogger("modrwkv.eval")


def pick_device(name: str) -> str:
    """"auto" -> cuda when available, else cpu; anything else as given."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def bench_metrics(name: str, result: BenchmarkResult) -> dict[str, float]:
    """The MLflow metrics of one evaluation: bench/<name>/<metric>, samples_per_s and num_samples."""
    out = {f"bench/{name}/{k}": float(v) for k, v in result.metrics.items()}
    out[f"bench/{name}/samples_per_s"] = result.samples_per_s
    out[f"bench/{name}/num_samples"] = float(len(result.predictions))
    return out


def _train_sweep_tags(client, train_run_id: str) -> dict[str, str]:
    """The training run's sweep (its parent run and sweep name), when it is in this tracking store."""
    from mlflow.exceptions import MlflowException

    try:
        parent = client.get_run(train_run_id).data.tags.get("mlflow.parentRunId")
        if not parent:
            return {}
        return {"modrwkv.train_parent_run_id": parent,
                "modrwkv.train_sweep": client.get_run(parent).data.tags.get("modrwkv.sweep", "")}
    except MlflowException:  # another store (the run folder was copied): the run id tag alone links them
        return {}


def _log_mlflow(cfg: DictConfig, run, name: str, metrics: dict[str, float], records, result) -> str:
    from mlflow.tracking import MlflowClient

    from modrwkv.training.mlflow_runs import get_or_create_experiment, parent_run_id
    from modrwkv.training.params import run_params

    client = MlflowClient(tracking_uri=cfg.logger.tracking_uri)
    exp_id = get_or_create_experiment(client, cfg.logger.experiment_name, cfg.logger.artifact_location)
    tags = {"modrwkv.kind": "eval", "modrwkv.benchmark": name, "modrwkv.train_run_dir": str(run.run_dir)}
    if run.mlflow_run_id:
        tags["modrwkv.train_run_id"] = run.mlflow_run_id
        tags.update(_train_sweep_tags(client, run.mlflow_run_id))
    parent = parent_run_id(cfg)
    if parent:
        tags["mlflow.parentRunId"] = parent
    mlrun = client.create_run(exp_id, run_name=cfg.get("run_name") or f"{name} {run.run_dir.name}", tags=tags)
    run_id = mlrun.info.run_id
    try:
        params = {**run_params(run.cfg), "benchmark": name, "checkpoint": str(run.ckpt),
                  "limit": str(cfg.benchmark.get("limit")), "batch_size": str(cfg.batch_size)}
        for k, v in params.items():
            client.log_param(run_id, k, v)
        for k, v in metrics.items():
            client.log_metric(run_id, k, v)
        lines = [json.dumps({"key": r.key, "prediction": p, "ref": r.ref}, default=str, ensure_ascii=False)
                 for r, p in zip(records, result.predictions)]
        client.log_text(run_id, "\n".join(lines) + "\n", f"predictions/{name}.jsonl")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def run_eval(cfg: DictConfig) -> dict[str, float]:
    """Evaluate ``cfg.checkpoint`` on ``cfg.benchmark``; returns the ``bench/...`` metrics."""
    if not cfg.get("checkpoint"):
        raise ValueError("checkpoint=<training run folder or .ckpt> is required, e.g. checkpoint=outputs/<day>/<time>")
    bench = get_benchmark(cfg.benchmark.name)
    options = dict(OmegaConf.to_container(cfg.benchmark.options, resolve=True)) if "options" in cfg.benchmark else {}
    if cfg.benchmark.get("limit") is not None:
        options["limit"] = int(cfg.benchmark.limit)
    records = bench.read(Path(cfg.benchmark.root), **options)  # before the model: a missing folder fails fast
    model, run = load_trained_run(cfg.checkpoint, pick_device(cfg.device), modality=bench.modality)
    result = evaluate(model, bench, records, batch_size=int(cfg.batch_size), max_new_tokens=cfg.get("max_new_tokens"))
    metrics = bench_metrics(bench.name, result)
    log.info("%s on %d samples: %s (%.2f samples/s)", bench.name, len(records), result.metrics, result.samples_per_s)
    if cfg.logger.kind == "mlflow":
        _log_mlflow(cfg, run, bench.name, metrics, records, result)
    out_dir = Path(cfg.paths.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{bench.name}_metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
    return metrics
