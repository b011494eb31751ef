"""Several processes: which samples each rank reads, how ranks are found, the strategy configs, and a real
2-process DDP run on the CPU (gloo) that logs exactly one MLflow run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from modrwkv.training.datamodule import ModRWKVDataModule
from modrwkv.training.distributed import (
    LaunchError,
    RankStride,
    SubmititEnvironment,
    check_launch,
    cluster_overrides,
    train_plan,
)
from modrwkv.training.resolvers import register_resolvers

from .suite_utils import REPO, mlflow_runs, run_train

register_resolvers()


# ---- which samples each rank reads ---------------------------------------------------------------------------------
def test_train_plan_splits_shards_when_there_are_enough():
    urls = [f"s{i}.tar" for i in range(8)]
    plans = [train_plan(urls, r, 3, num_samples=100) for r in range(3)]
    assert [p.mode for p in plans] == ["split"] * 3
    assert [p.urls for p in plans] == [urls[0::3], urls[1::3], urls[2::3]]
    assert {p.epoch_length for p in plans} == {34}  # ceil(100 / 3) on every rank, whatever its shards hold
    # more readers (ranks x workers) than shards: every rank resamples all shards, still a fixed length
    plan = train_plan(urls, 1, 3, num_workers=4, num_samples=100)
    assert (plan.mode, plan.resampled, plan.urls, plan.epoch_length) == ("resampled", True, urls, 34)
    assert train_plan(urls, 0, 2, num_samples=100, epoch_length=7).epoch_length == 7
    assert train_plan(urls, 0, 1, num_samples=100) == train_plan(urls, 0, 1)  # one process: as configured
    with pytest.raises(ValueError, match="data.epoch_length"):
        train_plan(urls, 0, 2)  # shards converted from public data: nobody counted them


@pytest.mark.parametrize("n,world", [(16, 2), (17, 2), (16, 3), (2, 3)])
def test_rank_stride_covers_every_sample_with_equal_counts(n, world):
    parts = [list(RankStride(range(n), r, world)) for r in range(world)]
    assert len({len(p) for p in parts}) == 1  # same number of batches on every rank
    assert sorted(set().union(*parts)) == list(range(n))  # every sample evaluated
    assert sum(len(p) for p in parts) - n == (-n) % world  # the padding, and nothing else, is repeated


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A tiny generated image dataset: 48 training samples in 8 shards, 11 validation samples."""
    root = tmp_path_factory.mktemp("data") / "vision"
    dm = ModRWKVDataModule("image", str(root), generator={"image_size": 16}, sizes={"train": 48, "val": 11, "test": 3})
    dm.prepare_data()
    return root


def _keys_per_rank(root, world, split, num_workers=0, **kwargs):
    """The sample keys each of ``world`` ranks gets from the data module's DataLoader, one epoch."""
    out = []
    for rank in range(world):
        dm = ModRWKVDataModule("image", str(root), batch_size=4, eval_batch_size=4, num_workers=num_workers,
                               **kwargs)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=world)
        dm.setup("fit")  # not the process that prepared the data: reads its manifest
        dm.collate = lambda samples: [s["__key__"] for s in samples]  # the batch is just the keys
        if split == "train":
            batches = list(dm.train_dataloader())
        else:
            batches = [keys for keys, _ in dm.val_dataloader()]  # (packed, samples) for generation metrics
        out.append(batches)
    return out


@pytest.mark.parametrize("world,num_workers", [(2, 0), (2, 2), (3, 0)])
def test_every_rank_trains_on_distinct_samples_for_the_same_number_of_batches(shards, world, num_workers):
    batches = _keys_per_rank(shards, world, "train", num_workers=num_workers)
    assert len({len(b) for b in batches}) == 1, [len(b) for b in batches]
    per_rank = [{k for batch in b for k in batch} for b in batches]
    samples = [sum(len(batch) for batch in b) for b in batches]
    assert samples == [-(-48 // world)] * world  # ceil(48 / world) each (a rank with fewer repeats its own)
    for i in range(world):
        for j in range(i + 1, world):
            assert not per_rank[i] & per_rank[j], f"ranks {i} and {j} share samples"
    if world == 2:
        assert len(per_rank[0] | per_rank[1]) == 48  # together: the whole training set


def test_resampled_ranks_draw_different_streams(shards, monkeypatch):
    # resampling seeds by rank as webdataset sees it (torch.distributed in a real run, here the variables)
    streams = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        dm = ModRWKVDataModule("image", str(shards), batch_size=4, resampled=True, epoch_length=20)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        dm.setup("fit")
        dm.collate = lambda samples: [s["__key__"] for s in samples]
        streams.append([k for batch in dm.train_dataloader() for k in batch])
    assert [len(s) for s in streams] == [20, 20]
    assert streams[0] != streams[1]


def test_every_validation_sample_is_evaluated_once_over_the_ranks(shards):
    batches = _keys_per_rank(shards, 2, "val")
    assert len(batches[0]) == len(batches[1])  # FSDP would hang on unequal counts
    keys = [k for b in batches for batch in b for k in batch]
    assert len(set(keys)) == 11 and len(keys) == 12  # 11 samples, one repeated to even out the ranks


# ---- launching -----------------------------------------------------------------------------------------------------
def test_relaunching_strategy_in_a_multirun_is_a_clear_error():
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False)
    check_launch(trainer, multirun=False)  # a single run: Lightning relaunches the command line, fine
    with pytest.raises(LaunchError, match="ddp_spawn.*tasks_per_node"):
        check_launch(trainer, multirun=True)
    spawn = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False, enable_progress_bar=False)
    check_launch(spawn, multirun=True)


