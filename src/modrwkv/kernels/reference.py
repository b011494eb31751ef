"""WKV-7 reference: the naive recurrence, one token at a time.

Layout (as fla): r, w, k, v, a, b are [B, T, H, K]; w is the log decay; the state is [N, H, K, V] in fp32.
Per (sequence, head), with S_0 = 0 or the given initial state:

    S_t = diag(exp(w_t)) S_{t-1} + b_t (a_t^T S_{t-1}) + k_t v_t^T        # S is [K, V]
    o_t = S_t^T r_t                                                        # scale 1

This is the definition every other backend is tested against. It is slow (a Python loop over T) but exact,
differentiable and dtype-preserving: fp64 inputs are computed in fp64, everything else in fp32.
"""

from __future__ import annotations

import math

import torch

# The lowest per-token log decay RWKV-7 produces: its layers compute w = LOG_DECAY_MIN * sigmoid(.), so w lies in
# (LOG_DECAY_MIN, 0). The kernels' numerics rely on this bound (docs/RWKV7.md, "WKV-7 kernels").
LOG_DECAY_MIN = -math.exp(-0.5)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 stays fp64 (for gradcheck); every other dtype is computed in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def wkv7_step_torch(
    r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One recurrence step. Inputs [N, H, K] (any float dtype), state [N, H, K, V]; returns (o [N, H, V], new state)."""
    dt = compute_dtype(r.dtype)
    r, w, k, v, a, b = (x.to(dt) for x in (r, w, k, v, a, b))
    state = state.to(dt)
    sa = torch.einsum("nhk,nhkv->nhv", a, state)  # (N, H, V): a^T S_{t-1}
    state = torch.exp(w)[..., None] * state + b[..., None] * sa[..., None, :] + k[..., None] * v[..., None, :]
    o = torch.einsum("nhk,nhkv->nhv", r, state)  # (N, H, V)
    return o, state


def _naive_dense(r, w, k, v, a, b, state):
    """Dense batch: inputs [B, T, H, K] in the compute dtype, state [B, H, K, V]. Returns (o [B, T, H, V], state)."""
    outs = []
    for t in range(r.shape[1]):
        o, state = wkv7_step_torch(r[:, t], w[:, t], k[:, t], v[:, t], a[:, t], b[:, t], state)
        outs.append(o)
    o = torch.stack(outs, dim=1) if outs else r.new_zeros(r.shape[0], 0, r.shape[2], v.shape[-1])
    return o, state


def wkv7_naive(
    r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reference WKV-7 over whole sequences (see the module docstring for the math and layout).

    With ``cu_seqlens`` ([N+1], B must be 1) the row holds N packed sequences, each starting from its own
    initial state (or zero). Returns ``(o [B, T, H, V] in r.dtype, final_state [N, H, K, V] fp32 or None)``.
    """
    dt = compute_dtype(r.dtype)
    B, T, H, K = r.shape
    V = v.shape[-1]
    xs = [x.to(dt) for x in (r, w, k, v, a, b)]
    if cu_seqlens is None:
        s0 = r.new_zeros(B, H, K, V, dtype=dt) if initial_state is None else initial_state.to(dt)
        o, s = _naive_dense(*xs, s0)
        finals = s
    else:
        bounds = cu_seqlens.tolist()
        outs, states = [], []
        for i in range(len(bounds) - 1):
            lo, hi = bounds[i], bounds[i + 1]
            s0 = r.new_zeros(1, H, K, V, dtype=dt) if initial_state is None else initial_state[i : i + 1].to(dt)
            o_i, s_i = _naive_dense(*(x[:, lo:hi] for x in xs), s0)
            outs.append(o_i)
            states.append(s_i)
        o = torch.cat(outs, dim=1)
        finals = torch.cat(states, dim=0)
    final_state = None
    if output_final_state:
        final_state = finals if dt == torch.float64 else finals.float()
    return o.to(r.dtype), final_state
