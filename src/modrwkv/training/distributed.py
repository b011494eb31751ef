"""Several processes (DDP, FSDP): who reads which data, how a job started by submitit finds its rank, and checks.

Lightning does the distribution itself (strategies ``ddp``, ``ddp_spawn``, ``fsdp``; conf/trainer/). What is here:

- ``train_plan`` / ``RankStride``: every rank reads distinct samples and trains on the same number of batches, so no
  rank waits forever in a gradient all-reduce (``ModRWKVDataModule`` uses them when ``world_size > 1``).
- ``SubmititEnvironment``: a Lightning cluster environment for jobs that submitit started with one task per device
  (``hydra/launcher=slurm`` or ``hydra/launcher=local`` with ``tasks_per_node > 1``); each task is one rank, nothing
  is relaunched. ``cluster_overrides`` adds it to the Trainer.
- ``check_launch``: a clear error for the one combination that cannot work (a Hydra multirun with a strategy that
  relaunches ``sys.argv``).
- ``fsdp_strategy``: FSDP that shards each RWKV-7 block (a config cannot name classes directly).
- ``ThroughputMonitor``: global tokens/s over all ranks and a check that ranks saw distinct samples (bench/).
docs/SCALING.md says which launch method to use when.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.environments import ClusterEnvironment
from torch.utils.data import IterableDataset

log = logging.getLogger("modrwkv.distributed")


# ---- data ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainPlan:
    """What one rank reads for training: ``urls`` (its shards, or all of them when resampling), ``resampled``,
    ``epoch_length`` (samples per epoch for this rank, the same on every rank) and ``mode`` (for the log)."""

    urls: list[str]
    resampled: bool
    epoch_length: int | None
    mode: str


def train_plan(urls: Sequence[str], rank: int, world_size: int, num_workers: int = 0, num_samples: int | None = None,
               epoch_length: int | None = None, resampled: bool = False) -> TrainPlan:
    """Which training shards ``rank`` reads and how many samples it yields per epoch.

    One process (``world_size == 1``): all shards, the settings as given. Several: every rank gets the same fixed
    ``epoch_length`` (``epoch_length`` if given, else ``ceil(num_samples / world_size)``), so all ranks run the same
    number of steps, and

    - ``mode="split"``: when there are at least as many shards as readers (ranks x DataLoader workers) and
      ``resampled`` is off, rank r takes shards r, r + world, ... : ranks read disjoint samples; a rank whose shards
      hold fewer than ``epoch_length`` samples repeats them (the reader reshuffles each pass);
    - ``mode="resampled"``: otherwise every rank draws shards with replacement, seeded by its rank and worker, so the
      streams are different but may share a sample now and then (fine for large datasets, the usual webdataset way).
    """
    urls = list(urls)
    if world_size <= 1:
        return TrainPlan(urls, resampled, epoch_length, "single")
    if epoch_length is None:
        if num_samples is None:
            raise ValueError("several processes need a fixed number of samples per rank: set data.epoch_length "
                             "(samples per epoch per rank), or use data=offline whose manifest counts them")
        epoch_length = math.ceil(num_samples / world_size)
    readers = world_size * max(1, num_workers)
    if not resampled and len(urls) >= readers:
        return TrainPlan(urls[rank::world_size], False, epoch_length, "split")
    if not resampled:
        log.warning("%d training shards for %d readers (%d ranks x %d workers): resampling shards instead of "
                    "splitting them (ranks may share a few samples; write more shards to avoid it)",
                    len(urls), readers, world_size, max(1, num_workers))
    return TrainPlan(urls, True, epoch_length, "resampled")


class RankStride(IterableDataset):
    """Samples ``rank``, ``rank + world_size``, ... of ``dataset``'s stream (within each DataLoader worker), padded
    so that every rank yields the same number.

    For evaluation: every sample is evaluated once over all ranks, whatever the number of shards (splitting shards
    would leave a rank with nothing when there are fewer shards than ranks). Every rank reads the whole stream, so
    each knows its length at the end; a rank that got one sample fewer repeats the stream's first (as Lightning's
    DistributedSampler pads), because the ranks must run the same number of batches: FSDP gathers parameters in
    every forward, and the metric sync at the epoch's end waits for every rank. At most ``world_size - 1``
    duplicates per worker.
    """

    def __init__(self, dataset: Iterable, rank: int, world_size: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.dataset, self.rank, self.world_size = dataset, rank, world_size

    def __iter__(self) -> Iterator:
        first, n = None, 0
        for n, sample in enumerate(self.dataset, start=1):
            first = sample if first is None else first
            if (n - 1) % self.world_size == self.rank:
                yield sample
        # ranks below n % world got ceil(n / world) samples, the others one fewer: they repeat the stream's first
        if n % self.world_size and self.rank >= n % self.world_size:
            yield first


def rank_and_world(trainer) -> tuple[int, int]:
    """(global rank, world size) of the trainer the datamodule is attached to; (0, 1) without one."""
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)


# ---- launching -----------------------------------------------------------------------------------------------------
class SubmititEnvironment(ClusterEnvironment):
    """Ranks from submitit's ``JobEnvironment``: submitit started one process per device (SLURM or local executor).

    Lightning then starts no processes of its own (``creates_processes_externally``), so this works inside a Hydra
    multirun, where relaunching ``sys.argv`` cannot. On SLURM the ranks are SLURM's; with submitit's local executor
    (``hydra/launcher=local``) they come from its ``SUBMITIT_LOCAL_*`` variables, which Lightning does not know.
    The main port is derived from the job id (every array task its own), or ``MASTER_PORT`` if set.
    """

    def __init__(self):
        import submitit

        self._env = submitit.JobEnvironment()
        self._hosts = list(self._env.hostnames) if self._env.name() == "slurm" else ["127.0.0.1"]

    @staticmethod
    def detect() -> bool:
        """Inside a submitit job with more than one task."""
        if os.environ.get("SUBMITIT_EXECUTOR") not in ("slurm", "local"):
            return False
        import submitit

        return submitit.JobEnvironment().num_tasks > 1

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return os.environ.get("MASTER_ADDR", self._hosts[0])

    @property
    def main_port(self) -> int:
        if "MASTER_PORT" in os.environ:
            return int(os.environ["MASTER_PORT"])
        return 15000 + zlib.crc32(str(self._env.job_id).encode()) % 20000

    @property
    def num_nodes(self) -> int:
        return int(self._env.num_nodes)

    @property
    def tasks_per_node(self) -> int:
        return int(self._env.num_tasks) // self.num_nodes

    def world_size(self) -> int:
        return int(self._env.num_tasks)

    def set_world_size(self, size: int) -> None:
        if size != self.world_size():
            raise ValueError(f"the Trainer wants {size} processes but submitit started {self.world_size()} tasks: "
                             f"set trainer.devices x trainer.num_nodes = tasks_per_node x nodes")

    def global_rank(self) -> int:
        return int(self._env.global_rank)

    def set_global_rank(self, rank: int) -> None:
        pass  # the rank is submitit's

    def local_rank(self) -> int:
        return int(self._env.local_rank)

    def node_rank(self) -> int:
        return int(self._env.node)

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        if num_devices * num_nodes != self.world_size():
            raise ValueError(f"trainer.devices={num_devices} x trainer.num_nodes={num_nodes} != {self.world_size()} "
                             f"submitit tasks: one task per device (hydra.launcher.tasks_per_node = devices)")


def cluster_overrides() -> dict:
    """Trainer arguments for a job that submitit started with several tasks: the ``SubmititEnvironment`` plugin and
    ``devices``/``num_nodes`` as submitit laid them out. Empty otherwise (Lightning detects torchrun and plain SLURM
    ``srun`` itself, and launches its own processes in a single run)."""
    if not SubmititEnvironment.detect():
        return {}
    env = SubmititEnvironment()
    log.info("submitit job: rank %d of %d (%d nodes x %d tasks), main %s:%d", env.global_rank(), env.world_size(),
             env.num_nodes, env.tasks_per_node, env.main_address, env.main_port)
    return {"plugins": [env], "devices": env.tasks_per_node, "num_nodes": env.num_nodes}


class LaunchError(RuntimeError):
    """This way of starting processes cannot work; the message says which one does."""


def check_launch(trainer: L.Trainer, multirun: bool) -> None:
    """Refuse a strategy that relaunches ``sys.argv`` (ddp, fsdp) inside a Hydra multirun: every relaunched process
    would start the whole sweep again. Raised before any training."""
    from lightning.fabric.strategies.launchers.subprocess_script import _SubprocessScriptLauncher as FabricLauncher
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    env = getattr(trainer.strategy, "cluster_environment", None)
    relaunches = (isinstance(launcher, (_SubprocessScriptLauncher, FabricLauncher)) and trainer.num_devices > 1
                  and env is not None and not env.creates_processes_externally)
    if multirun and relaunches:
        raise LaunchError(
            f"strategy {type(trainer.strategy).__name__} with {trainer.num_devices} devices relaunches "
            "`python src/train.py ...` once per device, which cannot work inside a Hydra multirun (-m). Use one of: "
            "trainer=ddp_spawn (this machine); hydra/launcher=slurm or hydra/launcher=local with "
            "hydra.launcher.tasks_per_node=<devices> (one submitit task per device); or a single run per process "
            "with torchrun. See docs/SCALING.md.")


def is_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().mode) == "RunMode.MULTIRUN"
    except ValueError:  # not under Hydra
        return False


# ---- strategies ----------------------------------------------------------------------------------------------------
def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def fsdp_strategy(wrap: Sequence[str] = ("modrwkv.backbone.layers.Block",), checkpoint: Sequence[str] = (),
                  **kwargs):
    """Lightning's ``FSDPStrategy`` sharding each module of the classes named in ``wrap`` (dotted paths).

    ``checkpoint``: classes whose forward is recomputed in the backward (activation checkpointing by FSDP; leave
    empty when the backbone's own ``grad_checkpointing`` is on). Other ``kwargs`` go to ``FSDPStrategy`` (and from
    there to ``FullyShardedDataParallel``, e.g. ``use_orig_params``, needed when frozen and trainable parameters
    share a wrapped unit, as the frozen encoder and the trained adapter do in the root unit).
    """
    from lightning.pytorch.strategies import FSDPStrategy

    wrap_classes = {_import(p) for p in wrap}
    ckpt_classes = {_import(p) for p in checkpoint} or None
    return FSDPStrategy(auto_wrap_policy=wrap_classes, activation_checkpointing_policy=ckpt_classes, **kwargs)


# ---- measurement ---------------------------------------------------------------------------------------------------
class ThroughputMonitor(L.Callback):
    """Training tokens per second over all ranks, after ``warmup`` steps (kernel compilation, allocator warm-up),
    and whether the ranks' training samples were distinct. Rank 0 prints one ``THROUGHPUT {json}`` line at the end
    of training and writes the same JSON to ``path`` if given.

    The JSON: world_size, steps (timed), seconds, tokens (all ranks), tokens_per_s, samples_per_rank,
    distinct_across_ranks (no sample key on two ranks), shared_keys (how many keys more than one rank saw).
    """

    def __init__(self, warmup: int = 2, path: str | None = None):
        self.warmup, self.path = int(warmup), path
        self._tokens, self._t0, self._steps = 0, None, 0
        self._keys: list[str] = []
        self.result: dict | None = None

    @staticmethod
    def _sync(device: torch.device) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup and self._t0 is None:
            self._sync(pl_module.device)
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch is None:
            return
        self._keys.extend(k for k in batch.get("keys") or [] if k is not None)
        if self._t0 is not None:
            self._tokens += int(batch["input_ids"].numel())
            self._steps += 1

    def on_train_end(self, trainer, pl_module):
        self._sync(pl_module.device)
        seconds = time.perf_counter() - self._t0 if self._t0 is not None else float("nan")
        tokens = trainer.strategy.reduce(torch.tensor(float(self._tokens), device=pl_module.device), reduce_op="sum")
        world = trainer.world_size
        per_rank = [self._keys]
        if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            per_rank = [None] * world
            torch.distributed.all_gather_object(per_rank, self._keys)
        seen: dict[str, int] = {}
        for keys in per_rank:
            for k in set(keys):
                seen[k] = seen.get(k, 0) + 1
        shared = sum(1 for n in seen.values() if n > 1)
        self.result = {"world_size": world, "steps": self._steps, "seconds": seconds, "tokens": float(tokens),
                       "tokens_per_s": float(tokens) / seconds if self._steps else float("nan"),
                       "samples_per_rank": [len(k) for k in per_rank], "distinct_across_ranks": shared == 0,
                       "shared_keys": shared}
        if trainer.is_global_zero:
            print("THROUGHPUT " + json.dumps(self.result), flush=True)
            if self.path:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                Path(self.path).write_text(json.dumps(self.result, indent=1))
