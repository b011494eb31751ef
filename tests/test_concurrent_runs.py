"""Runs started together on a fresh project root: each its own output folder, one MLflow database created once,
one offline dataset generated once, every run FINISHED. Real processes of the real entry point."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from .suite_utils import TINY, TRAIN, mlflow_runs

pytestmark = pytest.mark.slow

N_RUNS = 4


def test_four_runs_started_at_once_share_nothing_but_the_database(tmp_path):
    env = {**os.environ, "MODRWKV_ROOT": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    procs = []
    for i in range(N_RUNS):  # no database, no data yet: every process finds a fresh root
        args = [sys.executable, str(TRAIN), *TINY, "preset.max_steps=2", "preset.val_every=2",
                "test_after_training=false", f"run_name=job{i}", f"seed={i}"]
        procs.append(subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-4000:]

    runs = mlflow_runs(tmp_path)
    assert len(runs) == N_RUNS and set(runs["status"]) == {"FINISHED"}
    assert sorted(runs["tags.mlflow.runName"]) == [f"job{i}" for i in range(N_RUNS)]
    assert runs["metrics.train/loss"].notna().all() and runs["metrics.val/loss"].notna().all()

    folders = sorted(p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir())
    assert len(folders) == N_RUNS
    by_pid = {f.name.rsplit("_p", 1)[-1]: f for f in folders}
    assert set(by_pid) == {str(p.pid) for p in procs}  # each folder is its process's (time to the us + pid)
    for i, p in enumerate(procs):
        folder = by_pid[str(p.pid)]
        overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
        assert f"run_name=job{i}" in overrides
        assert sorted(x.name for x in (folder / "checkpoints").iterdir()) == ["last.ckpt"]  # no last-v1.ckpt
    datasets = [p for p in (tmp_path / "data").iterdir() if p.is_dir()]
    assert [p.name for p in datasets if not p.name.startswith(".")] == ["vision-tiny"]
    assert not [p for p in datasets if ".tmp-" in p.name or ".old-" in p.name]  # generated once, nothing left over
