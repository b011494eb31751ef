"""Who reads which data when several processes train: every rank reads distinct samples and runs the same number
of batches, so no rank waits forever in a gradient all-reduce (``ModRWKVDataModule`` uses these when
``world_size > 1``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from torch.utils.data import IterableDataset

log = logging.getLogger("modrwkv.distributed")


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
