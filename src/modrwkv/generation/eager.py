"""The eager recurrent decode loop (CPU, or ``fast=False``): one `RWKV7.step` per token, constant memory.

The loop runs N sequences at once through `backbone.step`, drops each sequence from the state as soon as it emits
the stop token, and never re-reads the prompt: the whole past lives in the RWKV-7 state.
"""

from __future__ import annotations

import torch

from modrwkv.data.chat import TURN_END

from .sampling import select_next


@torch.no_grad()
def decode(backbone, logits: torch.Tensor, state, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
           generator: torch.Generator | None = None, stop_token: int = TURN_END) -> list[list[int]]:
    """Continue N sequences from their next-token `logits` (N, V) and RWKV-7 `state` (N sequences).

    Returns the generated ids per sequence, each ending with `stop_token` unless `max_new_tokens` ran out.
    """
    n = logits.shape[0]
    out: list[list[int]] = [[] for _ in range(n)]
    active = list(range(n))  # original index of each row still decoding
    for _ in range(max_new_tokens):
        tokens = select_next(logits, temperature, top_p, generator)  # (n_active,)
        keep = []
        for row, tok in enumerate(tokens.tolist()):
            out[active[row]].append(tok)
            if tok != stop_token:
                keep.append(row)
        if not keep or len(out[active[keep[0]]]) >= max_new_tokens:
            break
        if len(keep) < len(active):  # finished sequences leave the state: later steps cost only the active ones
            idx = torch.tensor(keep, device=tokens.device)
            state, tokens = state.select(idx), tokens[idx]
            active = [active[r] for r in keep]
        logits, state = backbone.step(input_ids=tokens, state=state)
    return out