def _submitit_task(monkeypatch, rank: int, ntasks: int = 2):
    """The variables submitit's local executor gives task ``rank`` of a job."""
    for key, value in {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "4242", "SUBMITIT_LOCAL_NTASKS": ntasks,
                       "SUBMITIT_LOCAL_JOB_NUM_NODES": 1, "SUBMITIT_LOCAL_NODEID": 0,
                       "SUBMITIT_LOCAL_GLOBALID": rank, "SUBMITIT_LOCAL_LOCALID": rank}.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.delenv("MASTER_PORT", raising=False)


def test_submitit_task_is_one_rank_and_nothing_is_relaunched(monkeypatch):
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only

    # a Trainer of rank 1 makes this process rank 1 for Lightning's rank-zero-only functions: undone afterwards
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    monkeypatch.setattr(utils_rank_zero_only, "rank", 0)
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert cluster_overrides() == {}  # not a submitit job
    _submitit_task(monkeypatch, rank=1)
    overrides = cluster_overrides()
    env = overrides["plugins"][0]
    assert (overrides["devices"], overrides["num_nodes"]) == (2, 1)
    assert (env.global_rank(), env.local_rank(), env.world_size(), env.main_address) == (1, 1, 2, "127.0.0.1")
    assert 15000 <= env.main_port < 35000 and env.main_port == SubmititEnvironment().main_port  # same on all tasks
    trainer = L.Trainer(accelerator="cpu", strategy="ddp", logger=False, enable_progress_bar=False, **overrides)
    assert (trainer.global_rank, trainer.world_size) == (1, 2)
    assert trainer.strategy.cluster_environment.creates_processes_externally  # Lightning starts no process
    check_launch(trainer, multirun=True)  # one task per device: fine inside a sweep
    _submitit_task(monkeypatch, rank=0, ntasks=1)
    assert cluster_overrides() == {}  # a one-task job is an ordinary single process
    _submitit_task(monkeypatch, rank=0, ntasks=4)
    with pytest.raises(ValueError, match="tasks"):
        L.Trainer(accelerator="cpu", strategy="ddp", devices=2, plugins=[SubmititEnvironment()], logger=False)


def _compose(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


@pytest.mark.parametrize("name,backend,spawn", [("ddp", "nccl", False), ("ddp_cpu", "gloo", False),
                                                ("ddp_spawn", "nccl", True), ("ddp_spawn_cpu", "gloo", True)])
def test_ddp_trainer_configs(name, backend, spawn):
    from lightning.pytorch.strategies import DDPStrategy

    cfg = _compose(f"trainer={name}")
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, DDPStrategy)
    assert strategy._process_group_backend == backend
    assert strategy._ddp_kwargs["find_unused_parameters"] is True  # layer 0's unused value-residual LoRA
    assert (strategy._start_method == "spawn") == spawn
    assert cfg.trainer.accelerator == ("cpu" if "cpu" in name else "gpu")


def test_fsdp_config_wraps_each_rwkv_block():
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from modrwkv.backbone.layers import Block

    cfg = _compose("trainer=fsdp", "preset=paper", "backbone=random", "backbone.scale=1.5b")
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert isinstance(strategy.kwargs["auto_wrap_policy"], ModuleWrapPolicy)
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {Block}
    assert strategy.kwargs["use_orig_params"] is True  # frozen encoder + trained adapter in the root unit
    assert cfg.trainer.precision == "bf16-mixed"


