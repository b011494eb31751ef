"""The experiment suite end to end: the README's sweep with its MLflow structure, each modality, stages, resume,
and clear errors for bad configurations. Every test runs the real entry point in a subprocess."""

from __future__ import annotations

import shutil

import pytest

from .suite_utils import mlflow_runs, run_train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Generated datasets shared by the tests of this module (each modality is generated once)."""
    return tmp_path_factory.mktemp("data")


def test_readme_sweep_nests_four_children_under_one_parent(tmp_path, data_dir):
    run_train(tmp_path, "-m", "encoder=siglip,clip", "adapter=mlp,conv", data_dir=data_dir)
    runs = mlflow_runs(tmp_path)
    parents = runs[runs["tags.modrwkv.kind"] == "sweep"]
    children = runs[runs["tags.modrwkv.kind"] == "job"]
    assert len(parents) == 1 and len(children) == 4
    parent_id = parents["run_id"].iloc[0]
    assert (children["tags.mlflow.parentRunId"] == parent_id).all()
    assert parents["status"].iloc[0] == "FINISHED"
    assert set(children["status"]) == {"FINISHED"}
    combos = set(zip(children["params.encoder"], children["params.adapter"]))
    assert combos == {("siglip", "mlp"), ("siglip", "conv"), ("clip", "mlp"), ("clip", "conv")}
    for col in ("params.conv", "params.scale", "params.backbone", "params.checkpoint", "params.stage",
                "params.modality", "params.seed"):
        assert children[col].notna().all(), col
    assert set(children["params.conv"]) == {"none", "3,2"}
    for metric in ("metrics.train/loss", "metrics.val/loss", "metrics.val/accuracy", "metrics.test/accuracy"):
        assert children[metric].notna().all(), metric
    # the resolved config and the final metrics are artifacts of each child
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    names = {a.path for a in client.list_artifacts(children["run_id"].iloc[0])}
    assert {"config.yaml", "final_metrics.json"} <= names


@pytest.mark.parametrize("experiment,metric", [("asr", "val/wer"), ("forecast", "val/mse")])
def test_other_modalities_train(tmp_path, data_dir, experiment, metric):
    if experiment == "asr" and shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng): the audio data cannot be generated")
    run_train(tmp_path, f"experiment={experiment}", data_dir=data_dir)
    runs = mlflow_runs(tmp_path)
    assert len(runs) == 1 and runs["status"].iloc[0] == "FINISHED"
    assert runs[f"metrics.{metric}"].notna().all()
    assert runs["metrics.train/loss"].notna().all()


def test_stage2_from_stage1_and_resume(tmp_path, data_dir):
    run_train(tmp_path, "stage=stage1", "stage.allow_untrained_backbone=true", "hydra.run.dir=" + str(tmp_path / "s1"),
              data_dir=data_dir)
    ckpt = tmp_path / "s1" / "checkpoints" / "last.ckpt"
    assert ckpt.exists()
    run_train(tmp_path, "stage=stage2", f"stage.init_from={ckpt}", "hydra.run.dir=" + str(tmp_path / "s2"),
              data_dir=data_dir)
    runs = mlflow_runs(tmp_path)
    assert sorted(runs["params.stage"]) == ["1", "2"]
    # resume: continue the stage-2 run to 6 steps from its saved step 4
    last = tmp_path / "s2" / "checkpoints" / "last.ckpt"
    run_train(tmp_path, "stage=stage2", f"resume={last}", "preset.max_steps=6", "hydra.run.dir=" + str(tmp_path / "s3"),
              data_dir=data_dir)
    import torch

    state = torch.load(tmp_path / "s3" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 6


def test_stage1_trains_only_the_adapter(tmp_path, data_dir):
    import torch

    run_train(tmp_path, "stage=stage1", "stage.allow_untrained_backbone=true", "hydra.run.dir=" + str(tmp_path / "s1"),
              "logger=none", data_dir=data_dir)
    state = torch.load(tmp_path / "s1" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    opt_params = sum(len(g["params"]) for g in state["optimizer_states"][0]["param_groups"])
    adapter_params = sum(1 for k in state["state_dict"] if k.startswith("model.adapter."))
    assert opt_params == adapter_params


def test_encoder_that_does_not_fit_the_modality_is_a_clear_error(tmp_path, data_dir):
    proc = run_train(tmp_path, "encoder=whisper", data_dir=data_dir, check=False)
    assert proc.returncode != 0
    assert "encoder=whisper is a audio encoder but modality=vision" in proc.stderr
    assert "Epoch" not in proc.stderr + proc.stdout  # stopped before training


def test_unknown_choice_is_a_clear_error(tmp_path, data_dir):
    proc = run_train(tmp_path, "encoder=sigclip", data_dir=data_dir, check=False)
    assert proc.returncode != 0
    assert "sigclip" in proc.stderr and "siglip" in proc.stderr  # Hydra lists the available options


def test_crashed_run_is_marked_failed(tmp_path, data_dir):
    # a batch longer than data.max_tokens fails in the first training step, after the MLflow run has started
    # (a bad option such as stage.lr=-1 is refused before any run: tests/test_config_check.py)
    proc = run_train(tmp_path, "data.max_tokens=5", data_dir=data_dir, check=False)
    assert proc.returncode != 0
    runs = mlflow_runs(tmp_path)
    assert list(runs["status"]) == ["FAILED"]
