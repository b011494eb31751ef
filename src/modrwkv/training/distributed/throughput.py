"""A callback measuring training throughput over all ranks, and whether the ranks saw distinct samples (bench/)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import torch


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
