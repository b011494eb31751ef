"""The LightningDataModule: webdataset shards (generated offline or converted from public data) -> packed batches."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader, get_worker_info

from ..data.collate import PackedCollate
from ..data.skips import SkipCounter
from .distributed import RankStride, rank_and_world, train_plan

log = logging.getLogger("modrwkv.training")


class EvalCollate:
    """Packed batch for the loss, plus the raw samples for generation-based metrics."""

    def __init__(self, packed: PackedCollate):
        self.packed = packed

    def __call__(self, samples):
        return self.packed(samples), list(samples)


class TagWorker:
    """Training collate that records which DataLoader worker made each batch (``batch["worker"]``) and the
    training samples that worker counted as decoded or skipped since its previous batch (``batch["skip_delta"]``),
    so the data module knows what the consumed batches cost (read-ahead excluded) and a resume continues every
    worker's stream and the counts exactly."""

    def __init__(self, collate: PackedCollate, skips: SkipCounter):
        self.collate, self.skips = collate, skips
        self._last = (0, 0)  # this worker's (skipped, seen) at its previous batch

    def __call__(self, samples):
        batch = self.collate(samples)
        if batch is not None and not isinstance(batch, dict):  # another collate's batch: passed on untagged
            return batch
        info = get_worker_info()
        now = self.skips.local_counts("train")
        tag = {"worker": info.id if info is not None else 0,
               "skip_delta": (now[0] - self._last[0], now[1] - self._last[1])}
        self._last = now
        return tag if batch is None else {**batch, **tag}


def shards_fingerprint(folder: Path) -> str:
    """A short hash of the training shards' names and sizes: a resume checks it sees the same data."""
    h = hashlib.sha256()
    for p in sorted(folder.glob("*.tar")):
        h.update(f"{p.name}:{p.stat().st_size};".encode())
    return h.hexdigest()[:16]


