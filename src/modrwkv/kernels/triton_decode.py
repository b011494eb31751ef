"""WKV-7 single-token decode step in Triton: N sequences, one token each, fp32 state in and out.

    sa  = a^T S              # [V]
    S'  = diag(e^w) S + b sa^T + k v^T
    o   = S'^T r

One program per (sequence, head, V-block): the state tile [K, BV] is read once and written once, so the step is
bound by the state's bytes (2 x N x H x K x V x 4) or, for few sequences, by the launch itself. Splitting V gives
small batches enough programs to spread the state over the memory system.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl


@triton.jit
def _wkv7_step_kernel(r, w, k, v, a, b, state, o, new_state, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
                      BV: tl.constexpr):
    """Grid (N * H, V // BV); inputs [N, H, K] (v: [N, H, V]); state [N, H, K, V] fp32."""
    i_nh, i_v = tl.program_id(0), tl.program_id(1)  # the large axis first: grid y is limited to 65535
    o_k = tl.arange(0, K)
    o_v = i_v * BV + tl.arange(0, BV)
    base_k = i_nh.to(tl.int64) * K
    base_v = i_nh.to(tl.int64) * V
    rr = tl.load(r + base_k + o_k).to(tl.float32)
    ww = tl.load(w + base_k + o_k).to(tl.float32)
    kk = tl.load(k + base_k + o_k).to(tl.float32)
    aa = tl.load(a + base_k + o_k).to(tl.float32)
    bb = tl.load(b + base_k + o_k).to(tl.float32)
    vv = tl.load(v + base_v + o_v).to(tl.float32)
    s_ptrs = i_nh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
    S = tl.load(state + s_ptrs).to(tl.float32)  # [K, BV]
    sa = tl.sum(aa[:, None] * S, axis=0)  # [BV]
    S = tl.exp(ww)[:, None] * S + bb[:, None] * sa[None, :] + kk[:, None] * vv[None, :]
    out = tl.sum(rr[:, None] * S, axis=0)
    tl.store(o + base_v + o_v, out.to(o.dtype.element_ty))
    tl.store(new_state + s_ptrs, S)


def wkv7_step_triton(
    r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding step: inputs [N, H, K] (v [N, H, V]), state [N, H, K, V] -> (o [N, H, V] in r's dtype,
    new fp32 state). The input state is not modified."""
    N, H, K = r.shape
    V = v.shape[-1]
    if K != triton.next_power_of_2(K) or V != triton.next_power_of_2(V):
        raise ValueError(f"wkv7_step_triton: head sizes must be powers of two, got K={K}, V={V}")
    r, w, k, v, a, b = (x.contiguous() for x in (r, w, k, v, a, b))
    state = state.float().contiguous()
    o = torch.empty(N, H, V, dtype=r.dtype, device=r.device)
    new_state = torch.empty_like(state)
    BV, warps = _launch(N * H, V)
    _wkv7_step_kernel[(N * H, V // BV)](r, w, k, v, a, b, state, o, new_state, H=H, K=K, V=V, BV=BV,
                                        num_warps=warps)
    return o, new_state


# (V-block, warps) of the step by the number of (sequence, head) pairs; None = the built-in choice. The bench's
# --decode-sweep measures the alternatives (bench/RESULTS.md).
DECODE_CONFIG: dict = {"BV": None, "WARPS": None}


def _launch(n_heads: int, V: int) -> tuple[int, int]:
    """The step's V-block and warps: few sequences split V finely so that enough programs run at once."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return V, 1  # the interpreter runs programs one after another: fewer is faster
    bv = DECODE_CONFIG["BV"] or (16 if n_heads < 256 else 32)
    # 4 warps: chosen with bench/wkv7.py --decode-sweep (bench/RESULTS.md)
    return min(V, bv), DECODE_CONFIG["WARPS"] or 4
