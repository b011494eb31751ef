"""Shared pieces of the WKV-7 Triton kernels: launch helpers on the host and the jit helpers every kernel calls.

Used by the sequential kernels (triton_seq.py), the chunk-parallel gradient kernel and the host code
(triton_chunk.py) and the sequence-parallel passes (triton_seqpar.py). Notation and math: triton_chunk.py's
docstring and docs/RWKV7.md ("WKV-7 kernels").
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

LAST_KERNELS: dict = {}  # the last compiled launches (for the bench: registers, spills)


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


_SM_COUNT: dict = {}


_AUTO_DOT = {"DOT": "fp16", "DOT_STATE": "bf16"}  # for bf16/fp16 inputs; fp32 inputs always get tf32


def _dot(cfg: dict, x: torch.Tensor, key: str = "DOT") -> str:
    """The kernels' DOT / DOTS constexpr for inputs like ``x`` (CONFIG[key] with "auto" resolved). Under Triton's
    CPU interpreter, which multiplies 16-bit operands wrongly, the same rounding is emulated in fp32."""
    dot = cfg.get(key, "tf32")
    allowed = ("tf32", "fp16", "bf16") if key == "DOT" else ("tf32", "bf16")
    if dot == "auto":
        dot = "tf32" if x.dtype == torch.float32 else _AUTO_DOT[key]
    if dot not in allowed:
        raise ValueError(f'CONFIG["{key}"] must be one of {allowed} or "auto", got {dot!r}')
    return dot + "_emulated" if dot != "tf32" and _interpret() else dot


def _ux_dtype(cfg: dict, x: torch.Tensor) -> torch.dtype:
    """dtype of the u / dX buffers: that of the products they enter (bf16 or fp16; with fp16 the tf32 fallback
    stores them scaled per column, _store_scaled), fp32 with tf32 products."""
    dot = _dot(cfg, x)
    return torch.bfloat16 if dot.startswith("bf16") else torch.float16 if dot.startswith("fp16") else torch.float32


def _exp_buffer(flag, ns: int, H: int, V: int, device) -> torch.Tensor | None:
    """int8 [NS, H, V] per-(chunk, head, column) power-of-two exponents of a u or dX buffer, for fp16 products
    (``flag`` set) only: zero (unscaled) unless the tf32 fallback wrote the chunk (_store_scaled)."""
    return torch.zeros(ns, H, V, dtype=torch.int8, device=device) if flag is not None else None


_COUNTERS: dict = {}  # device -> int32 [2]: tf32 fallbacks of fp16 launches (forward, backward)


def _counter(device: torch.device) -> torch.Tensor:
    if device not in _COUNTERS:
        _COUNTERS[device] = torch.zeros(2, dtype=torch.int32, device=device)
    return _COUNTERS[device]


def overflow_fallbacks() -> dict:
    """How many forward and backward calls had an fp16 product overflow and were recomputed with tf32, summed over
    devices ({} before any launch; reads device counters, a host sync: for logging, not for every step)."""
    if not _COUNTERS:
        return {}
    total = [0, 0]
    for c in _COUNTERS.values():
        f, b = c.tolist()
        total = [total[0] + f, total[1] + b]
    return {"forward": total[0], "backward": total[1]}


def _fp16_check(cfg: dict, x: torch.Tensor, flag: torch.Tensor | None = None):
    """(flag, cfg of the tf32 fallback) for a launch with fp16 products, else (None, None). ``flag``: one to reuse
    (the forward's, kept for the backward) instead of a new zero one."""
    if not _dot(cfg, x).startswith("fp16"):
        return None, None
    if flag is None:
        flag = torch.zeros(1, dtype=torch.int32, device=x.device)
    return flag, dict(cfg, DOT="tf32", DOT_STATE="tf32")


def _dout_max(do: torch.Tensor) -> torch.Tensor:
    """max |dO| as fp32 [1], on the device: the fp16 products' dO scale (_grad_scale) is computed from it."""
    if not do.numel():  # the inf-norm has no value for an empty tensor
        return torch.zeros(1, device=do.device)
    return torch.linalg.vector_norm(do, float("inf"), dtype=torch.float32).reshape(1)


def _maxnreg(n: int | None) -> dict:
    """The ``maxnreg`` launch option (a register cap per thread, for more resident blocks) where one is set: not
    passed at all otherwise, nor under the interpreter, which has no registers."""
    return {"maxnreg": n} if n and not _interpret() else {}


def _pick_bv(bv_max: int, V: int, n_heads: int, device: torch.device) -> int:
    """The V-block of a sequential kernel: the largest <= bv_max that still gives 1.5 programs per multiprocessor."""
    if _interpret():
        return V  # the interpreter runs programs one after another: fewer is faster
    if device.index not in _SM_COUNT:
        _SM_COUNT[device.index] = torch.cuda.get_device_properties(device).multi_processor_count
    bv = min(V, bv_max)
    while bv > 16 and n_heads * (V // bv) < 1.5 * _SM_COUNT[device.index]:
        bv //= 2
    return bv


def _layout(cu_seqlens: torch.Tensor | None, B: int, T: int, bt: int):
    """Where each sequence's states live in the [NS, H, K, V] buffers (NS = chunks + one final state per sequence),
    NS, the number of chunks, and for varlen the (sequence, chunk) pair of every chunk [chunks, 2]."""
    if cu_seqlens is None:
        nt = triton.cdiv(T, bt)
        return None, B * (nt + 1), B * nt, None
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    nts = (lengths + bt - 1) // bt
    per_seq = nts + 1
    offsets = torch.cumsum(per_seq, 0) - per_seq
    n_chunks = int(nts.sum())
    seq = torch.repeat_interleave(torch.arange(len(nts), device=nts.device), nts)
    first = torch.repeat_interleave(torch.cumsum(nts, 0) - nts, nts)
    within = torch.arange(n_chunks, device=nts.device) - first
    chunk_index = torch.stack([seq, within], 1).to(torch.int32).contiguous()
    return offsets, int(per_seq.sum()), n_chunks, chunk_index


@triton.jit
def _tri_inverse(A, BT: tl.constexpr, PREC: tl.constexpr):
    """(I - A)^{-1} for a strictly lower-triangular [BT, BT] A: (I+A)(I+A^2)(I+A^4)... up to A^{BT-1} (A^BT = 0)."""
    o_t = tl.arange(0, BT)
    p = A + (o_t[:, None] == o_t[None, :]).to(tl.float32)
    q = tl.dot(A, A, input_precision=PREC)
    p = p + tl.dot(p, q, input_precision=PREC)  # all powers < 4
    if BT > 4:
        q = tl.dot(q, q, input_precision=PREC)
        p = p + tl.dot(p, q, input_precision=PREC)  # < 8
    if BT > 8:
        q = tl.dot(q, q, input_precision=PREC)
        p = p + tl.dot(p, q, input_precision=PREC)  # < 16
    if BT > 16:
        q = tl.dot(q, q, input_precision=PREC)
        p = p + tl.dot(p, q, input_precision=PREC)  # < 32
    if BT > 32:
        q = tl.dot(q, q, input_precision=PREC)
        p = p + tl.dot(p, q, input_precision=PREC)  # < 64
    return p


@triton.jit
def _mm(x, y, DOT: tl.constexpr):
    """x @ y on the tensor cores with fp32 accumulation. "tf32": fp32 operands rounded to tf32 (fp32 range, 11-bit
    significand); "fp16" / "bf16": operands cast before the product, which halves the shared-memory bytes of the
    operand layout conversions that bound these kernels (NOTES_wkv7.md). "*_emulated": the same rounding through an
    fp32 product (a 16-bit x 16-bit product is exact in fp32) for the CPU interpreter."""
    if DOT == "fp16":
        return tl.dot(x.to(tl.float16), y.to(tl.float16))
    elif DOT == "bf16":
        return tl.dot(x.to(tl.bfloat16), y.to(tl.bfloat16))
    elif DOT == "fp16_emulated":
        return tl.dot(x.to(tl.float16).to(tl.float32), y.to(tl.float16).to(tl.float32), input_precision="ieee")
    elif DOT == "bf16_emulated":
        return tl.dot(x.to(tl.bfloat16).to(tl.float32), y.to(tl.bfloat16).to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(x, y)


@triton.jit
def _gate(flag, counter, first):
    """The tf32 fallback launch (GATE): True if the fp16 launch before it flagged nothing, i.e. this program has
    nothing to do; otherwise the first program counts the fallback in counter[0]."""
    flagged = tl.load(flag) != 0
    tl.atomic_add(counter, 1, mask=flagged & first)
    return not flagged


@triton.jit
def _grad_scale(gmax):
    """(scale, 1 / scale) for dO from max |dO| (gmax[0]): scaled, max |dO| is 2^-4, which leaves 16x headroom below
    fp16's top for the values the backward derives from dO (dX, the intra-chunk dA)."""
    m = tl.load(gmax)
    gsc = tl.where(m > 0, 0.0625 / m, 1.0)
    return gsc, 1.0 / gsc


@triton.jit
def _flag_nonfinite(flag, x):
    """Sets flag[0] = 1 when the tile x holds an inf or a NaN (an fp16 operand overflowed upstream): one store per
    element, predicated off for finite ones, so no reduction (no barrier) and no accumulator (no registers)."""
    bad = ~(tl.abs(x) < float("inf"))  # NaN compares false
    tl.store(flag + tl.zeros(x.shape, dtype=tl.int32), tl.full(x.shape, 1, dtype=tl.int32), mask=bad)


@triton.jit
def _store_scaled(ptr, x, mask, exp_ptr, o_v):
    """The tf32 fallback's store of u or dX [BT, BV] into an fp16 buffer: each column is divided by 2^e, the
    smallest power of two that brings its max |x| to <= 2^15 (e >= 0, so values in range are stored as they are),
    and e goes to exp_ptr + o_v (int8) for _load_scaled. fp16's 11-bit significand equals tf32's, so the fallback
    loses no precision, and a model whose u or dX passes 65504 still gets finite gradients."""
    colmax = tl.max(tl.abs(x), axis=0)  # [BV]
    e = tl.ceil(tl.log2(colmax)) - 15.0
    e = tl.where(e > 0, tl.minimum(e, 100.0), 0.0)  # NaN -> 0; inf -> 100 (the result is inf either way)
    tl.store(exp_ptr + o_v, e.to(tl.int8))
    tl.store(ptr, (x * tl.exp2(-e)[None, :]).to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _load_scaled(ptr, mask, exp_ptr, o_v):
    """Loads a u or dX tile [BT, V] written by _store_scaled (or unscaled, with zero exponents) as fp32."""
    e = tl.load(exp_ptr + o_v).to(tl.float32)  # [V]
    return tl.load(ptr, mask=mask, other=0).to(tl.float32) * tl.exp2(e)[None, :]


@triton.jit
def _chunk_prep(p_r, p_w, p_k, p_a, p_b, m_t, o_t, HK, K: tl.constexpr, DOT: tl.constexpr):
    """Load one chunk of r, w, k, a, b ([BT, K]) and build the decay-scaled factors and intra-chunk matrices.

    The factors are taken relative to the chunk's mid decay g_m = g_C / 2 (a_s = a e^{g_{t-1} - g_m},
    r_s = r e^{g_t - g_m}, b_i = b e^{g_m - g_t}, k_i = k e^{g_m - g_t}): every factor then lies within
    e^{+-BT/2 * 0.6065} (128 at BT = 16) of the input, which keeps fp16 operands in range; the [BT, BT] matrices are
    unchanged, and the state products use the factors times e^{g_m} (returned as egm)."""
    o_k = tl.arange(0, K)
    offs = o_t[:, None] * HK + o_k[None, :]
    m = m_t[:, None]
    r = tl.load(p_r + offs, mask=m, other=0).to(tl.float32)
    w = tl.load(p_w + offs, mask=m, other=0).to(tl.float32)
    k = tl.load(p_k + offs, mask=m, other=0).to(tl.float32)
    a = tl.load(p_a + offs, mask=m, other=0).to(tl.float32)
    b = tl.load(p_b + offs, mask=m, other=0).to(tl.float32)
    g = tl.cumsum(w, axis=0)  # [BT, K] inclusive; padded rows have w = 0 (decay 1), so g_C = g of the last real row
    g_last = tl.sum(w, axis=0)  # [K]
    g_m = 0.5 * g_last[None, :]  # [1, K] the mid-chunk reference
    eg = tl.exp(g - g_m)
    egp = tl.exp(g - w - g_m)
    eng = tl.exp(g_m - g)
    egl_g = tl.exp(g_last[None, :] - g)  # e^{g_C - g_t} <= 1
    a_s = a * egp
    r_s = r * eg
    b_i = b * eng
    k_i = k * eng
    strict = o_t[:, None] > o_t[None, :]
    incl = o_t[:, None] >= o_t[None, :]
    A_ab = tl.where(strict, _mm(a_s, tl.trans(b_i), DOT), 0.0)
    A_ak = tl.where(strict, _mm(a_s, tl.trans(k_i), DOT), 0.0)
    A_rb = tl.where(incl, _mm(r_s, tl.trans(b_i), DOT), 0.0)
    A_rk = tl.where(incl, _mm(r_s, tl.trans(k_i), DOT), 0.0)
    egm = tl.exp(0.5 * g_last)  # [K] e^{g_m}
    return a_s, r_s, b_i, k_i, b * egl_g, k * egl_g, eg, egp, eng, g_last, egm, A_ab, A_ak, A_rb, A_rk


@triton.jit
def _seg_locate(i_g, seg_index, T, BT: tl.constexpr, SEG: tl.constexpr, IS_VARLEN: tl.constexpr):
    """(sequence, segment within it) of global segment i_g: from seg_index [segments, 2] for varlen, else from the
    common length T (segments of SEG chunks of BT tokens)."""
    if IS_VARLEN:
        i_n = tl.load(seg_index + 2 * i_g)
        i_s = tl.load(seg_index + 2 * i_g + 1)
    else:
        n_seg = tl.cdiv(tl.cdiv(T, BT), SEG)
        i_n = i_g // n_seg
        i_s = i_g % n_seg
    return i_n, i_s


@triton.jit
def _seg_offset(i_n, seg_offsets, T, BT: tl.constexpr, SEG: tl.constexpr, IS_VARLEN: tl.constexpr):
    """First slot of sequence i_n in a [segments + N, H, K, V] buffer (one slot per segment boundary)."""
    if IS_VARLEN:
        return tl.load(seg_offsets + i_n).to(tl.int64)
    else:
        return (i_n * (tl.cdiv(tl.cdiv(T, BT), SEG) + 1)).to(tl.int64)
