"""Prefill of one prompt through CUDA graphs: a recorded forward per piece length, at most two pieces a prompt.

Reading a short prompt (an image's tokens and a question: a few hundred tokens) is bound by launching the forward's
~70 kernels per layer, not by its arithmetic: each replayed kernel still costs microseconds, so what counts is the
number of forwards a prompt takes. `PrefillGraphs` reads the part of a prompt shorter than ``GRAPH_MAX`` tokens as at
most two recorded `RWKV7.forward_hidden` calls, a piece of a multiple of ``PIECE`` tokens and the remainder
(630 = 576 + 54), carrying the recurrent state from the first to the second. The recurrence makes this the same
function as one forward over the whole prompt (the boundary only changes rounding). A graph is recorded on the first
prompt that needs its length and serves every later one. Each piece reads all the weights and launches all the
forward's kernels again, so a prompt length that comes back is worth a graph of its own: the first ``exact`` lengths
read a second time get a one-piece graph, kept from then on (no eviction, so no re-recording however many lengths
follow). So at most GRAPH_MAX / PIECE + PIECE - 2 + ``exact`` graphs ever exist, sharing one memory pool that holds
the activations of the longest piece. Whole multiples of ``GRAPH_MAX`` tokens in front are compute-bound: they run
as plain forwards of at most ``eager_chunk`` tokens.

Graphs follow the weights as the fast decoder's do: new parameter tensors drop them (they are recorded again on
use; `WeightWatch` checks that cheaply on every call), as does entering or leaving ``torch.inference_mode``;
in-place updates need nothing, the graphs read the parameters where they are. Each recorded piece writes its new
state into the static state buffer itself, so consecutive pieces chain with no copies between the replays.
"""

from __future__ import annotations

import torch

from modrwkv.backbone.state import RWKV7State

from .fast import CapturedGraph, capture_graph
from .weight_watch import WeightWatch

GRAPH_MAX = 2048  # prompt parts of this many tokens and more run as plain forwards (not launch-bound)
PIECE = 64  # the first piece is a multiple of this many tokens, the second shorter


def piece_lengths(total: int) -> list[int]:
    """How a prompt part of ``total`` tokens is read: [multiple of PIECE, remainder], without empty pieces."""
    if total < 0:
        raise ValueError(f"piece_lengths: total must be >= 0, got {total}")
    return [n for n in (total - total % PIECE, total % PIECE) if n]


class PrefillGraphs:
    """Graph-replayed prefill of one sequence for an `RWKV7` backbone on CUDA; see the module docstring.
    ``exact``: how many prompt lengths, once seen twice, get a one-piece graph of their own (0: always pieces)."""

    def __init__(self, backbone, eager_chunk: int = 16384, exact: int = 0):
        if isinstance(exact, bool) or not isinstance(exact, int) or exact < 0:
            raise ValueError(f"PrefillGraphs: exact must be an integer >= 0, got {exact!r}")
        self.backbone = backbone
        self.eager_chunk = int(eager_chunk)
        self.exact = exact
        self.exact_lengths: set[int] = set()  # two-piece lengths read in one piece since their second sight
        self._seen: set[int] = set()  # two-piece lengths read so far (fewer than GRAPH_MAX values)
        self.graphs: dict[tuple, CapturedGraph] = {}
        self.captures = 0
        self._watch = WeightWatch(backbone)
        self._state: RWKV7State | None = None
        self._inputs: dict[int, torch.Tensor] = {}

    def _sync_weights(self) -> None:
        if self._watch.changed():  # new weight tensors, or the other inference mode: everything is recorded again
            self.graphs, self._inputs, self._state = {}, {}, None
            self.pool = torch.cuda.graph_pool_handle()

    def lengths(self, total: int) -> list[int]:
        """The pieces a graphed prompt part of ``total`` tokens is read in now (`piece_lengths`, or one piece for a
        length that came back); records that ``total`` was seen."""
        pieces = piece_lengths(total)
        if len(pieces) < 2 or total in self.exact_lengths:
            return pieces if len(pieces) < 2 else [total]
        if total in self._seen and len(self.exact_lengths) < self.exact:
            self.exact_lengths.add(total)
            return [total]
        self._seen.add(total)
        return pieces

    def _graph(self, n: int, dtype: torch.dtype) -> CapturedGraph:
        """The recorded forward of an n-token piece: reads ``_inputs[n]`` and ``_state``, writes the new state into
        ``_state`` and returns the last hidden (1, C)."""
        key = (n, dtype)
        g = self.graphs.get(key)
        if g is None:
            bb = self.backbone
            if self._state is None:
                self._state = bb.empty_state(1, bb.emb.weight.device)
            x = self._inputs.setdefault(n, torch.zeros(1, n, bb.config.n_embd, device=bb.emb.weight.device,
                                                       dtype=dtype))
            saved = self._state.clone()

            def piece():
                hidden, state = bb.forward_hidden(x, state=self._state, return_state=True)
                self._state.copy_(state)  # the new state is computed in full before it overwrites the old
                return hidden[:, -1]

            g = capture_graph(piece, pool=self.pool)
            self._state.copy_(saved)  # the warm-up calls ran for real
            self.graphs[key] = g
            self.captures += 1
        return g

    @torch.no_grad()
    def __call__(self, emb: torch.Tensor, state: RWKV7State | None = None) -> tuple[torch.Tensor, RWKV7State]:
        """emb (1, T, C) (the prompt's embeddings, before ln0), ``state`` of one sequence or None (zeros) ->
        (hidden after ln_out of the last token (1, C), state after the prompt). ``state`` is not modified."""
        if emb.dim() != 3 or emb.shape[0] != 1 or emb.shape[1] == 0:
            raise ValueError(f"PrefillGraphs reads one non-empty prompt (1, T, C); got {tuple(emb.shape)}")
        self._sync_weights()
        T = emb.shape[1]
        n_eager = T // GRAPH_MAX * GRAPH_MAX
        lengths = self.lengths(T - n_eager)
        for n in lengths:
            self._graph(n, emb.dtype)
        last = None
        for t0 in range(0, n_eager, self.eager_chunk):  # compute-bound: plain forwards
            hidden, state = self.backbone.forward_hidden(emb[:, t0:min(n_eager, t0 + self.eager_chunk)], state=state,
                                                         return_state=True)
            last = hidden[:, -1]
        if not lengths:
            return last, state
        if state is None:
            self._state.zero_()
        else:
            self._state.copy_(state)
        t0 = n_eager
        for n in lengths:
            g = self.graphs[(n, emb.dtype)]
            self._inputs[n].copy_(emb[:, t0:t0 + n])
            last = g.replay()  # (1, C); the state after the piece is now in self._state
            t0 += n
        return last.clone(), self._state.clone()
