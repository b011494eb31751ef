"""Several processes (DDP, FSDP): who reads which data, how a job started by submitit finds its rank, and checks.

Lightning does the distribution itself (strategies ``ddp``, ``ddp_spawn``, ``fsdp``; conf/trainer/). What is here,
one module per concern (every name is importable from this package too):

- ``data``: ``train_plan`` / ``RankStride``: every rank reads distinct samples and trains on the same number of
  batches, so no rank waits forever in a gradient all-reduce (``ModRWKVDataModule`` uses them when
  ``world_size > 1``).
- ``launch``: ``SubmititEnvironment``, a Lightning cluster environment for jobs that submitit started with one task
  per device (``hydra/launcher=slurm`` or ``hydra/launcher=local`` with ``tasks_per_node > 1``); each task is one
  rank, nothing is relaunched. ``cluster_overrides`` adds it to the Trainer. ``check_launch``: a clear error for the
  one combination that cannot work (a Hydra multirun with a strategy that relaunches ``sys.argv``).
- ``fsdp``: ``fsdp_strategy``, FSDP that shards each RWKV-7 block (a config cannot name classes directly).
- ``throughput``: ``ThroughputMonitor``, global tokens/s over all ranks and a check that ranks saw distinct
  samples (bench/).

docs/SCALING.md says which launch method to use when.
"""

from .data import RankStride, TrainPlan, rank_and_world, train_plan
from .fsdp import fsdp_strategy
from .launch import LaunchError, SubmititEnvironment, check_launch, cluster_overrides, is_multirun
from .throughput import ThroughputMonitor

__all__ = ["LaunchError", "RankStride", "SubmititEnvironment", "ThroughputMonitor", "TrainPlan", "check_launch",
           "cluster_overrides", "fsdp_strategy", "is_multirun", "rank_and_world", "train_plan"]
