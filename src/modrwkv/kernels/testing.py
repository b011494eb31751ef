"""Random WKV-7 inputs in the ranges RWKV-7 produces, and saved-activation accounting: for the tests and the benches
(one definition for all)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .reference import LOG_DECAY_MIN


class WKV7Inputs(NamedTuple):
    """r, w, k, v, a, b as the kernels take them ([B, T, H, K]), plus the parts a and b are made of."""

    r: torch.Tensor
    w: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    kk: torch.Tensor  # unit-norm per head: a = -kk
    a_gate: torch.Tensor  # in (0, 1): b = kk * a_gate

    @property
    def args(self) -> list[torch.Tensor]:
        """[r, w, k, v, a, b], the kernels' positional inputs."""
        return [self.r, self.w, self.k, self.v, self.a, self.b]


def wkv7_inputs(B: int, T: int, H: int, K: int, seed: int | None = None, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu", w_floor: float = 1e-4) -> WKV7Inputs:
    """Realistic RWKV-7 ranges: log decay w in [LOG_DECAY_MIN, -w_floor * |LOG_DECAY_MIN|], a = -kk and
    b = kk * a_gate with kk unit-norm per head and a_gate in (0, 1); r, k, v standard normal. All [B, T, H, K]
    (V = K), drawn in fp32 on ``device`` (from ``seed``, or torch's global generator when None), then cast."""
    g = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    shape = (B, T, H, K)
    r, k, v = (torch.randn(shape, device=device, generator=g) for _ in range(3))
    w = LOG_DECAY_MIN * torch.rand(shape, device=device, generator=g).clamp_min(w_floor)
    kk = torch.nn.functional.normalize(torch.randn(shape, device=device, generator=g), dim=-1)
    a_gate = torch.rand(shape, device=device, generator=g)
    return WKV7Inputs(*(x.to(dtype) for x in (r, w, k, v, -kk, kk * a_gate, kk, a_gate)))


def saved_activation_bytes(fn, skip=()) -> int:
    """Bytes of the distinct storages autograd saves while ``fn`` runs (what a backward keeps alive), the storages
    whose data pointers are in ``skip`` (e.g. the parameters') left out."""
    skip = set(skip)
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in skip:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())
