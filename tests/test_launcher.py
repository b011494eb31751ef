"""Sweeps through hydra-submitit-launcher on this machine (hydra/launcher=local): the same code path as SLURM, where
submitit starts one process per task and each task is one DDP rank."""

from __future__ import annotations

from .suite_utils import mlflow_runs, run_train


def test_submitit_sweep_of_two_ddp_jobs_nests_under_one_parent(tmp_path):
    """Two sweep points, each a 2-task submitit job (2 DDP ranks over gloo): two child runs of one parent, written by
    rank 0 of each job only."""
    proc = run_train(tmp_path, "-m", "hydra/launcher=local", "hydra.launcher.tasks_per_node=2", "trainer=ddp_cpu",
                     "seed=1,2", "preset.max_steps=2", "preset.data_sizes={train:32,val:8,test:8}",
                     "test_after_training=false")
    assert "Submitit 'local' sweep output dir" in proc.stdout + proc.stderr
    runs = mlflow_runs(tmp_path)
    parents = runs[runs["tags.modrwkv.kind"] == "sweep"]
    children = runs[runs["tags.modrwkv.kind"] == "job"]
    assert len(parents) == 1 and len(children) == 2, runs[["run_id", "tags.modrwkv.kind", "params.seed"]]
    assert (children["tags.mlflow.parentRunId"] == parents["run_id"].iloc[0]).all()
    assert sorted(children["params.seed"]) == ["1", "2"]
    assert set(children["status"]) == {"FINISHED"} and parents["status"].iloc[0] == "FINISHED"
    assert children["metrics.train/loss"].notna().all() and children["metrics.val/loss"].notna().all()
    # each job really ran as two ranks (submitit's tasks, found by SubmititEnvironment), not relaunched by Lightning
    sweep_dir = next((tmp_path / "multirun").glob("*/*"))
    logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").rglob("*_log.*"))
    assert logs.count("submitit job: rank 1 of 2") == 2 and logs.count("submitit job: rank 0 of 2") == 2
    assert "Starting with 2 processes" in logs
