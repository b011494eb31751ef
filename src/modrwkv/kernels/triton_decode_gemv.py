"""The RWKV-7 decode step at batch 1-4 as five kernels per layer: each product fused with the work around it.

At batch 1 a decode step is bound by reading every weight once, and the launches between the products cost as much
as the products. `FusedDecoder` (backbone/fused.py) runs, for M <= ``gemv_max_batch`` sequences of width C:

    1. `mix_proj_`      ln1 + the six token-shift mixes, each tile computed where the product reads it, times
                        W_in = [W_r; W_k; W_v; v1^T; w1^T; a1^T; g1^T] (LoRA rows padded to one rank D; the padding
                        rows are skipped), tanh / sigmoid on the decay / gate LoRA rows       -> h (M, 3C + 4D)
    2. `lora_wkv_`      per (sequence, head): the four LoRA up-projections of the head's channels, then the WKV-7
                        step of triton_decode_layer (state in place, GroupNorm, bonus, gate)   -> y (M, C)
    3. `proj_residual_` x2 = x + y @ W_out^T
    4. `mix_proj_`      ln2 + the channel-mix shift, times W_key, relu^2                       -> k (M, F)
    5. `proj_residual_` x3 = x2 + k @ W_value^T (the next layer's input)

Every product kernel streams its rows of W once, ``BLOCK_N`` rows per program (bench/gemv.py sweeps them): a tile
product padded to 16 rows for M > 1 ("dot"), register accumulation for M = 1 ("fma"). A mix kernel's programs all
need the whole LayerNorm'd row, so each computes its statistics (reading x, a few KB, from L2); program 0 also
writes the normalised row to a scratch buffer, and the next kernel copies it into the shift state (writing the
state in place from the mix kernel would race with the programs still reading the old shift). Values are rounded
to the activation dtype where the eager `RWKV7.step` rounds, as in triton_decode_layer.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_decode_layer import _INTERPRET, GN_EPS, LN_EPS, NORM_EPS, _cast, _rnd, _wkv_head

ACT_NONE, ACT_TANH, ACT_SIGMOID, ACT_RELU_SQUARE = 0, 1, 2, 3
MAX_ROWS = 16  # the "dot" products pad the batch to this many rows

# tiles: BLOCK_N rows of W per program, BLOCK_K columns per step. The W_out / W_value products have only C rows,
# so they take fewer rows and longer steps per program: enough bytes in flight from fewer programs.
MIX_BLOCK_N, MIX_BLOCK_K, MIX_WARPS, MIX_STAGES = 32, 256, 4, 3
PROJ_BLOCK_N, PROJ_BLOCK_K, PROJ_WARPS, PROJ_STAGES = 16, 1024, 8, 2


@triton.jit
def _acc_init(BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # one return statement: Triton checks every return's type, also in branches a constexpr rules out
    if BLOCK_M == 1:
        acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    else:
        acc = tl.zeros([BLOCK_N, BLOCK_M], dtype=tl.float32)
    return acc


@triton.jit
def _acc_tile(acc, wt, xt, BLOCK_M: tl.constexpr, IEEE: tl.constexpr):
    """acc += wt [BN, BK] . xt [BM, BK]^T: registers for BM = 1, a tile product otherwise."""
    if BLOCK_M == 1:
        acc = acc + wt.to(tl.float32) * xt.to(tl.float32)
    elif _INTERPRET:  # the CPU interpreter's tl.dot mishandles bf16 operands: the same products in fp32
        acc = tl.dot(wt.to(tl.float32), tl.trans(xt.to(wt.dtype).to(tl.float32)), acc, input_precision="ieee")
    elif IEEE:
        acc = tl.dot(wt, tl.trans(xt.to(wt.dtype)), acc, input_precision="ieee")
    else:
        acc = tl.dot(wt, tl.trans(xt.to(wt.dtype)), acc)
    return acc


@triton.jit
def _acc_done(acc, BLOCK_M: tl.constexpr):
    """The accumulator as [BM, BN]."""
    if BLOCK_M == 1:
        out = tl.sum(acc, axis=1)[None, :]
    else:
        out = tl.trans(acc)
    return out


@triton.jit
def _row_stats(x, stride, M, C, eps, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """LayerNorm mean and 1/std [BM] of the rows of x [M, C] (two passes over column tiles)."""
    rm = tl.arange(0, BLOCK_M)
    rk = tl.arange(0, BLOCK_K)
    total = tl.zeros([BLOCK_M], dtype=tl.float32)
    for k0 in range(0, C, BLOCK_K):
        m = (rm[:, None] < M) & (k0 + rk[None, :] < C)
        total += tl.sum(tl.load(x + rm[:, None] * stride + k0 + rk[None, :], mask=m, other=0.0).to(tl.float32), 1)
    mean = total / C
    sq = tl.zeros([BLOCK_M], dtype=tl.float32)
    for k0 in range(0, C, BLOCK_K):
        m = (rm[:, None] < M) & (k0 + rk[None, :] < C)
        t = tl.load(x + rm[:, None] * stride + k0 + rk[None, :], mask=m, other=0.0).to(tl.float32)
        d = tl.where(m, t - mean[:, None], 0.0)
        sq += tl.sum(d * d, 1)
    return mean, 1.0 / tl.sqrt(sq / C + eps)


@triton.jit
def _mix_proj_kernel(x, shift, ln_w, ln_b, mix, w, table, out, xa_out, M, C, stride_out, eps,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
    """x, shift [M, C]; mix [J, C]; w [R, C]; table [programs, 4] int32: (first row, rows, mix index, activation)
    of each program's at most BLOCK_N rows; out [M, stride_out] gets act(mixed_j @ w[rows]^T); program 0 writes
    ln(x) to xa_out [M, C]."""
    pid = tl.program_id(0)
    row0 = tl.load(table + pid * 4)
    n_rows = tl.load(table + pid * 4 + 1)
    j = tl.load(table + pid * 4 + 2)
    act = tl.load(table + pid * 4 + 3)
    mean, rstd = _row_stats(x, C, M, C, eps, BLOCK_M, BLOCK_K)
    rm = tl.arange(0, BLOCK_M)
    rk = tl.arange(0, BLOCK_K)
    rn = row0 + tl.arange(0, BLOCK_N)
    nm = tl.arange(0, BLOCK_N) < n_rows
    acc = _acc_init(BLOCK_M, BLOCK_N, BLOCK_K)
    w_ptrs = w + rn[:, None].to(tl.int64) * C + rk[None, :]
    for k0 in range(0, C, BLOCK_K):
        kk = k0 + rk
        km = kk < C
        m = (rm[:, None] < M) & km[None, :]
        xv = tl.load(x + rm[:, None] * C + kk[None, :], mask=m, other=0.0).to(tl.float32)
        lw = tl.load(ln_w + kk, mask=km, other=0.0).to(tl.float32)
        lb = tl.load(ln_b + kk, mask=km, other=0.0).to(tl.float32)
        xa = _rnd((xv - mean[:, None]) * rstd[:, None] * lw[None, :] + lb[None, :], out)
        sh = _rnd(tl.load(shift + rm[:, None] * C + kk[None, :], mask=m, other=0.0).to(tl.float32), out)
        mu = tl.load(mix + j * C + kk, mask=km, other=0.0).to(tl.float32)
        mixed = _rnd(xa + _rnd(_rnd(sh - xa, out) * mu[None, :], out), out)  # the eager x + (shift - x) * mu
        if pid == 0:
            tl.store(xa_out + rm[:, None] * C + kk[None, :], _cast(xa, xa_out), mask=m)
        wt = tl.load(w_ptrs, mask=nm[:, None] & km[None, :], other=0.0, eviction_policy="evict_first")
        acc = _acc_tile(acc, wt, tl.where(m, mixed, 0.0), BLOCK_M, IEEE)
        w_ptrs += BLOCK_K
    y = _rnd(_acc_done(acc, BLOCK_M), out)  # [BM, BN], the product in the activation dtype
    if act == 1:
        y = _rnd(2.0 * tl.sigmoid(2.0 * y) - 1.0, out)  # tanh
    elif act == 2:
        y = _rnd(tl.sigmoid(y), out)
    elif act == 3:
        y = tl.maximum(y, 0.0)
        y = y * y
    tl.store(out + rm[:, None] * stride_out + rn[None, :], _cast(y, out), mask=(rm[:, None] < M) & nm[None, :])


@triton.jit
def _proj_residual_kernel(xin, w, resid, out, copy_src, copy_dst, M, N, K,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                          IEEE: tl.constexpr, HAS_COPY: tl.constexpr):
    """out [M, N] = resid + xin [M, K] @ w[N, K]^T (the product rounded first, as the eager step adds a rounded
    product); with HAS_COPY, copy_dst[:, rows] <- copy_src[:, rows] (both [M, N])."""
    rm = tl.arange(0, BLOCK_M)
    rk = tl.arange(0, BLOCK_K)
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    nm = rn < N
    acc = _acc_init(BLOCK_M, BLOCK_N, BLOCK_K)
    w_ptrs = w + rn[:, None].to(tl.int64) * K + rk[None, :]
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        xt = tl.load(xin + rm[:, None] * K + kk[None, :], mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)
        wt = tl.load(w_ptrs, mask=nm[:, None] & (kk[None, :] < K), other=0.0, eviction_policy="evict_first")
        acc = _acc_tile(acc, wt, xt, BLOCK_M, IEEE)
        w_ptrs += BLOCK_K
    om = (rm[:, None] < M) & nm[None, :]
    offs = rm[:, None] * N + rn[None, :]
    r = tl.load(resid + offs, mask=om, other=0.0).to(tl.float32)
    tl.store(out + offs, _cast(r + _rnd(_acc_done(acc, BLOCK_M), out), out), mask=om)
    if HAS_COPY:
        tl.store(copy_dst + offs, tl.load(copy_src + offs, mask=om).to(copy_dst.dtype.element_ty), mask=om)


@triton.jit
def _lora_wkv_kernel(h, lora2, d_v, d_w, d_a, d_g, w0, a0, v0, k_k, k_a, r_k, lnx_w, lnx_b, v_first, state, y,
                     xa, shift, stride_h, C, D, H: tl.constexpr, K: tl.constexpr, BLOCK_D: tl.constexpr,
                     FIRST: tl.constexpr, DECAY_SCALE: tl.constexpr, gn_eps, norm_eps):
    """One program per (sequence n, head); h [M, 3C + 4D]: r, k, v, then the activated LoRA down-projections
    (v, w, a, g, each padded to D); lora2 [4, D, C]; the ranks d_* (rows past them are never read); the WKV-7
    step as in triton_decode_layer; also shift[n, head] <- xa[n, head]."""
    pid = tl.program_id(0)
    n = pid // H
    o = tl.arange(0, K)
    ch = (pid % H) * K + o
    hrow = h + n.to(tl.int64) * stride_h
    r = tl.load(hrow + ch).to(tl.float32)
    k = tl.load(hrow + C + ch).to(tl.float32)
    v = tl.load(hrow + 2 * C + ch).to(tl.float32)
    rd = tl.arange(0, BLOCK_D)
    lv = tl.zeros([K], dtype=tl.float32)
    lw = tl.zeros([K], dtype=tl.float32)
    la = tl.zeros([K], dtype=tl.float32)
    g = tl.zeros([K], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + rd
        for i in tl.static_range(4):
            if i == 0:
                dm = dd < d_v
            elif i == 1:
                dm = dd < d_w
            elif i == 2:
                dm = dd < d_a
            else:
                dm = dd < d_g
            hv = tl.load(hrow + 3 * C + i * D + dd, mask=dm, other=0.0).to(tl.float32)
            wt = tl.load(lora2 + (i * D + dd[:, None]).to(tl.int64) * C + ch[None, :], mask=dm[:, None],
                         other=0.0).to(tl.float32)
            part = tl.sum(hv[:, None] * wt, axis=0)
            if i == 0:
                lv += part
            elif i == 1:
                lw += part
            elif i == 2:
                la += part
            else:
                g += part
    row = n.to(tl.int64) * C + ch
    _wkv_head(r, k, v, _rnd(lv, y), _rnd(lw, y), _rnd(la, y), _rnd(g, y), ch, o, pid, row, w0, a0, v0, k_k, k_a,
              r_k, lnx_w, lnx_b, v_first, state, y, K, FIRST, DECAY_SCALE, gn_eps, norm_eps)
    tl.store(shift + row, tl.load(xa + row).to(shift.dtype.element_ty))


def _block_m(M: int) -> int:
    if not 1 <= M <= MAX_ROWS:
        raise ValueError(f"decode GEMV kernels: 1 to {MAX_ROWS} sequences, got {M}")
    return 1 if M == 1 else MAX_ROWS


def mix_table(segments: list[tuple[int, int, int, int]], block_n: int, device) -> torch.Tensor:
    """Per-program (first row, rows, mix index, activation) for row segments (first row, rows, mix index,
    activation): int32 (programs, 4), each segment in blocks of ``block_n`` rows, its last block possibly shorter."""
    rows = [(start + i, min(block_n, length - i), j, act)
            for start, length, j, act in segments for i in range(0, length, block_n)]
    return torch.tensor(rows, dtype=torch.int32, device=device)


def mix_proj_(x: torch.Tensor, shift: torch.Tensor, ln_w: torch.Tensor, ln_b: torch.Tensor, mix: torch.Tensor,
              w: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x, shift (M, C); mix (J, C); w (R, C); table from `mix_table` -> (out (M, R): act(mix_j(ln(x)) @ w^T) on the
    rows the table lists (the others are not written), ln(x) (M, C): the next shift state, for the caller to store).
    The table comes from `mix_table` with ``MIX_BLOCK_N``."""
    M, C = x.shape
    bm = _block_m(M)
    out = torch.empty(M, w.shape[0], dtype=x.dtype, device=x.device)
    xa = torch.empty_like(x)
    _mix_proj_kernel[(table.shape[0],)](x, shift, ln_w, ln_b, mix, w, table, out, xa, M, C, w.shape[0], LN_EPS,
                                        BLOCK_M=bm, BLOCK_N=MIX_BLOCK_N, BLOCK_K=MIX_BLOCK_K,
                                        IEEE=w.dtype == torch.float32, num_warps=MIX_WARPS, num_stages=MIX_STAGES)
    return out, xa


