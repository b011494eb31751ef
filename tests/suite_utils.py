"""Helpers for tests that run the real entry point (src/train.py) in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "src" / "train.py"

# a few steps at tiny sizes: enough to exercise every part (data, train, validate with generation, test, MLflow)
TINY = [
    "preset.max_steps=4", "preset.val_every=2", "preset.batch_size=8", "preset.eval_batch_size=8",
    "preset.data_sizes={train:48,val:8,test:8}", "eval.max_batches=1", "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false", "trainer.log_every_n_steps=1",
]


def train_command(root: Path, *overrides: str, data_dir: Path | None = None) -> tuple[list[str], dict]:
    """(argv, env) of ``python src/train.py <TINY> <overrides>`` with the project root in ``root``."""
    env = {**os.environ, "MODRWKV_ROOT": str(root), "HYDRA_FULL_ERROR": "1", "PYTHONUNBUFFERED": "1"}
    flags = [o for o in overrides if o.startswith("-")]  # e.g. -m: Hydra's flags go before the overrides
    args = [sys.executable, str(TRAIN), *flags, *TINY, *(o for o in overrides if not o.startswith("-"))]
    if data_dir is not None:
        args.append(f"paths.data={data_dir}")
    return args, env


def run_train(root: Path, *overrides: str, data_dir: Path | None = None, check: bool = True,
              timeout: int = 600, **popen) -> subprocess.CompletedProcess:
    """``python src/train.py <overrides>`` with the project root (mlflow.db, outputs) in ``root``."""
    args, env = train_command(root, *overrides, data_dir=data_dir)
    proc = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, **popen)
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def mlflow_runs(root: Path):
    """All runs of the project's MLflow store as a DataFrame."""
    import mlflow

    client_uri = f"sqlite:///{root}/mlflow.db"
    mlflow.set_tracking_uri(client_uri)
    return mlflow.search_runs(experiment_names=["modrwkv"], search_all_experiments=False)
