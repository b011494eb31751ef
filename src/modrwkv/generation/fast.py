"""Fast decoding: the fused RWKV-7 step over static buffers, one CUDA graph per (batch bucket, sampler) replayed.

What one generated token costs at small batch is mostly kernel launches and host round trips, so `FastDecoder`

- runs `FusedDecoder`'s step (stacked projections, state updated in place) over static state buffers;
- on a GPU records that step, with token selection (`sample_tokens`: greedy or inverse-CDF nucleus sampling from a
  uniform drawn on the device), in a CUDA graph per batch bucket (1, 2, 4, ... sequences) and sampler mode, captured
  once and replayed for every later call; temperature and top_p are device tensors, so changing them recaptures
  nothing;
- reads the generated tokens back to the host once every ``check_every`` tokens (the only host sync): sequences that
  emitted the stop token are cut there (what they produced after it is discarded);
- drops finished sequences by moving the live ones into the first rows and switching to the smallest bucket that
  holds them (its graph captured on first use), so only the buckets actually needed are ever captured.

All buckets share one state buffer (a bucket of b sequences uses its first b rows) and one graph memory pool. The
decoder follows the backbone's weights: new tensors (``.to()``, loading) rebuild it, in-place updates (an optimiser
step) only refresh its stacked copies. On the CPU the same loop runs the fused step without graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modrwkv.backbone.fused import GEMV_MAX_BATCH, KERNELS, FusedDecoder
from modrwkv.backbone.state import RWKV7State
from modrwkv.data.chat import TURN_END

from .sampling import GREEDY, draw_uniform, sample_tokens, sampler_mode
from .weight_watch import WeightWatch


@dataclass
class FastOptions:
    """How `ModRWKV` decodes. ``fast``: None = the fast decoder on a GPU, the eager loop on the CPU; True / False
    force one (True on the CPU: the fused step without graphs). ``check_every``: tokens between stop-token checks.
    ``compile``: torch.compile the fused step's elementwise work (slower first call). ``prefill_chunk``: the most
    prompt tokens read in one forward (longer prompts and larger batches are read in pieces: bounded memory).
    ``step``: the fused step's elementwise kernels, "auto" (Triton on a GPU unless ``compile``), "triton" or "torch"
    (`modrwkv.backbone.fused.FusedDecoder`). ``gemv_max_batch``: with the triton step, steps of at most this many
    sequences take the fused GEMV kernels (0: never). ``encoder_graphs``: on the fast path on a GPU, run the encoder +
    adapter of fixed-shape inputs (images) as recorded CUDA graphs (`modrwkv.generation.encoder_graphs`).
    ``prefill_exact``: how many prompt lengths, once read twice, get a one-piece prefill graph of their own
    (`modrwkv.generation.prefill_graphs`; 0: always at most two pieces)."""

    fast: bool | None = None
    check_every: int = 8
    compile: bool = False
    prefill_chunk: int = 16384
    step: str = "auto"
    gemv_max_batch: int = GEMV_MAX_BATCH
    encoder_graphs: bool = True
    prefill_exact: int = 8

    def __post_init__(self):
        if self.fast not in (None, True, False):
            raise ValueError(f"generation.fast must be true, false or null (auto: on a GPU), got {self.fast!r}")
        if isinstance(self.check_every, bool) or not isinstance(self.check_every, int) or self.check_every < 1:
            raise ValueError(f"generation.check_every must be an integer >= 1, got {self.check_every!r}")
        if isinstance(self.prefill_chunk, bool) or not isinstance(self.prefill_chunk, int) or self.prefill_chunk < 1:
            raise ValueError(f"generation.prefill_chunk must be an integer >= 1, got {self.prefill_chunk!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"generation.compile must be true or false, got {self.compile!r}")
        if not isinstance(self.encoder_graphs, bool):
            raise ValueError(f"generation.encoder_graphs must be true or false, got {self.encoder_graphs!r}")
        if isinstance(self.prefill_exact, bool) or not isinstance(self.prefill_exact, int) or self.prefill_exact < 0:
            raise ValueError(f"generation.prefill_exact must be an integer >= 0, got {self.prefill_exact!r}")
        if self.step not in KERNELS:
            raise ValueError(f"generation.step must be one of {KERNELS}, got {self.step!r}")
        if isinstance(self.gemv_max_batch, bool) or not isinstance(self.gemv_max_batch, int) \
                or not 0 <= self.gemv_max_batch <= 16:
            raise ValueError(f"generation.gemv_max_batch must be an integer from 0 to 16, got {self.gemv_max_batch!r}")
        if self.step == "triton" and self.compile:
            raise ValueError("generation.compile=true compiles the torch step: use generation.step=torch or auto")


def bucket_size(n: int) -> int:
    """The smallest power of two >= n: the batch sizes graphs are captured for."""
    return 1 << max(0, (int(n) - 1).bit_length())


class CapturedGraph:
    """A recorded CUDA graph and the output tensor of the recorded call."""

    def __init__(self, graph: torch.cuda.CUDAGraph, output):
        self.graph, self.output = graph, output

    def replay(self):
        self.graph.replay()
        return self.output


@torch.no_grad()
def capture_graph(fn, warmup: int = 2, pool=None) -> CapturedGraph:
    """Run ``fn`` ``warmup`` times on a side stream (Triton compilation, cuBLAS workspaces), then capture one call in
    a CUDA graph (PyTorch's recipe). The warm-up calls run for real: restore any state they advance."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = fn()
    torch.cuda.synchronize()
    return CapturedGraph(graph, out)


def _autocast_key(device: torch.device):
    """The autocast setting in force (part of a graph's key: casts are recorded into it)."""
    if device.type == "cuda" and torch.is_autocast_enabled("cuda"):
        return torch.get_autocast_dtype("cuda")
    return None


class FastDecoder:
    """Batched decoding for one `RWKV7` backbone; see the module docstring. ``graphs``: None = on CUDA.
    ``step``: `FusedDecoder`'s kernels ("auto", "triton", "torch"); ``gemv_max_batch``: its fused-GEMV batch limit."""

    def __init__(self, backbone, check_every: int = 8, graphs: bool | None = None, compile: bool = False,
                 step: str = "auto", gemv_max_batch: int = GEMV_MAX_BATCH):
        if step not in KERNELS:
            raise ValueError(f"FastDecoder: step must be one of {KERNELS}, got {step!r}")
        self.backbone = backbone
        self.check_every = int(check_every)
        self.compile = compile
        self.step = step
        self.gemv_max_batch = gemv_max_batch
        self.device = backbone.emb.weight.device
        self.use_graphs = self.device.type == "cuda" if graphs is None else bool(graphs)
        if self.use_graphs and self.device.type != "cuda":
            raise ValueError("CUDA graphs need the backbone on a CUDA device")
        self._watch, self._versions = WeightWatch(backbone), None
        self.capacity = 0
        self.graphs: dict = {}
        self.captures = 0  # graphs recorded so far (each bucket and mode once)

    # ---- weights and buffers -----------------------------------------------------------------------------------
    def _sync_weights(self) -> None:
        changed = self._watch.changed()
        versions = self._watch.versions()
        if changed:  # new tensors, or the other inference mode (see WeightWatch): everything over them is rebuilt
            self.fused = FusedDecoder(self.backbone, compile=self.compile, kernels=self.step,
                                      gemv_max_batch=self.gemv_max_batch)
            self.device = self.backbone.emb.weight.device
            self.capacity, self.graphs = 0, {}
        elif versions != self._versions:
            self.fused.refresh_()
        self._versions = versions

    def _ensure_capacity(self, b: int) -> None:
        """Static buffers for at least ``b`` sequences (a larger batch than ever before re-records the graphs)."""
        if b <= self.capacity:
            return
        dev = self.device
        self.state = self.backbone.empty_state(b, dev)  # [L, b, ...]; a bucket uses rows [0, its size)
        self.ids = torch.zeros(b, dtype=torch.long, device=dev)
        self.uniform = torch.zeros(b, dtype=torch.float32, device=dev)
        self.hist = torch.zeros(self.check_every, b, dtype=torch.long, device=dev)  # tokens since the last check
        self.temperature = torch.ones((), dtype=torch.float32, device=dev)
        self.top_p = torch.ones((), dtype=torch.float32, device=dev)
        self.graphs = {}
        self.pool = torch.cuda.graph_pool_handle() if self.use_graphs else None
        self.capacity = b

    def _buffers(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.state.att_shift, self.state.wkv, self.state.ffn_shift

    def _view(self, b: int) -> RWKV7State:
        return RWKV7State(*(t[:, :b] for t in self._buffers()))  # per layer, rows [0, b) are contiguous

    # ---- one step ----------------------------------------------------------------------------------------------
    def _step(self, b: int, mode: str) -> torch.Tensor:
        """Advance the first ``b`` rows one token: logits from ids, then the next ids (written back into ids)."""
        logits = self.fused.step_(self.ids[:b], self._view(b))  # (b, V)
        tokens = sample_tokens(logits, mode, self.temperature, self.top_p, self.uniform[:b])  # (b,)
        self.ids[:b].copy_(tokens)
        return tokens

    def _graph(self, b: int, mode: str, live: int) -> CapturedGraph:
        """The graph of bucket ``b`` and ``mode``, recorded on first use; the first ``live`` rows are kept intact."""
        key = (b, mode, _autocast_key(self.device))
        g = self.graphs.get(key)
        if g is None:
            saved = [t[:, :live].clone() for t in self._buffers()], self.ids[:live].clone()
            g = capture_graph(lambda: self._step(b, mode), pool=self.pool)
            for t, s in zip(self._buffers(), saved[0]):
                t[:, :live].copy_(s)
            self.ids[:live].copy_(saved[1])
            self.graphs[key] = g
            self.captures += 1
        return g

    def _compact(self, live: list[int]) -> None:
        """Move the rows ``live`` (in order) to the first rows of every buffer."""
        idx = torch.tensor(live, device=self.device)
        m = len(live)
        for t in self._buffers():
            t[:, :m].copy_(t[:, idx])
        self.ids[:m].copy_(self.ids[idx])

    # ---- the loop ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, logits: torch.Tensor, state, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
               generator: torch.Generator | None = None, stop_token: int = TURN_END) -> list[list[int]]:
        """Continue N sequences from their next-token ``logits`` (N, V) and ``state`` (N sequences, not modified).
        Same contract as `modrwkv.generation.decode`: ids per sequence, ending with ``stop_token`` unless
        ``max_new_tokens`` ran out; greedy output equals the eager loop's token for token."""
        n = logits.shape[0]
        out: list[list[int]] = [[] for _ in range(n)]
        if max_new_tokens <= 0 or n == 0:
            return out
        self._sync_weights()
        mode = sampler_mode(temperature, top_p)
        b = bucket_size(n)
        self._ensure_capacity(b)
        if mode != GREEDY:
            self.temperature.fill_(float(temperature))
            self.top_p.fill_(float(top_p))
        run = self._runner(mode)
        if self.use_graphs and max_new_tokens > 1:
            self._graph(b, mode, live=0)  # before the state is loaded: nothing to keep
        # the first token comes from the prefill's logits
        u = None if mode == GREEDY else draw_uniform(n, self.device, generator, self.uniform[:n])
        self.ids[:n].copy_(sample_tokens(logits, mode, temperature, top_p, u))
        self.ids[n:b].zero_()
        for dst, src in zip(self._buffers(), (state.att_shift, state.wkv, state.ffn_shift)):
            dst[:, :n].copy_(src)
            dst[:, n:b].zero_()  # padding rows decode zeros, independently of the real ones
        rows: list[int | None] = list(range(n))  # the sequence in each row (None: finished)
        self.hist[0, :b].copy_(self.ids[:b])
        filled, produced = 1, 1
        while True:
            while filled < self.check_every and produced < max_new_tokens:
                if mode != GREEDY:
                    draw_uniform(len(rows), self.device, generator, self.uniform[:len(rows)])
                run(b, len(rows))
                self.hist[filled, :b].copy_(self.ids[:b])
                filled, produced = filled + 1, produced + 1
            block = self.hist[:filled, :len(rows)].tolist()  # the one host sync per check_every tokens
            for pos, seq in enumerate(rows):
                if seq is None:
                    continue
                for t in range(filled):
                    out[seq].append(block[t][pos])
                    if block[t][pos] == stop_token:
                        rows[pos] = None
                        break
            live = [pos for pos, seq in enumerate(rows) if seq is not None]
            if not live or produced >= max_new_tokens:
                return out
            if bucket_size(len(live)) < b:  # finished sequences leave: a smaller bucket from now on
                self._compact(live)
                rows, b = [rows[p] for p in live], bucket_size(len(live))
            filled = 0

    def _runner(self, mode: str):
        if not self.use_graphs:
            return lambda b, live: self._step(b, mode)
        return lambda b, live: self._graph(b, mode, live).replay()