def proj_residual_(xin: torch.Tensor, w: torch.Tensor, resid: torch.Tensor,
                   copy: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """resid (M, N) + xin (M, K) @ w (N, K)^T -> (M, N); ``copy`` = (src, dst), both (M, N): dst <- src as well."""
    M, K = xin.shape
    N = w.shape[0]
    out = torch.empty_like(resid)
    src, dst = copy if copy is not None else (resid, resid)
    block_k = PROJ_BLOCK_K if w.element_size() <= 2 else PROJ_BLOCK_K // 2  # fp32 tiles: the same shared memory
    _proj_residual_kernel[(triton.cdiv(N, PROJ_BLOCK_N),)](
        xin, w, resid, out, src, dst, M, N, K, BLOCK_M=_block_m(M), BLOCK_N=PROJ_BLOCK_N, BLOCK_K=block_k,
        IEEE=w.dtype == torch.float32, HAS_COPY=copy is not None, num_warps=PROJ_WARPS, num_stages=PROJ_STAGES)
    return out


def lora_wkv_(h: torch.Tensor, lora2: torch.Tensor, ranks: tuple[int, int, int, int], p: dict,
              v_first: torch.Tensor, state: torch.Tensor, xa: torch.Tensor, shift: torch.Tensor, first: bool,
              decay_scale: float) -> torch.Tensor:
    """h (M, 3C + 4D) from `mix_proj_`, lora2 (4, D, C), the real ranks (v, w, a, g), the layer's vectors in ``p``
    (as `triton_decode_layer.wkv_`), state (M, H, K, K) fp32 in place; shift <- xa. Returns y (M, C)."""
    M, C = xa.shape
    H, K = state.shape[1], state.shape[2]
    D = lora2.shape[1]
    y = torch.empty(M, C, dtype=h.dtype, device=h.device)
    _lora_wkv_kernel[(M * H,)](h, lora2, *ranks, p["w0"], p["a0"], p["v0"], p["k_k"], p["k_a"], p["r_k"],
                               p["ln_x_w"], p["ln_x_b"], v_first, state, y, xa, shift, h.stride(0), C, D, H=H, K=K,
                               BLOCK_D=min(64, triton.next_power_of_2(D)), FIRST=first,
                               DECAY_SCALE=float(decay_scale), gn_eps=GN_EPS, norm_eps=NORM_EPS, num_warps=4)
    return y
