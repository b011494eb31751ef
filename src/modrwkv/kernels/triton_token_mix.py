"""Triton kernels for RWKV-7's token shift and its mixes: ``mixed[m] = x + (shift(x) - x) * mix[m]``.

Rows are the B * T tokens of x (B, T, C) flattened to (R, C). ``shift(x)[r]`` is ``x[r - 1]``, except at the first
token of a sequence, where it is that sequence's carried state ``prev[s]`` (or zero without one). Sequences are the
B rows of the batch, or (B == 1) the packed sequences of ``cu_seqlens``; a row table (`start_table`) says which
sequence starts at each token.

The forward reads each x row once for itself and once (from cache) as the next row's shifted input and writes the M
mixes in one pass. The backward needs only x (the mixes are not kept): with g_m = d mixed[m],

    dx[r]      = sum_m g_m[r] (1 - mix[m])  +  [r + 1 not a sequence start] sum_m g_m[r + 1] mix[m]
    dprev[s]   = sum_m g_m[start of s] mix[m]
    dmix[m]    = sum_r g_m[r] (shift(x)[r] - x[r])     (per-program partial sums, added by the host: deterministic)

Everything is computed in fp32 and stored in the output's dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Tile shapes (rows, channels, warps), chosen from ptxas's register counts for sm_90 (no spills, <= 128 registers);
# not tuned by timing
FWD_BLOCK_R, FWD_BLOCK_C, FWD_WARPS = 16, 128, 4
BWD_BLOCK_R, BWD_BLOCK_C, BWD_WARPS = 16, 64, 8
ROW_TILES = 16  # row tiles per backward program (its dmix partial sums cover BWD_BLOCK_R * ROW_TILES rows)


def start_table(cu_seqlens: torch.Tensor, n_rows: int) -> torch.Tensor:
    """int32 (n_rows + 1,): the index of the sequence starting at each row, -1 where none starts.

    Empty sequences start nowhere (their slot is the spare last entry), so a row shared by an empty sequence and the
    next one belongs to the next one. No host sync.
    """
    starts = cu_seqlens[:-1].long()  # (N,)
    nonempty = cu_seqlens[1:] > cu_seqlens[:-1]
    where = torch.where(nonempty, starts, torch.full_like(starts, n_rows))
    table = torch.full((n_rows + 1,), -1, dtype=torch.int32, device=cu_seqlens.device)
    seq = torch.arange(starts.numel(), dtype=torch.int32, device=cu_seqlens.device)
    return table.scatter_(0, where, seq)


@triton.jit
def _row_start(rows, table_ptr, R, T, VARLEN: tl.constexpr):
    """Index of the sequence starting at each of ``rows`` (-1 where none starts or past the end)."""
    if VARLEN:
        seq = tl.load(table_ptr + rows, mask=rows < R, other=-1)
    else:
        seq = tl.where((rows % T == 0) & (rows < R), rows // T, -1)
    return seq


@triton.jit
def _shift_delta(x_ptr, prev_ptr, rows, cols, seq, mask, C, x, HAS_PREV: tl.constexpr):
    """shift(x) - x on one (BLOCK_R, BLOCK_C) tile, fp32; ``x`` is the tile itself (fp32)."""
    start = (seq >= 0)[:, None]
    offs = rows.to(tl.int64)[:, None] * C + cols[None, :]
    xp = tl.load(x_ptr + offs - C, mask=mask & ~start, other=0.0).to(tl.float32)
    if HAS_PREV:
        p = tl.load(prev_ptr + seq.to(tl.int64)[:, None] * C + cols[None, :], mask=mask & start, other=0.0)
        xp = tl.where(start, p.to(x_ptr.dtype.element_ty).to(tl.float32), xp)  # prev rounded to x's dtype first
    return xp - x


@triton.jit
def token_mix_fwd_kernel(x_ptr, prev_ptr, table_ptr, mix_ptr, out_ptr, R, T, C,
                         M: tl.constexpr, HAS_PREV: tl.constexpr, VARLEN: tl.constexpr,
                         BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """out[m, r, c] = x[r, c] + (shift(x)[r, c] - x[r, c]) * mix[m, c]; out (M, R, C)."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    mask = (rows < R)[:, None] & cmask[None, :]
    offs = rows.to(tl.int64)[:, None] * C + cols[None, :]
    seq = _row_start(rows, table_ptr, R, T, VARLEN)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    xx = _shift_delta(x_ptr, prev_ptr, rows, cols, seq, mask, C, x, HAS_PREV)
    for m in tl.static_range(M):
        mv = tl.load(mix_ptr + m * C + cols, mask=cmask, other=0.0).to(tl.float32)
        y = x + xx * mv[None, :]
        out_offs = (rows.to(tl.int64) + m * R)[:, None] * C + cols[None, :]  # row m * R + r of (M * R, C)
        tl.store(out_ptr + out_offs, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def token_mix_bwd_kernel(dout_ptr, x_ptr, prev_ptr, table_ptr, mix_ptr, dx_ptr, dprev_ptr, dmix_ptr, R, T, C,
                         M: tl.constexpr, M_PAD: tl.constexpr, HAS_PREV: tl.constexpr, VARLEN: tl.constexpr,
                         BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, ROW_TILES: tl.constexpr):
    """dx (R, C), dprev (N, C) (rows of sequence starts), dmix partial sums (programs along rows, M, C) in fp32."""
    pid_r = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    ms = tl.arange(0, M_PAD)
    acc = tl.zeros((M_PAD, BLOCK_C), dtype=tl.float32)  # dmix partial sums of this program's rows
    for it in tl.range(ROW_TILES):
        rows = (pid_r * ROW_TILES + it) * BLOCK_R + tl.arange(0, BLOCK_R)
        rmask = rows < R
        mask = rmask[:, None] & cmask[None, :]
        offs = rows.to(tl.int64)[:, None] * C + cols[None, :]
        seq = _row_start(rows, table_ptr, R, T, VARLEN)
        # the next row's shifted input is this row unless a sequence starts there (or it is past the end)
        feeds_next = (_row_start(rows + 1, table_ptr, R, T, VARLEN) < 0) & (rows + 1 < R)
        nmask = mask & feeds_next[:, None]
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        xx = _shift_delta(x_ptr, prev_ptr, rows, cols, seq, mask, C, x, HAS_PREV)
        dx = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
        dsh = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)  # d shift(x) of these rows
        for m in tl.static_range(M):
            mv = tl.load(mix_ptr + m * C + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
            g_offs = (rows.to(tl.int64) + m * R)[:, None] * C + cols[None, :]  # row m * R + r of (M * R, C)
            g = tl.load(dout_ptr + g_offs, mask=mask, other=0.0).to(tl.float32)
            gn = tl.load(dout_ptr + g_offs + C, mask=nmask, other=0.0).to(tl.float32)
            dx += g * (1.0 - mv) + gn * mv
            dsh += g * mv
            acc = tl.where(ms[:, None] == m, acc + tl.sum(g * xx, axis=0)[None, :], acc)
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        if HAS_PREV:
            start = (seq >= 0)[:, None]
            tl.store(dprev_ptr + seq.to(tl.int64)[:, None] * C + cols[None, :],
                     dsh.to(dprev_ptr.dtype.element_ty), mask=mask & start)
    part = dmix_ptr + pid_r.to(tl.int64) * M * C + ms[:, None] * C + cols[None, :]
    tl.store(part, acc, mask=(ms < M)[:, None] & cmask[None, :])


def _launch_args(x: torch.Tensor, prev: torch.Tensor | None, cu_seqlens: torch.Tensor | None):
    """(R, T, table, prev pointer argument) shared by both launches."""
    B, T, C = x.shape
    R = B * T
    table = start_table(cu_seqlens, R) if cu_seqlens is not None else x.new_empty(1, dtype=torch.int32)
    return R, T, table, (prev.contiguous() if prev is not None else x)


def token_mix_forward(x: torch.Tensor, prev: torch.Tensor | None, cu_seqlens: torch.Tensor | None,
                      mix: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """x (B, T, C), prev (N, C) or None, cu_seqlens (N+1,) or None, mix (M, C) -> mixed (M, B, T, C)."""
    x = x.contiguous()
    M, C = mix.shape
    R, T, table, prev_arg = _launch_args(x, prev, cu_seqlens)
    out = torch.empty((M, *x.shape), dtype=out_dtype, device=x.device)
    if R == 0:
        return out
    grid = (triton.cdiv(R, FWD_BLOCK_R), triton.cdiv(C, FWD_BLOCK_C))
    token_mix_fwd_kernel[grid](x, prev_arg, table, mix.contiguous(), out, R, T, C, M=M, HAS_PREV=prev is not None,
                               VARLEN=cu_seqlens is not None, BLOCK_R=FWD_BLOCK_R, BLOCK_C=FWD_BLOCK_C,
                               num_warps=FWD_WARPS)
    return out


def token_mix_backward(dout: torch.Tensor, x: torch.Tensor, prev: torch.Tensor | None,
                       cu_seqlens: torch.Tensor | None, mix: torch.Tensor):
    """d mixed (M, B, T, C) -> (dx like x, dprev like prev or (0, C), dmix like mix)."""
    x, dout = x.contiguous(), dout.contiguous()
    M, C = mix.shape
    R, T, table, prev_arg = _launch_args(x, prev, cu_seqlens)
    dx = torch.empty_like(x)
    # contiguous like the fake (register_fake) outputs; empty sequences get no gradient
    dprev = prev.new_zeros(prev.shape) if prev is not None else x.new_empty(0, C)
    n_prog = triton.cdiv(R, BWD_BLOCK_R * ROW_TILES)
    parts = torch.empty(n_prog, M, C, dtype=torch.float32, device=x.device)
    if R > 0:
        grid = (n_prog, triton.cdiv(C, BWD_BLOCK_C))
        token_mix_bwd_kernel[grid](dout, x, prev_arg, table, mix.contiguous(), dx, dprev if prev is not None else x,
                                   parts, R, T, C, M=M, M_PAD=triton.next_power_of_2(M), HAS_PREV=prev is not None,
                                   VARLEN=cu_seqlens is not None, BLOCK_R=BWD_BLOCK_R, BLOCK_C=BWD_BLOCK_C,
                                   ROW_TILES=ROW_TILES, num_warps=BWD_WARPS)
    return dx, dprev, parts.sum(0).to(mix.dtype)
