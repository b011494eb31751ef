"""Real faults on real training processes: kill -9 and resume, SIGTERM/SIGUSR1 preemption, divergence, a failing
checkpoint write, truncated and malicious checkpoint files, dead runs in MLflow. Nothing here is mocked: the
processes are the real entry point (src/train.py), the signals are real, the write failure is the kernel's."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .suite_utils import mlflow_runs, run_train, train_command

pytestmark = pytest.mark.slow

# 6 batches of 8 per epoch, a checkpoint every 4 steps: checkpoints fall mid-epoch and in the second epoch
STEPS = ["preset.max_steps=10", "preset.val_every=4", "test_after_training=false"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def start_train(root: Path, *overrides: str, data_dir: Path, log: Path) -> subprocess.Popen:
    args, env = train_command(root, *overrides, data_dir=data_dir)
    return subprocess.Popen(args, cwd=root, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    t0 = time.time()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the training process ended (rc {proc.returncode}) before {what}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


LM = ["task=lm", "task.batch_size=2", "task.eval_batch_size=2", "trainer.limit_val_batches=1",
      "task.corpus.max_chars=150000", "task.corpus.val_fraction=0.15", "task.corpus.test_fraction=0.15"]


@pytest.mark.parametrize("data", [["data.num_workers=0"], ["data=shards", "data.num_workers=2"], LM],
                         ids=["offline-0-workers", "shards-2-workers", "text-lm"])
def test_kill9_then_resume_gives_bit_identical_weights(tmp_path, data_dir, data):
    if "data=shards" in data:  # the generated dataset, read as converted shards
        if not (data_dir / "vision-tiny").exists():
            (tmp_path / "gen").mkdir()
            run_train(tmp_path / "gen", "logger=none", "preset.max_steps=1", "test_after_training=false",
                      data_dir=data_dir)
        data = [*data, f"data.root={data_dir}/vision-tiny"]
    run_train(tmp_path, *STEPS, *data, f"hydra.run.dir={tmp_path}/full", data_dir=data_dir)
    killed_dir = tmp_path / "killed"
    proc = start_train(tmp_path, *STEPS, *data, f"hydra.run.dir={killed_dir}", data_dir=data_dir,
                       log=tmp_path / "killed.log")
    ckpt = killed_dir / "checkpoints" / "last.ckpt"
    wait_for(ckpt.exists, proc, "the first checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    assert 0 < saved["global_step"] < 10
    run_train(tmp_path, *STEPS, *data, f"resume={ckpt}", f"hydra.run.dir={tmp_path}/resumed", data_dir=data_dir)
    full = weights(tmp_path / "full/checkpoints/last.ckpt")
    resumed = weights(tmp_path / "resumed/checkpoints/last.ckpt")
    assert full.keys() == resumed.keys()
    different = [k for k in full if not torch.equal(full[k], resumed[k])]
    assert not different, f"resumed from step {saved['global_step']}: {len(different)} tensors differ"
    # the corrupt-sample counts behind the consumed batches are exact too (read-ahead of the workers excluded)
    final = [torch.load(tmp_path / d / "checkpoints/last.ckpt", map_location="cpu", weights_only=True, mmap=True)
             for d in ("full", "resumed")]
    assert final[0]["global_step"] == final[1]["global_step"] > saved["global_step"]
    if "ModRWKVDataModule" in final[0]:  # the multimodal data (task=lm's text data has no corrupt samples to count)
        consumed = [f["ModRWKVDataModule"]["consumed"] for f in final]
        assert consumed[0] == consumed[1] == [0, final[0]["global_step"] * 8]  # (skipped, seen): 8 per batch
    # MLflow: the killed run was continued by the resumed job (one run, FINISHED), not left RUNNING
    runs = mlflow_runs(tmp_path)
    runs = runs[runs["tags.modrwkv.kind"] == "job"]
    assert sorted(runs["status"]) == ["FINISHED", "FINISHED"]
    assert list(runs["tags.modrwkv.resumes"].dropna()) == ["1"]


def plant_dead_run(root: Path) -> str:
    """A RUNNING MLflow run owned by a real process that then dies of kill -9 (as a crashed job leaves it)."""
    import mlflow

    from modrwkv.training.run_bookkeeping import pid_start, process_tags

    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    tags = {**process_tags(), "modrwkv.pid": str(victim.pid), "modrwkv.pid_start": pid_start(victim.pid),
            "modrwkv.kind": "job"}
    client = mlflow.tracking.MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("modrwkv")
    exp_id = exp.experiment_id if exp else client.create_experiment("modrwkv", artifact_location=f"{root}/mlruns")
    run_id = client.create_run(exp_id, run_name="crashed", tags=tags).info.run_id
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    return run_id


def test_divergence_stops_the_run_fails_it_and_keeps_the_last_finite_checkpoint(tmp_path, data_dir):
    dead = plant_dead_run(tmp_path)
    proc = run_train(tmp_path, "stage.lr=1e6", "guard.max_bad_steps=2", *STEPS, f"hydra.run.dir={tmp_path}/run",
                     data_dir=data_dir, check=False)
    assert proc.returncode != 0
    assert "training diverged: non-finite loss or gradient at step" in proc.stderr
    assert "guard.max_bad_steps=2" in proc.stderr
    runs = mlflow_runs(tmp_path).set_index("run_id")
    job = runs[(runs["tags.modrwkv.kind"] == "job") & (runs.index != dead)]
    assert list(job["status"]) == ["FAILED"]
    assert job["tags.modrwkv.end_reason"].iloc[0].startswith("DivergenceError: training diverged")
    # the run that died before this one started is closed, with the reason
    assert runs.loc[dead, "status"] == "KILLED"
    assert "ended without closing the run" in runs.loc[dead, "tags.modrwkv.end_reason"]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    if ckpt.exists():  # whatever was written before the stop has finite weights only
        assert all(torch.isfinite(v).all() for v in weights(ckpt).values())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_preemption_signal_saves_a_checkpoint_marks_killed_and_resume_finishes(tmp_path, data_dir, sig):
    run_dir = tmp_path / "run"
    overrides = ["preset.max_steps=400", "preset.val_every=200", "test_after_training=false"]
    log = tmp_path / "run.log"
    proc = start_train(tmp_path, *overrides, f"hydra.run.dir={run_dir}", data_dir=data_dir, log=log)
    wait_for(lambda: "train/loss" in log.read_text() or "in eval mode" in log.read_text(), proc, "training")
    time.sleep(3)
    proc.send_signal(sig)
    assert proc.wait(timeout=300) == 128 + sig
    text = log.read_text()
    assert f"stopped by {signal.Signals(sig).name}" in text
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    step = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["global_step"]
    assert 0 < step < 400
    runs = mlflow_runs(tmp_path)
    assert list(runs["status"]) == ["KILLED"]
    assert signal.Signals(sig).name in runs["tags.modrwkv.end_reason"].iloc[0]
    if sig != signal.SIGTERM:  # the resume after a preemption is the same for either signal: checked once
        return
    run_train(tmp_path, *overrides, f"preset.max_steps={step + 2}", f"resume={ckpt}",
              f"hydra.run.dir={tmp_path}/resumed", data_dir=data_dir)
    runs = mlflow_runs(tmp_path)
    assert list(runs["status"]) == ["FINISHED"] and list(runs["tags.modrwkv.resumes"]) == ["1"]
    assert runs["tags.modrwkv.resume_changes"].iloc[0] == f"max_steps: 400 -> {step + 2}"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir) -> Path:
    """A 4-step run whose last.ckpt the file-fault tests start from."""
    root = tmp_path_factory.mktemp("finished")
    run_train(root, "logger=csv", "test_after_training=false", f"hydra.run.dir={root}/run", data_dir=data_dir)
    return root


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_failing_checkpoint_write_keeps_the_previous_checkpoint_complete(tmp_path, data_dir, finished_run):
    # resume in the same folder with a file-size limit below the checkpoint's size: the kernel fails the write
    # (EFBIG, as ENOSPC on a full disk) when last.ckpt is rewritten
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    ckpt.write_bytes((finished_run / "run" / "checkpoints" / "last.ckpt").read_bytes())
    before, limit = digest(ckpt), ckpt.stat().st_size // 2

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = run_train(tmp_path, "logger=csv", "test_after_training=false", "preset.max_steps=6", f"resume={ckpt}",
                     f"hydra.run.dir={run_dir}", data_dir=data_dir, check=False, preexec_fn=limit_file_size)
    assert proc.returncode != 0
    assert "File too large" in proc.stderr or "No space left" in proc.stderr
    assert digest(ckpt) == before  # the old checkpoint is intact, byte for byte
    assert [p.name for p in ckpt.parent.iterdir()] == ["last.ckpt"]  # no partial temporary file left
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 4


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_truncated_or_empty_resume_checkpoint_is_a_one_line_error(tmp_path, finished_run, damage):
    good = (finished_run / "run" / "checkpoints" / "last.ckpt").read_bytes()
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(good[: len(good) // 3] if damage == "truncated" else b"")
    proc = run_train(tmp_path, f"resume={bad}", "logger=csv", check=False)
    assert proc.returncode != 0
    expected = "not a complete checkpoint" if damage == "truncated" else "the file is empty"
    assert f"resume={bad}: {expected}" in proc.stderr
    assert "Epoch" not in proc.stdout + proc.stderr


class PlantedCode:
    """Pickles as a call of os.system: unpickling it with weights_only=False runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture()