class ModRWKVDataModule(L.LightningDataModule):
    """Shards of one modality.

    Args:
        modality: image | audio | series.
        root: the dataset folder (train/, val/, test/ shard folders).
        source: "offline" generates the project's own dataset into ``root`` first (once); "shards" reads existing
            shards (e.g. from the converters).
        generator: options of the offline generator (see ``modrwkv.data.prepare.make_config``).
        sizes: samples per split for the offline generator.
        batch_size / eval_batch_size: samples per packed batch. max_tokens: longest packed row.
        shuffle_buffer, resampled, epoch_length: see ``modrwkv.data.reader.make_dataset``.
        max_skips, max_skip_fraction: corrupt-sample limits (past them the run stops with a clear error).

    Several processes (DDP/FSDP): each rank trains on its own shards (or resampled ones) for the same fixed number
    of samples (``epoch_length``, default: the training set divided by the world size), and evaluates every
    world-size-th sample; see ``modrwkv.training.distributed.train_plan``.

    Resume: the checkpoint holds the data position (``state_dict``): the epoch, the batches each DataLoader worker
    delivered in it, the corrupt-sample counts and a fingerprint of the shards; ``resume=`` continues the stream
    exactly there (same seed: the same batches as an uninterrupted run).
    """

    def __init__(self, modality: str, root: str, source: str = "offline", generator: dict | None = None,
                 sizes: dict | None = None, seed: int = 0, batch_size: int = 16, eval_batch_size: int = 32,
                 num_workers: int = 0, max_tokens: int | None = None, shuffle_buffer: int = 1000,
                 resampled: bool = False, epoch_length: int | None = None, max_skips: int | None = 100,
                 max_skip_fraction: float | None = 0.05, cache_dir: str | None = None):
        super().__init__()
        if source not in ("offline", "shards"):
            raise ValueError(f"data.source must be 'offline' or 'shards', got {source!r}")
        self.modality, self.root, self.source = modality, str(root), source
        self.generator = dict(generator or {})
        self.sizes = {"train": 2000, "val": 200, "test": 200, **dict(sizes or {})}
        self.seed = seed
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.max_tokens = max_tokens
        self.shuffle_buffer, self.resampled, self.epoch_length = shuffle_buffer, resampled, epoch_length
        self.cache_dir = cache_dir
        self.skips = SkipCounter(max_skips=max_skips, max_fraction=max_skip_fraction, name="data")
        self.collate: PackedCollate | None = None
        self.manifest: dict = {}
        self._epoch, self._worker_batches = 0, [0]  # the training batches each worker delivered in this epoch
        self._consumed = (0, 0)  # (skipped, seen) training samples behind the batches delivered so far
        self._resume_state: dict | None = None

    def bind(self, model) -> ModRWKVDataModule:
        """Use the model's chat template, encoder preprocessing and adapter token counts to build batches."""
        self.collate = PackedCollate(model.template, model.encoder, model.adapter, max_tokens=self.max_tokens,
                                     skip_counter=self.skips)
        return self

    def prepare_data(self):
        if self.source == "offline":
            from ..data.prepare import prepare_offline_dataset

            prepared = prepare_offline_dataset(self.modality, self.root, n_train=self.sizes["train"],
                                               n_val=self.sizes["val"], n_test=self.sizes["test"], seed=self.seed,
                                               config=self.generator, cache_dir=self.cache_dir)
            self.manifest = prepared.manifest
        else:
            for split in ("train", "val"):
                if not any((Path(self.root) / split).glob("*.tar")):
                    raise FileNotFoundError(f"no shards in {Path(self.root) / split}: convert a dataset first "
                                            "(python -m modrwkv.data.convert_llava --help, ...) or use data=offline")

    def setup(self, stage: str | None = None):
        # Lightning runs prepare_data on one process per node only: the other ranks read what it wrote
        if self.source == "offline" and not self.manifest:
            from ..data.prepare import load_prepared

            self.manifest = load_prepared(self.root).manifest

    def has_split(self, split: str) -> bool:
        """Whether ``split`` has shards (converted data may come with train/ and val/ only)."""
        return self.source == "offline" or any((Path(self.root) / split).glob("*.tar"))

    def _dataset(self, split: str, train: bool):
        from ..data.reader import list_shards, make_dataset

        folder = Path(self.root) / split
        rank, world = rank_and_world(self.trainer)
        if not train:  # every sample once over all ranks (one rank: the whole split in order)
            data = make_dataset(str(folder), shuffle=0, seed=self.seed, split_by_node=False, skip_counter=self.skips)
            return data if world == 1 else RankStride(data, rank, world)
        # several ranks: the same number of samples on each (else a rank waits forever in the gradient all-reduce)
        count = self.manifest.get("counts", {}).get(split, {}).get("samples")
        plan = train_plan(list_shards(str(folder)), rank, world, num_workers=self.num_workers, num_samples=count,
                          epoch_length=self.epoch_length, resampled=self.resampled)
        self.skips.expect(plan.epoch_length or count)  # the skip fraction is judged over a whole pass at least
        if world > 1:
            log.info("rank %d/%d reads %s training shards (%s), %d samples per epoch", rank, world,
                     len(plan.urls), plan.mode, plan.epoch_length)
        # the plan already split the shards between ranks
        data = make_dataset(plan.urls, shuffle=self.shuffle_buffer, resampled=plan.resampled,
                            epoch_length=plan.epoch_length, seed=self.seed, split_by_node=False,
                            skip_counter=self.skips)
        self._apply_resume(data, folder)
        return data

    # ---- the data position, saved in checkpoints -----------------------------------------------------------
    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, dict) and "worker" in batch:  # a training batch (see TagWorker)
            batch = dict(batch)
            worker = batch.pop("worker")
            skipped, seen = batch.pop("skip_delta")
            self._consumed = (self._consumed[0] + skipped, self._consumed[1] + seen)
            if self.trainer.current_epoch != self._epoch:
                self._epoch, self._worker_batches = self.trainer.current_epoch, [0] * len(self._worker_batches)
            self._worker_batches[worker] += 1
            return batch if "input_ids" in batch else None  # None: every sample of the batch was corrupt
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "worker_batches": list(self._worker_batches), "batch_size": self.batch_size,
                "skips": self.skips.state_dict(), "consumed": list(self._consumed), "seed": self.seed,
                "fingerprint": shards_fingerprint(Path(self.root) / "train")}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_state = dict(state_dict)

    def _apply_resume(self, data, folder: Path) -> None:
        """On resume: restore the counts and make ``data`` continue each worker's stream after the checkpoint."""
        self._worker_batches = [0] * max(1, self.num_workers)
        state, self._resume_state = self._resume_state, None
        if state is None:
            return
        self.skips.load_state_dict(state["skips"])
        self._consumed = tuple(state["consumed"])  # the training split's exact counts (no read-ahead)
        self.skips.set_split("train", *self._consumed)
        if state["fingerprint"] != shards_fingerprint(folder) or state["seed"] != self.seed:
            log.warning("resume: the training data (%s, seed %s) is not the data of the checkpoint (seed %s): the "
                        "stream restarts at the epoch start instead of continuing", folder, self.seed, state["seed"])
            return
        epoch = self.trainer.current_epoch if self.trainer is not None else state["epoch"]
        if epoch != state["epoch"]:  # the checkpoint closed its epoch: the next one starts from its beginning
            data.resume(epoch, [])
            self._epoch = epoch
            return
        batches = list(state["worker_batches"])
        if len(batches) != len(self._worker_batches) or state["batch_size"] != self.batch_size:
            log.warning("resume: data.num_workers or the batch size changed since the checkpoint (%d workers, "
                        "batch %d): the stream continues approximately", len(batches), state["batch_size"])
            total = sum(batches) * state["batch_size"] // self.batch_size
            n = len(self._worker_batches)
            batches = [total // n + (1 if w < total % n else 0) for w in range(n)]
        data.resume(epoch, [b * self.batch_size for b in batches])
        self._epoch, self._worker_batches = epoch, batches
        log.info("resume: epoch %d continues after %d training batches", epoch, sum(batches))

    def _loader(self, split: str, train: bool):
        if self.collate is None:
            raise RuntimeError("call datamodule.bind(model) before training")
        collate = TagWorker(self.collate, self.skips) if train else EvalCollate(self.collate)
        return DataLoader(self._dataset(split, train), batch_size=self.batch_size if train else self.eval_batch_size,
                          collate_fn=collate, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0 and train)

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)
