"""Reading shards back into schema samples: ``make_dataset``.

Built on ``webdataset.DataPipeline``: shard list (split by node and worker) or resampled shards -> tar records
-> buffer shuffle -> decode -> optional transform, with corrupt records skipped and counted by a ``SkipCounter``.

Epochs: shuffling and resampling depend on ``(seed, epoch)``. Call ``dataset.set_epoch(epoch)`` at each epoch start
(Lightning does not do this for iterable datasets); if it is never called, the epoch advances by one each time the
dataset is iterated in the same process.

Resume: ``dataset.resume(epoch, skip_per_worker)`` makes the next iteration start in ``epoch`` after dropping, in
each DataLoader worker, the samples that worker had already delivered; the stream is deterministic given
``(seed, epoch, rank, worker)``, so it continues exactly where the checkpoint left it (the dropped samples are
read and decoded again, without being counted twice).

DDP: use ``resampled=True`` with ``epoch_length`` so that every rank yields exactly ``epoch_length`` samples
(``epoch_length`` is per rank, shared among that rank's DataLoader workers); plain split-by-node streams give
ranks unequal counts whenever shards do not divide evenly.
"""

from __future__ import annotations

import glob
import os
import random
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from pathlib import Path

import webdataset as wds

from modrwkv.data.shards import decode_record
from modrwkv.data.skips import CorruptSample, SkipCounter, TooManySkipsError


