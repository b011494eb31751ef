"""Token selection: greedy argmax, or nucleus sampling by inverse CDF from one uniform number per sequence.

Sampling takes its randomness as an explicit tensor of uniforms, so the same function serves the eager loop and the
CUDA-graph decoder (inside a captured graph: no host sync, no generator state) and both draw the same tokens from
the same random numbers.
"""

from __future__ import annotations

import torch

# the sampler modes: one CUDA graph is captured per (batch bucket, mode); temperature and top_p are tensors in it
GREEDY, SAMPLE, NUCLEUS = "greedy", "sample", "nucleus"


def sampler_mode(temperature: float, top_p: float) -> str:
    """Which kind of selection ``temperature`` and ``top_p`` ask for."""
    if temperature <= 0:
        return GREEDY
    return NUCLEUS if top_p < 1.0 else SAMPLE


def sample_tokens(logits: torch.Tensor, mode: str, temperature, top_p, uniform: torch.Tensor | None) -> torch.Tensor:
    """(N, V) logits -> (N,) token ids. ``temperature`` / ``top_p``: floats or 0-dim tensors; ``uniform``: (N,) in
    [0, 1) (unused when greedy). Nucleus: the smallest set of most likely tokens whose mass reaches ``top_p`` (the
    most likely token always stays), renormalised."""
    if mode == GREEDY:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (N, V)
    order = None
    if mode == NUCLEUS:
        probs, order = probs.sort(dim=-1, descending=True)
        probs = probs * ((probs.cumsum(-1) - probs) < top_p)  # mass before each token below top_p: keep it
    cdf = probs.cumsum(-1)  # (N, V)
    target = uniform.view(-1, 1).to(cdf.dtype) * cdf[:, -1:]  # (N, 1)
    # the first index whose cdf exceeds the target: never a zero-probability token
    idx = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[-1] - 1)  # (N, 1)
    if order is not None:
        idx = order.gather(-1, idx)
    return idx.squeeze(-1)


def draw_uniform(n: int, device, generator: torch.Generator | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """(n,) uniforms in [0, 1) from ``generator`` (None: the global RNG of ``device``), on the device: no host sync.
    With ``out`` (a (n,) float32 view) the numbers are written there."""
    if out is None:
        out = torch.empty(n, dtype=torch.float32, device=device)
    return out.uniform_(0.0, 1.0, generator=generator)


def select_next(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, V) logits -> (N,) token ids: argmax when temperature == 0, else nucleus sampling at ``top_p``."""
    mode = sampler_mode(temperature, top_p)
    uniform = None if mode == GREEDY else draw_uniform(logits.shape[0], logits.device, generator)
    return sample_tokens(logits, mode, temperature, top_p, uniform)


def make_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """A torch.Generator on ``device`` seeded with ``seed`` (None: use the global RNG)."""
    if seed is None:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen
