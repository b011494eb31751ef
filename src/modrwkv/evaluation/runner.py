"""Run one benchmark on a model: batched generation through ``ModRWKV.generate_batch``, then the official scorer."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .benchmarks.records import Record, to_sample
from .benchmarks.registry import Benchmark


@dataclass
class BenchmarkResult:
    """metrics: the scorer's; predictions: one answer per record; seconds: generation wall time (image/audio
    decoding, encoder, prefill and decoding); samples_per_s = records / seconds."""

    metrics: dict[str, float]
    predictions: list[str]
    seconds: float

    @property
    def samples_per_s(self) -> float:
        return len(self.predictions) / max(self.seconds, 1e-9)


def evaluate(model, benchmark: Benchmark, records: list[Record], batch_size: int = 16,
             max_new_tokens: int | None = None) -> BenchmarkResult:
    """Answer every record greedily, ``batch_size`` at a time, and score the answers."""
    if not records:
        raise ValueError(f"benchmark {benchmark.name}: no records to evaluate")
    budget = max_new_tokens or benchmark.max_new_tokens
    predictions: list[str] = []
    start = time.perf_counter()
    for i in range(0, len(records), batch_size):
        batch = records[i:i + batch_size]
        predictions += model.generate_batch([to_sample(r) for r in batch], max_new_tokens=budget)
    seconds = time.perf_counter() - start
    return BenchmarkResult(benchmark.score(records, predictions), predictions, seconds)
