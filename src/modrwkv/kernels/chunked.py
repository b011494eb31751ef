"""WKV-7 in chunked form, in PyTorch: the CPU training backend.

The recurrence (reference.py) is a generalised delta rule with a diagonal-plus-low-rank transition. Inside a chunk
of C tokens, with g_t = sum_{s<=t} w_s the cumulative log decay, the state is

    S_t = diag(e^{g_t}) [ S_0 + sum_{s<=t} (b_s e^{-g_s}) u_s^T + (k_s e^{-g_s}) v_s^T ],   u_t = S_{t-1}^T a_t

so the C vectors u solve one unit lower-triangular system (the WY form of fla):

    (I - A_ab) U = (a e^{g_{t-1}}) S_0 + A_ak V,     A_xy[t, s] = sum_k x_t e^{g_{t-1}} y_s e^{-g_s},  s < t

and the outputs and the next chunk's state are matrix products. Everything that does not depend on S_0 is
computed for all chunks at once; only a short loop of [K, K] x [K, V] products runs over the chunks.
Autograd differentiates it (values and gradients are tested against the naive recurrence).

Numerics: intra-chunk factors e^{+-g} are taken relative to the chunk's middle, so a chunk of 16 tokens stays
far inside fp32 range for log decays down to about -10 per token (RWKV-7 produces (reference.LOG_DECAY_MIN, 0)).
"""

from __future__ import annotations

import torch

from .reference import compute_dtype

CHUNK = 16


def _pack_varlen(xs, cu_seqlens: torch.Tensor, chunk: int):
    """[1, T, H, K] packed rows -> [N, T_pad, H, K] padded batch (zeros at the end), plus the validity mask.

    Zero padding at the end of a sequence is exact: with w = 0 (decay 1) and a = b = k = v = 0 the state is unchanged.
    One gather per tensor (no Python loop over sequences): index T points at an appended zero row.
    """
    starts = cu_seqlens[:-1].long()
    lengths = cu_seqlens[1:].long() - starts  # (N,)
    T = xs[0].shape[1]
    t_pad = max(1, -(-int(lengths.max()) // chunk)) * chunk
    pos = torch.arange(t_pad, device=starts.device)
    valid = pos[None, :] < lengths[:, None]  # (N, T_pad)
    index = torch.where(valid, starts[:, None] + pos[None, :], torch.full_like(valid, T, dtype=torch.long))
    out = []
    for x in xs:
        rows = torch.cat([x[0], x.new_zeros(1, *x.shape[2:])], dim=0)  # (T + 1, H, K)
        out.append(rows[index])  # (N, T_pad, H, K)
    return out, valid


def _unpack_varlen(o: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[N, T_pad, H, V] -> [1, T, H, V]: the valid positions, sequence after sequence."""
    return o[valid].unsqueeze(0)


def _chunked_dense(r, w, k, v, a, b, s0, chunk: int):
    """Dense batch; inputs [B, T, H, K] with T % chunk == 0 in the compute dtype; s0 [B, H, K, V]."""
    B, T, H, K = r.shape
    V = v.shape[-1]
    nc = T // chunk

    def split(x):  # (B, T, H, D) -> (B, H, NC, C, D)
        return x.view(B, nc, chunk, H, x.shape[-1]).permute(0, 3, 1, 2, 4)

    r, w, k, v, a, b = (split(x) for x in (r, w, k, v, a, b))
    g = torch.cumsum(w, dim=-2)  # (B, H, NC, C, K) inclusive cumulative log decay g_t
    g_prev = g - w  # g_{t-1}
    g_last = g[..., -1:, :]  # (B, H, NC, 1, K) decay over the whole chunk
    g_mid = g[..., chunk // 2 - 1 : chunk // 2, :]  # reference point keeps e^{+-g} small

    # intra-chunk interaction matrices (B, H, NC, C, C); the reference point cancels in each product
    a_in = a * torch.exp(g_prev - g_mid)
    r_in = r * torch.exp(g - g_mid)
    b_in = b * torch.exp(g_mid - g)
    k_in = k * torch.exp(g_mid - g)
    strict = torch.ones(chunk, chunk, dtype=torch.bool, device=r.device).tril(-1)
    incl = torch.ones(chunk, chunk, dtype=torch.bool, device=r.device).tril(0)
    A_ab = (a_in @ b_in.transpose(-1, -2)).masked_fill(~strict, 0)
    A_ak = (a_in @ k_in.transpose(-1, -2)).masked_fill(~strict, 0)
    A_rb = (r_in @ b_in.transpose(-1, -2)).masked_fill(~incl, 0)
    A_rk = (r_in @ k_in.transpose(-1, -2)).masked_fill(~incl, 0)

    # state-facing factors, all bounded by 1 in magnitude
    a_s = a * torch.exp(g_prev)  # reads S_0
    r_s = r * torch.exp(g)
    b_e = b * torch.exp(g_last - g)  # writes the chunk's end state
    k_e = k * torch.exp(g_last - g)

    # U = W1 S_0 + U0 with (I - A_ab) [W1 | U0] = [a_s | A_ak V]
    eye = torch.eye(chunk, dtype=r.dtype, device=r.device)
    rhs = torch.cat([a_s, A_ak @ v], dim=-1)  # (B, H, NC, C, K + V)
    sol = torch.linalg.solve_triangular(eye - A_ab, rhs, upper=False, unitriangular=True)
    W1, U0 = sol[..., :K], sol[..., K:]

    # outputs O = (r_s + A_rb W1) S_0 + (A_rb U0 + A_rk V); end state S_C = P S_0 + Q
    R_s = r_s + A_rb @ W1  # (B, H, NC, C, K)
    O0 = A_rb @ U0 + A_rk @ v  # (B, H, NC, C, V)
    P = torch.diag_embed(torch.exp(g_last.squeeze(-2))) + b_e.transpose(-1, -2) @ W1  # (B, H, NC, K, K)
    Q = b_e.transpose(-1, -2) @ U0 + k_e.transpose(-1, -2) @ v  # (B, H, NC, K, V)

    starts = []
    state = s0
    for c in range(nc):
        starts.append(state)
        state = P[:, :, c] @ state + Q[:, :, c]
    S = torch.stack(starts, dim=2)  # (B, H, NC, K, V) state at each chunk's start
    o = R_s @ S + O0  # (B, H, NC, C, V)
    o = o.permute(0, 2, 3, 1, 4).reshape(B, T, H, V)
    return o, state


def wkv7_chunked(
    r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    chunk_size: int = CHUNK,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked WKV-7 with the same contract as ``reference.wkv7_naive`` (values equal up to rounding)."""
    dt = compute_dtype(r.dtype)
    B, T, H, K = r.shape
    V = v.shape[-1]
    xs = [x.to(dt) for x in (r, w, k, v, a, b)]
    if cu_seqlens is not None:
        xs, valid = _pack_varlen(xs, cu_seqlens, chunk_size)
        n = valid.shape[0]
    else:
        n = B
        pad = (-T) % chunk_size
        if pad or T == 0:
            pad = pad or chunk_size
            xs = [torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad)) for x in xs]
    s0 = r.new_zeros(n, H, K, V, dtype=dt) if initial_state is None else initial_state.to(dt)
    o, state = _chunked_dense(*xs, s0, chunk_size)
    o = _unpack_varlen(o, valid) if cu_seqlens is not None else o[:, :T]
    final_state = None
    if output_final_state:
        final_state = state if dt == torch.float64 else state.float()
    return o.to(r.dtype), final_state