def malicious(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1), "x": PlantedCode(marker)}, "emb.weight": PlantedCode(marker)},
               evil)
    # the file is real: an unsafe load does run the command
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(evil)!r}, weights_only=False)"],
                   check=True, capture_output=True)
    assert marker.exists()
    marker.unlink()
    return evil, marker


def test_malicious_pickle_runs_nothing_on_any_loading_path(tmp_path, malicious):
    from modrwkv.backbone import RWKV7
    from modrwkv.encoders.registry import build_encoder
    from modrwkv.evaluation.checkpoint import load_state_dict as load_eval_weights
    from modrwkv.safe_load import CheckpointError
    from modrwkv.training.build import load_stage_checkpoint
    from modrwkv.training.checkpoint_io import AtomicCheckpointIO
    from modrwkv.training.lm import export_backbone

    evil, marker = malicious
    paths = {
        "backbone": lambda: RWKV7.from_checkpoint(evil),
        "stage.init_from": lambda: load_stage_checkpoint(torch.nn.Linear(1, 1), str(evil)),
        "resume (Lightning)": lambda: AtomicCheckpointIO().load_checkpoint(evil),
        "export_backbone": lambda: export_backbone(evil, tmp_path / "out.pth"),
        "whisper encoder": lambda: build_encoder("tiny-whisper", weights=evil),
        "wavenet encoder": lambda: build_encoder("tiny-wavenet", weights=evil),
        "open_clip encoder": lambda: build_encoder("tiny-siglip", weights=evil),
        "WavLM encoder (UniLM .pt)": lambda: build_encoder("tiny-wavlm-large", weights=evil),
        "eval.py checkpoint": lambda: load_eval_weights(evil),
    }
    for name, load in paths.items():
        with pytest.raises(CheckpointError, match="refused to load|cannot be read weights-only"):
            load()
        assert not marker.exists(), f"{name}: the planted code ran"
    # and the command line: resume= refuses it before any work
    proc = run_train(tmp_path, f"resume={evil}", "logger=csv", check=False)
    assert proc.returncode != 0 and "refused to load" in proc.stderr
    assert not marker.exists()
