"""Matrix-vector products for the decode step at batch 1-4: y = x @ W^T with W in nn.Linear's (out, in) layout.

At batch 1 a decode step reads every weight once; cuBLAS picks GEMM tiles for these shapes that leave part of the
copy bandwidth unused. These kernels stream W row-block by row-block, one program per ``BLOCK_N`` output rows,
each reading its rows in ``BLOCK_K`` column tiles:

- "dot": the tile product as ``tl.dot(W_tile [BLOCK_N, BLOCK_K], x_tile^T [BLOCK_K, BLOCK_M])`` with the batch padded
  to BLOCK_M = 16 rows (the padding costs tensor-core work, which is free here; in return the loads of W are
  software-pipelined over ``num_stages`` tiles);
- "fma": elementwise products accumulated in registers and summed once at the end (batch 1 only).

`bench/gemv.py` times both against cuBLAS over tile sizes on the GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_decode_layer import _INTERPRET

VARIANTS = ("dot", "fma")


@triton.jit
def _gemv_dot_kernel(x, w, y, M, N, K, stride_xm, stride_wn, stride_ym,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EVEN: tl.constexpr):
    """x [M, K], w [N, K], y [M, N]; one program per BLOCK_N rows of w."""
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = tl.arange(0, BLOCK_M)
    rk = tl.arange(0, BLOCK_K)
    w_ptrs = w + rn[:, None].to(tl.int64) * stride_wn + rk[None, :]  # [BN, BK]
    x_ptrs = x + rm[None, :] * stride_xm + rk[:, None]  # [BK, BM]
    acc = tl.zeros([BLOCK_N, BLOCK_M], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        if EVEN:
            wt = tl.load(w_ptrs, eviction_policy="evict_first")
        else:
            wt = tl.load(w_ptrs, mask=(rn[:, None] < N) & (k0 + rk[None, :] < K), other=0.0,
                         eviction_policy="evict_first")
        xt = tl.load(x_ptrs, mask=(rm[None, :] < M) & (k0 + rk[:, None] < K), other=0.0).to(wt.dtype)
        if _INTERPRET:  # the CPU interpreter's tl.dot mishandles bf16 operands: the same products in fp32
            acc = tl.dot(wt.to(tl.float32), xt.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(wt, xt, acc)
        w_ptrs += BLOCK_K
        x_ptrs += BLOCK_K
    out = tl.trans(acc)  # [BM, BN]
    tl.store(y + rm[:, None] * stride_ym + rn[None, :], out.to(y.dtype.element_ty),
             mask=(rm[:, None] < M) & (rn[None, :] < N))


@triton.jit
def _gemv_fma_kernel(x, w, y, N, K, stride_wn, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EVEN: tl.constexpr):
    """x [K], w [N, K], y [N]; one program per BLOCK_N rows of w."""
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    w_ptrs = w + rn[:, None].to(tl.int64) * stride_wn + rk[None, :]
    acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        if EVEN:
            wt = tl.load(w_ptrs, eviction_policy="evict_first")
            xt = tl.load(x + k0 + rk)
        else:
            wt = tl.load(w_ptrs, mask=(rn[:, None] < N) & (k0 + rk[None, :] < K), other=0.0,
                         eviction_policy="evict_first")
            xt = tl.load(x + k0 + rk, mask=k0 + rk < K, other=0.0)
        acc += wt.to(tl.float32) * xt.to(tl.float32)[None, :]
        w_ptrs += BLOCK_K
    tl.store(y + rn, tl.sum(acc, axis=1).to(y.dtype.element_ty), mask=rn < N)


def gemv(x: torch.Tensor, w: torch.Tensor, variant: str = "dot", block_n: int = 32, block_k: int = 256,
         num_warps: int = 4, num_stages: int = 4) -> torch.Tensor:
    """x (M, K) with M <= 16 ("dot") or M == 1 ("fma"), w (N, K) with unit stride along K -> x @ w.T (M, N)."""
    if variant not in VARIANTS:
        raise ValueError(f"gemv: variant must be one of {VARIANTS}, got {variant!r}")
    M, K = x.shape
    N = w.shape[0]
    if w.shape[1] != K or w.stride(1) != 1 or x.stride(1) != 1:
        raise ValueError(f"gemv: x (M, K) and w (N, K) need unit stride along K; got x {tuple(x.shape)} "
                         f"strides {x.stride()}, w {tuple(w.shape)} strides {w.stride()}")
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)
    even = N % block_n == 0 and K % block_k == 0
    grid = (triton.cdiv(N, block_n),)
    if variant == "fma":
        if M != 1:
            raise ValueError(f"gemv: the fma variant takes one row, got {M}")
        _gemv_fma_kernel[grid](x, w, y, N, K, w.stride(0), BLOCK_N=block_n, BLOCK_K=block_k, EVEN=even,
                               num_warps=num_warps, num_stages=num_stages)
    else:
        if M > 16:
            raise ValueError(f"gemv: at most 16 rows, got {M}")
        _gemv_dot_kernel[grid](x, w, y, M, N, K, x.stride(0), w.stride(0), y.stride(0), BLOCK_M=16,
                               BLOCK_N=block_n, BLOCK_K=block_k, EVEN=even, num_warps=num_warps,
                               num_stages=num_stages)
    return y
