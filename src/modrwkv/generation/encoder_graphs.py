"""The modality encoder + adapter of fixed-shape inputs (images) through CUDA graphs, for generation on a GPU.

A vision tower on one image is bound by launching its kernels (a dozen transformer blocks of small products,
norms and attention), not by their arithmetic. `EncoderGraphs` records ``encode(x)`` (the encoder, the cast to the
adapter's dtype and the adapter: `ModRWKV.encode_modality` without lengths) once per input shape and dtype, and
replays it for every later batch of that shape: the inputs are copied into a static buffer (asynchronously from
pinned host memory when they come from the CPU) and the output is copied out of the graph's.

Only inputs without per-sample lengths are graphed (variable-length audio and series keep the eager path, whose
shapes change from call to call). At most ``max_graphs`` shapes are kept (the least recently used is dropped), all
in one memory pool. Graphs follow the weights as `PrefillGraphs` does: new parameter or buffer tensors of the
encoder or adapter drop them (`WeightWatch`); in-place updates need nothing. Entering or leaving
``torch.inference_mode`` drops them too (their buffers are inference tensors or not).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from .fast import CapturedGraph, _autocast_key, capture_graph
from .weight_watch import WeightWatch


class EncoderGraphs:
    """Graph-replayed ``encode`` of fixed-shape inputs on CUDA; see the module docstring.

    Args:
        encode: (N, ...) inputs on the device -> (M, C) modality embeddings; recorded as is, so it must not sync
            with the host (no ``.item()``, no boolean indexing).
        modules: the modules whose parameters and buffers ``encode`` reads (the encoder and the adapter).
        device: the CUDA device the modules live on.
        max_graphs: how many input shapes keep a recorded graph.
    """

    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor], modules: tuple[nn.Module, ...],
                 device: torch.device, max_graphs: int = 4):
        device = torch.device(device)
        if device.type != "cuda":
            raise ValueError(f"EncoderGraphs records CUDA graphs: the encoder must be on a CUDA device, not {device}")
        if isinstance(max_graphs, bool) or not isinstance(max_graphs, int) or max_graphs < 1:
            raise ValueError(f"EncoderGraphs: max_graphs must be an integer >= 1, got {max_graphs!r}")
        self.encode, self.modules, self.device, self.max_graphs = encode, modules, device, max_graphs
        self.graphs: OrderedDict[tuple, tuple[torch.Tensor, CapturedGraph]] = OrderedDict()
        self.captures = 0
        self._watch = WeightWatch(*modules)
        self.pool = None

    def key(self, x: torch.Tensor) -> tuple:
        """What a graph is recorded for: the input's shape and dtype and the autocast setting in force."""
        return tuple(x.shape), x.dtype, _autocast_key(self.device)

    def _graph(self, key: tuple) -> tuple[torch.Tensor, CapturedGraph]:
        """The static input buffer and the recorded ``encode`` of inputs of ``key``, recorded on first use."""
        entry = self.graphs.get(key)
        if entry is not None:
            self.graphs.move_to_end(key)
            return entry
        while len(self.graphs) >= self.max_graphs:  # the least recently used shape makes room
            self.graphs.popitem(last=False)
        shape, dtype, _ = key
        static = torch.zeros(shape, dtype=dtype, device=self.device)
        try:
            entry = static, capture_graph(lambda: self.encode(static), pool=self.pool)
        except RuntimeError as err:  # e.g. an encoder that reads a value back to the host
            raise RuntimeError(f"recording the modality encoder + adapter for inputs {shape} in a CUDA graph failed "
                               f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); set "
                               "generation.encoder_graphs=false to run it eagerly") from err
        self.graphs[key] = entry
        self.captures += 1
        return entry

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, ...) inputs (on the CPU or the device) -> (M, C) modality embeddings, a new tensor (later calls do not
        overwrite it), equal to ``encode(x)``."""
        if self._watch.changed():  # new weight tensors, or the other inference mode
            self.graphs.clear()
            self.pool = torch.cuda.graph_pool_handle()
        static, graph = self._graph(self.key(x))
        if x.device.type == "cpu" and static.is_cuda:
            x = x.pin_memory()  # a cached pinned block: the copy below does not wait for the GPU
        static.copy_(x, non_blocking=True)
        return graph.replay().clone()
