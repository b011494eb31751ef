"""Every numeric and path option is checked before any work: one line naming the key and the allowed range."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from analysis.sweep_configs import compose
from modrwkv.training.config_check import ConfigError, check_values, preflight
from tests.suite_utils import run_train


def _cfg(tmp_path: Path, *overrides: str):
    return compose([f"paths.root={tmp_path}", f"paths.output={tmp_path / 'out'}", *overrides])


@contextmanager
def read_only(path: Path):
    """Make ``path`` really unwritable, for root too (the immutable attribute), else by its permission bits."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: no way to make a file read-only for this user")
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)


@pytest.mark.parametrize("overrides, message", [
    (["stage.lr=-1e-3"], "stage.lr=-0.001: out of range (allowed: a number > 0)"),
    (["stage.lr=0"], "stage.lr=0: out of range (allowed: a number > 0)"),
    (["stage.lr=nan"], "stage.lr=nan: is not finite"),
    (["preset.batch_size=0"], "preset.batch_size=0: out of range (allowed: an integer >= 1)"),
    (["preset.batch_size=2.5"], "preset.batch_size=2.5: is not an integer"),
    (["resume=/nonexistent"], "resume='/nonexistent': does not exist (allowed: null or an existing file"),
    (["stage.init_from=/nonexistent.ckpt"], "stage.init_from='/nonexistent.ckpt': does not exist"),
    (["data=shards", "data.root=/nonexistent"], "data.root='/nonexistent': no shards in /nonexistent/train"),
    (["preset.warmup_steps=-5"], "preset.warmup_steps=-5 (used as stage.warmup_steps): out of range (allowed: an "
                                 "integer >= 0)"),
    (["data.max_skip_fraction=-1"], "data.max_skip_fraction=-1: out of range (allowed: a number in [0, 1] or null)"),
    (["trainer.max_steps=0"], "trainer.max_steps=0: out of range (allowed: an integer >= 1)"),
    (["preset.max_steps=0"], "preset.max_steps=0 (used as trainer.max_steps)"),
    (["preset.val_every=0"], "preset.val_every=0 (used as trainer.val_check_interval)"),
    (["preset.data_sizes={train:0,val:8,test:8}"], "preset.data_sizes.train=0 (used as data.sizes.train)"),
    (["stage.betas=[0.9,1.5]"], "stage.betas=[0.9, 1.5]: out of range (allowed: two numbers in [0, 1)"),
    (["stage.weight_decay=-0.1"], "stage.weight_decay=-0.1: out of range (allowed: a number >= 0)"),
    (["stage.min_lr_ratio=2"], "stage.min_lr_ratio=2: out of range (allowed: a number in [0, 1])"),
    (["seed=-1"], "seed=-1: out of range"),
    (["data.num_workers=-1"], "data.num_workers=-1: out of range (allowed: an integer >= 0)"),
    (["data.max_skips=-3"], "data.max_skips=-3: out of range"),
    (["eval.max_batches=-2"], "eval.max_batches=-2: out of range"),
    (["trainer.devices=0"], "trainer.devices=0: out of range"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1: out of range"),
    (["adapter=conv", "adapter.stride=0"], "adapter.stride=0: out of range (allowed: an integer >= 1 or null)"),
    (["modality.generator.image_size=4"], "modality.generator (used as data.generator): image_size 4 outside"),
    (["task=lm", "task.lr=0"], "task.lr=0 (used as stage.lr): out of range (allowed: a number > 0)"),
    (["task=lm", "task.corpus.sources=[stdlib,nope]"], "task.corpus.sources names unknown sources ['nope']"),
])
def test_a_bad_value_names_its_key_and_the_allowed_range(overrides, message, tmp_path):
    with pytest.raises(ConfigError) as info:
        check_values(_cfg(tmp_path, *overrides))
    text = str(info.value)
    assert message in text and "\n" not in text
    assert text.startswith("bad config: ")  # one problem, reported once (not again under each key that uses it)
    assert not (tmp_path / "data").exists() and not (tmp_path / "mlflow.db").exists()  # nothing was created


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError, match=r"bad config \(3 problems\): .*stage.lr=0.*trainer.max_steps=0.*"
                                          r"preset.batch_size=0"):
        check_values(_cfg(tmp_path, "stage.lr=0", "trainer.max_steps=0", "preset.batch_size=0"))


@pytest.mark.parametrize("overrides", [[], ["task=lm"], ["modality=audio", "encoder=whisper"],
                                       ["modality=timeseries", "encoder=wavenet"], ["preset=paper"]])
def test_the_shipped_configs_pass(overrides, tmp_path):
    check_values(_cfg(tmp_path, *overrides))
    assert not (tmp_path / "data").exists()


def test_an_unwritable_data_root_is_reported(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    with read_only(parent):
        with pytest.raises(ConfigError, match=r"data.root='.*/ro/vision': is not writable .*offline dataset"):
            check_values(_cfg(tmp_path, f"data.root={parent / 'vision'}"))


def test_a_read_only_mlflow_folder_says_how_to_log_elsewhere(tmp_path):
    folder = tmp_path / "tracking"
    folder.mkdir()
    with read_only(folder):
        with pytest.raises(ConfigError) as info:
            preflight(_cfg(tmp_path, f"logger.tracking_uri=sqlite:///{folder}/mlflow.db"))
    text = str(info.value)
    assert f"the folder of the MLflow database, {folder}, is not writable" in text
    assert "logger.tracking_uri=sqlite:////" in text and "logger=csv" in text
    assert not (folder / "mlflow.db").exists()


def test_train_py_exits_with_one_line_on_a_read_only_mlflow_db(tmp_path):
    """The real entry point on a read-only mlflow.db: exit status 2 and one line, before any data or model."""
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as con:  # a real SQLite file (an MLflow store is one with more tables)
        con.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY)")
    con.close()
    with read_only(db):
        proc = run_train(tmp_path, "stage.lr=-1e-3", check=False, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]] and lines[-1].startswith("error: bad config (2 problems): "), proc.stderr[-3000:]
    assert "stage.lr=-0.001: out of range (allowed: a number > 0)" in lines[-1]
    assert f"the MLflow database {db} is not writable" in lines[-1] and "logger=csv" in lines[-1]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "data").exists()


def test_every_job_of_every_sweep_passes(tmp_path):
    from analysis.sweep_configs import compose_job, job_overrides, sweep_names

    for name in sweep_names():
        for overrides in job_overrides(name):
            check_values(compose_job(name, overrides, [f"paths.root={tmp_path}", f"paths.output={tmp_path / 'out'}"]))