def list_shards(urls_or_dir: str | os.PathLike | Sequence[str]) -> list[str]:
    """Shard URLs from a folder (every ``*.tar`` in it, sorted), a glob, a brace pattern or a list."""
    if isinstance(urls_or_dir, (list, tuple)):
        urls = [str(u) for u in urls_or_dir]
    elif os.path.isdir(urls_or_dir):
        urls = sorted(str(p) for p in Path(urls_or_dir).glob("*.tar"))
    elif any(c in str(urls_or_dir) for c in "*?["):
        urls = sorted(glob.glob(str(urls_or_dir)))
    else:
        urls = wds.shardlists.expand_urls(str(urls_or_dir))
    if not urls:
        raise FileNotFoundError(f"no shards found at {urls_or_dir!r} (expected a folder of .tar files, a glob, "
                                f"a brace pattern or a list)")
    missing = [u for u in urls if "://" not in u and not os.path.exists(u)]
    if missing:
        raise FileNotFoundError(f"shard files missing: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return urls


def _buffer_shuffle(src: Iterator, bufsize: int, rng: random.Random) -> Iterator:
    """Shuffle a stream with a buffer of ``bufsize`` (fills the buffer first: a full shuffle within it)."""
    buf = []
    for item in src:
        if len(buf) < bufsize:
            buf.append(item)
            continue
        i = rng.randrange(bufsize)
        yield buf[i]
        buf[i] = item
    rng.shuffle(buf)
    yield from buf


class ShardDataset(wds.DataPipeline):
    """The dataset ``make_dataset`` returns (a ``webdataset.DataPipeline`` with epochs and skip counting)."""

    def __init__(self, urls, shuffle, resampled, epoch_length, seed, split_nodes, split_workers, skip_counter,
                 transform):
        self.urls, self.shuffle, self.resampled = urls, shuffle, resampled
        self.epoch_length, self.seed = epoch_length, seed
        self.split_nodes, self.split_workers = split_nodes, split_workers
        self.skip_counter, self.transform = skip_counter, transform
        self.epoch, self._epoch_set, self._repeat = -1, False, 0
        self._skip_per_worker: list[int] | None = None
        self._replaying = False
        stages = [self._shard_source, wds.tarfile_to_samples(handler=self._on_error), self._shuffle_stage,
                  wds.map(self._decode, handler=self._on_error)]
        super().__init__(*stages)
        if epoch_length is not None:
            self.with_length(epoch_length, silent=True)

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch that seeds shard order, resampling and the buffer shuffle."""
        self.epoch, self._epoch_set = int(epoch), True

    def resume(self, epoch: int, skip_per_worker: list[int]) -> None:
        """Start the next iteration in ``epoch``, worker ``w`` first dropping ``skip_per_worker[w]`` samples."""
        self.epoch, self._epoch_set = int(epoch) - 1, False  # the next __iter__ advances to ``epoch``
        self._skip_per_worker = [int(n) for n in skip_per_worker]

    def _on_error(self, exn: BaseException) -> bool:
        if self._replaying:  # already counted before the checkpoint
            return True
        return self.skip_counter(exn)

    def _rng(self, *salt) -> random.Random:
        rank, _, worker, _ = wds.utils.pytorch_worker_info()
        return random.Random(f"{self.seed}|{self.epoch}|{self._repeat}|{rank}|{worker}|{salt}")

    def _shard_source(self):
        if self.resampled:
            # the library's resampler: seeded per (rank, worker) by its worker_seed, per epoch by ours
            seed = random.Random(f"{self.seed}|{self.epoch}|{self._repeat}").randrange(2**31)
            yield from wds.ResampledShards(self.urls, seed=seed, deterministic=True)
            return
        urls = list(self.urls)
        if self.shuffle:  # same order on every rank/worker (no rank in the seed), so the split stays disjoint
            random.Random(f"{self.seed}|{self.epoch}|{self._repeat}|shards").shuffle(urls)
        src = (dict(url=u) for u in urls)
        if self.split_nodes:
            src = wds.split_by_node(src)
        if self.split_workers:
            src = wds.split_by_worker(src)
        yield from src

    def _shuffle_stage(self, src):
        if not self.shuffle:
            return src
        return _buffer_shuffle(src, self.shuffle, self._rng("samples"))

    def _decode(self, record):
        source = record.get("__url__")
        try:
            sample = decode_record(record)
            if self.transform is not None:
                sample = self.transform(sample)
        except TooManySkipsError:
            raise
        except Exception as exn:  # the handler counts it against its shard
            raise CorruptSample(source, record.get("__key__"), exn) from exn
        sample["__url__"] = source  # the shard, for skips counted later (the collate)
        if not self._replaying:  # counted once fully usable: each record is seen or skipped
            self.skip_counter.count_seen(source=source)
        return sample

    def __iter__(self):
        skip_per_worker, self._skip_per_worker = self._skip_per_worker, None  # a resume applies once
        stream = self._epoch_stream()
        if skip_per_worker:
            _, _, worker, _ = wds.utils.pytorch_worker_info()
            self._replaying = True
            try:
                for _ in islice(stream, skip_per_worker[worker] if worker < len(skip_per_worker) else 0):
                    pass
            finally:
                self._replaying = False
        yield from stream

    def _epoch_stream(self):
        if not self._epoch_set:
            self.epoch += 1
        self._repeat = 0
        if self.epoch_length is None:
            yield from self.iterator1()
            return
        _, _, worker, num_workers = wds.utils.pytorch_worker_info()
        share = self.epoch_length // num_workers + (1 if worker < self.epoch_length % num_workers else 0)
        produced = 0
        while produced < share:  # a finite stream is repeated (with a new shuffle) until the share is filled
            count = 0
            for sample in islice(self.iterator1(), share - produced):
                count += 1
                yield sample
            produced += count
            self._repeat += 1
            if count == 0:
                break  # nothing at all for this worker (fewer shards than workers): stop rather than spin


def make_dataset(urls_or_dir, shuffle: int = 0, resampled: bool = False, epoch_length: int | None = None,
                 seed: int = 0, split_by_node: bool = True, split_by_worker: bool = True,
                 skip_counter: SkipCounter | None = None, transform: Callable[[dict], dict] | None = None):
    """An ``IterableDataset`` of schema samples read from webdataset shards.

    - ``urls_or_dir``: a folder of ``.tar`` shards, a glob, a brace pattern (``data/train-{000000..000009}.tar``)
      or a list of paths.
    - ``shuffle``: buffer size of the sample shuffle (0: no shuffling at all, shard order kept); with ``shuffle``
      > 0 the shard order is shuffled too.
    - ``resampled``: draw shards with replacement forever (needs ``epoch_length``); each rank/worker draws its own.
    - ``epoch_length``: samples per epoch for this rank (repeats a finite stream if needed); sets ``len()``.
    - ``split_by_node`` / ``split_by_worker``: give each DDP rank / DataLoader worker a disjoint subset of shards.
    - ``skip_counter``: counts and limits corrupt samples (default: a new ``SkipCounter()``), available as
      ``dataset.skip_counter``.
    - ``transform``: applied to each decoded sample (errors there are counted as skips too).

    The result has ``set_epoch(epoch)``; call it at each epoch start (see the module docstring).
    """
    if resampled and epoch_length is None:
        raise ValueError("resampled=True draws shards forever: give epoch_length (samples per epoch per rank)")
    if epoch_length is not None and epoch_length < 1:
        raise ValueError(f"epoch_length must be >= 1, got {epoch_length}")
    if shuffle < 0:
        raise ValueError(f"shuffle is a buffer size >= 0, got {shuffle}")
    return ShardDataset(list_shards(urls_or_dir), shuffle, resampled, epoch_length, seed, split_by_node,
                           split_by_worker, skip_counter if skip_counter is not None else SkipCounter(), transform)
