"""Token selection and the recurrent decode loop (constant memory per generated token).

The loop runs N sequences at once through `backbone.step`, drops each sequence from the state as soon as it emits
the stop token, and never re-reads the prompt: the whole past lives in the RWKV-7 state.
"""

from __future__ import annotations

import torch

from modrwkv.data.chat import TURN_END


def select_next(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, V) logits -> (N,) token ids: argmax when temperature == 0, else nucleus sampling at `top_p`."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (N, V)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = sorted_p.cumsum(-1) - sorted_p >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def make_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """A torch.Generator on `device` seeded with `seed` (None: use the global RNG)."""
    if seed is None:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


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
