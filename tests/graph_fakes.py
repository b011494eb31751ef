"""CUDA-graph stand-ins for CPU tests of the graph caches' logic (keys, invalidation, state chaining): a "recorded"
call is run again on replay, reading the same static buffers a real graph would."""

from __future__ import annotations

import torch


class Rerun:
    """A `CapturedGraph` look-alike whose replay calls the recorded function again."""

    def __init__(self, fn):
        self.fn = fn
        self.output = fn()

    def replay(self):
        return self.fn()


def fake_capture(fn, warmup: int = 2, pool=None) -> Rerun:
    """`capture_graph`'s contract without CUDA: ``warmup`` real calls, then the "capture" (one more call)."""
    for _ in range(warmup):
        fn()
    return Rerun(fn)


def use_fake_graphs(monkeypatch, *modules) -> None:
    """Make ``modules`` (that imported ``capture_graph``) record with `fake_capture`; no CUDA pool handle."""
    for module in modules:
        monkeypatch.setattr(module, "capture_graph", fake_capture)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: None)