def test_slurm_launcher_config_composes_into_an_sbatch_script(tmp_path, monkeypatch):
    """hydra/launcher=slurm composes, and submitit turns it into the sbatch script we mean (srun is faked)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    monkeypatch.setenv("MODRWKV_SLURM_PARTITION", "gpu-h100")
    monkeypatch.setenv("MODRWKV_SLURM_ACCOUNT", "proj42")
    cfg = _compose("hydra/launcher=slurm", "trainer=ddp", "hydra.launcher.gpus_per_node=4", "hydra.launcher.nodes=2",
                   "hydra.launcher.timeout_min=90", hydra=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["account"], launcher["tasks_per_node"]) == ("gpu-h100", "proj42", 4)
    # what hydra-submitit-launcher does with the config (its launch()), up to writing the sbatch file
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    params = {k: v for k, v in launcher.items() if k not in ("_target_", "submitit_folder", "max_num_timeout")}
    executor = submitit.AutoExecutor(folder=tmp_path / "sub", cluster="slurm", slurm_max_num_timeout=0)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    sbatch = executor._executor._make_submission_file_text("python -u -m submitit.core._submit x", "uid")
    for line in ("--partition=gpu-h100", "--account=proj42", "--nodes=2", "--ntasks-per-node=4",
                 "--gpus-per-node=4", "--time=90", "--cpus-per-task=10"):
        assert f"#SBATCH {line}\n" in sbatch, line
    assert "srun" in sbatch  # one task per GPU, each its own DDP rank


def test_local_launcher_config_composes():
    from omegaconf import OmegaConf

    cfg = _compose("hydra/launcher=local", "hydra.launcher.tasks_per_node=2", hydra=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("LocalLauncher")
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"], launcher["nodes"]) == (2, 2, 1)


# ---- a real run ----------------------------------------------------------------------------------------------------
def test_two_process_ddp_on_cpu_trains_and_logs_one_mlflow_run(tmp_path):
    out = tmp_path / "throughput.json"
    proc = run_train(tmp_path, "trainer=ddp_cpu", "trainer.devices=2", "preset.data_sizes={train:32,val:8,test:8}",
                     "+callbacks.throughput._target_=modrwkv.training.distributed.ThroughputMonitor",
                     "+callbacks.throughput.warmup=1", f"+callbacks.throughput.path={out}")
    log = proc.stdout + proc.stderr
    assert "Starting with 2 processes" in log
    assert "rank 1/2 reads 4 training shards (split)" in log  # the relaunched rank ran too
    runs = mlflow_runs(tmp_path)
    assert len(runs) == 1, runs[["run_id", "tags.mlflow.runName"]]  # rank 1 wrote nothing
    run = runs.iloc[0]
    assert run["status"] == "FINISHED"
    for metric in ("train/loss", "val/loss", "val/accuracy", "test/loss", "test/accuracy"):
        assert run[f"metrics.{metric}"] == run[f"metrics.{metric}"], metric  # present (not NaN)
    result = json.loads(out.read_text())
    assert result["world_size"] == 2 and result["steps"] == 3 and result["tokens"] > 0
    assert result["distinct_across_ranks"] and result["samples_per_rank"] == [32, 32]  # 4 steps x batch 8 each


def test_gradient_clipping_by_norm_goes_through_the_fsdp_module_under_fsdp():
    """Lightning's FSDP precision refuses norm clipping; the module asks the FSDP root to clip over all shards,
    and leaves every other strategy to Lightning (which clips locally)."""
    import torch

    from modrwkv.training.module import ModRWKVModule

    class FSDPStrategyStub:  # stands for lightning's FSDPStrategy: only the class name and `model` are read
        def __init__(self):
            self.model = SimpleNamespace(clipped=[], clip_grad_norm_=lambda v: self.model.clipped.append(v))

    module = ModRWKVModule(torch.nn.Linear(3, 1), modality="text", optim={"lr": 1e-3})
    module.model.weight.grad = torch.full((1, 3), 10.0)
    strategy = FSDPStrategyStub()
    module._trainer = SimpleNamespace(strategy=strategy)
    module.configure_gradient_clipping(None, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
    assert strategy.model.clipped == [1.0]
    assert torch.equal(module.model.weight.grad, torch.full((1, 3), 10.0))  # untouched here: FSDP's call clips

    calls = []
    module._trainer = SimpleNamespace(strategy=SimpleNamespace())  # DDP/single device: Lightning's own path
    module.clip_gradients = lambda opt, gradient_clip_val, gradient_clip_algorithm: calls.append(
        (gradient_clip_val, gradient_clip_algorithm))
    module.configure_gradient_clipping(None, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
    assert calls == [(0.5, "norm")]
