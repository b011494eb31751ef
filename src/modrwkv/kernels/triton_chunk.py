"""WKV-7 in Triton: a fused chunked forward and backward, wrapped in an autograd function.

Math (see chunked.py for the derivation). Per (sequence, head), in a chunk of BT tokens that starts from state S
([K, V], fp32), with g_t = sum_{s<=t} w_s the inclusive cumulative log decay inside the chunk and g_C its last value:

    a_s = a e^{g_{t-1}}    r_s = r e^{g_t}    b_i = b e^{-g_t}    k_i = k e^{-g_t}                    # [BT, K]
    A_ab = tril_strict(a_s b_i^T)   A_ak = tril_strict(a_s k_i^T)   A_rb = tril(r_s b_i^T)   A_rk = tril(r_s k_i^T)
    u    = (I - A_ab)^{-1} (a_s S + A_ak V)                  # u_t = S_{t-1}^T a_t, the WY form   [BT, V]
    o    = r_s S + A_rb u + A_rk V                                                                [BT, V]
    S'   = e^{g_C} * (S + b_i^T u + k_i^T V)                 # the next chunk's start state     [K, V]

Three kernels (bench/NOTES_wkv7.md has the measured alternatives):

- forward, one program per (sequence, head, V-block): walks the chunks in order with S in registers (fp32), reads
  each input once and writes o once (the memory floor's bytes). The S-independent part (cumulative decay, the four
  [BT, BT] matrices, the triangular inverse) is recomputed per V-block, so the V-block is as wide as the
  parallelism allows. For the backward it also stores every chunk-start state ([NS, H, K, V], NS = chunks + one
  final state per sequence; bf16 for bf16 inputs, else fp32) and u ([B, T, H, V], _ux_dtype).
- reverse pass, one program per (sequence, head, V-block): carries dS (gradient of a chunk's end state) from the
  last chunk to the first, stores it per chunk together with dX, and writes dv; nothing in it depends on S. dS after
  the first chunk is the gradient of the initial state.
- gradient kernel, one program per (chunk, head), fully parallel: from the stored S, dS', u and dX writes dr, dw,
  dk, da, db.

Gradients of one chunk, with dO the output gradient and dS' the gradient of the chunk's end state:

    du   = A_rb^T dO + b_e dS'             (b_e = b e^{g_C - g}, k_e = k e^{g_C - g})
    dX   = (I - A_ab)^{-T} du
    dA_ab = tril_strict(dX u^T)   dA_ak = tril_strict(dX V^T)   dA_rb = tril(dO u^T)   dA_rk = tril(dO V^T)
    dV   = A_rk^T dO + A_ak^T dX + k_e dS'
    d(r_s) = dO S^T + dA_rb b_i + dA_rk k_i          d(a_s) = dX S^T + dA_ab b_i + dA_ak k_i
    d(b_i) = dA_ab^T a_s + dA_rb^T r_s + u (e^{g_C} dS')^T
    d(k_i) = dA_ak^T a_s + dA_rk^T r_s + V (e^{g_C} dS')^T
    dS   = e^{g_C} dS' + r_s^T dO + a_s^T dX                                  (to the previous chunk)
    dr = d(r_s) e^{g}, da = d(a_s) e^{g_{t-1}}, db = d(b_i) e^{-g}, dk = d(k_i) e^{-g}
    dg_t = d(r_s) r_s + d(a_s) a_s - d(b_i) b_i - d(k_i) k_i,   dg_C = rowsum(dS' * S')
    dw_s = sum_{t>=s} dg_t + dg_C - d(a_s)_s a_s_s     (a_s uses g_{t-1} = g_t - w_t)

Numerics: the chunk is 16 tokens and RWKV-7's log decay is >= -0.6065 per token, so e^{-g} <= e^{9.7} ~ 1.6e4:
fp32 range is never at risk, and the decay factors only rescale terms (the split e^{g} e^{-g} adds no
cancellation). The [BT, BT] triangular inverse is (I + N)(I + N^2)(I + N^4)(I + N^8) with N = A_ab (strictly
lower, so N^16 = 0) in full fp32 ("ieee") dots; the other products use tf32 tensor cores on the GPU.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# Launch settings; the bench sweeps them. BT: chunk length (16 or 32). BV_*: the largest V-block of the sequential
# kernels (halved while there are fewer programs than 1.5 per multiprocessor: long single sequences need the
# parallelism more than they suffer from recomputing the intra-chunk part per V-block).
# STATE_DTYPE: how the chunk-boundary states and their gradients are kept between forward and backward; "auto" is
# bf16 for bf16/fp16 inputs (measured: worst relative gradient error 2.76e-3 vs 2.72e-3 with fp32, 0.55 ms less
# fwd+bwd at B=8 T=4096 H=32) and fp32 for fp32 inputs. The recurrence itself always runs in fp32.
# SEQPAR: "off" (default: the sequential forward), "on" (the sequence-parallel forward of triton_seqpar.py, same
# outputs and saved tensors; on an H100 it only wins the forward of one long sequence, bench/RESULTS.md) or "auto"
# (seqpar for few sequences x heads, long sequences).
# DOT / DOT_STATE: operand precision of the tensor-core products (accumulation is always fp32, the triangular
# inverse always fp32 "ieee"). DOT covers the intra-chunk products (the [BT, BT] matrices and everything multiplied
# by them), DOT_STATE the products with the [K, V] state or its gradient. "tf32" (fp32 operands, 11-bit
# significand), "fp16" (DOT only: the same significand at half the shared-memory bytes; see "fp16 products"
# below), "bf16" (8-bit significand, fp32's range; over the 5e-3 error bound when used for DOT), "auto": _AUTO_DOT
# for 16-bit inputs, tf32 for fp32 inputs. Measured choices: bench/NOTES_wkv7.md.
#
# fp16 products. Kept in range by (1) the mid-chunk decay reference (_chunk_prep: decay factors within 128x of the
# inputs), (2) scaling dO so that max |dO| = 2^-4 (bf16 gradients are often far below fp16's normal range, 6e-5;
# the kernels compute the scale from max |dO| on the device and undo it on store) and (3) a check without host
# sync: each fp16 launch sets a flag on any non-finite result, and a tf32 launch of the same kernel follows that
# exits at once unless the flag is set, in which case it recomputes everything that launch wrote. So a model whose
# values pass 65504 gets tf32 results, never inf; overflow_fallbacks() counts how often that happened.
# MAXNREG_GRAD: a register cap for the gradient kernel: 168 gives three blocks of 4 warps per multiprocessor instead
# of the two at the compiler's 255 (None), at the cost of some spills; measured faster (bench/NOTES_wkv7.md).
CONFIG = {"BT": 16, "BV_FWD": 64, "BV_DS": 64, "WARPS_FWD": 4, "WARPS_DS": 4, "WARPS_GRAD": 4,
          "INV_PREC": "ieee", "STATE_DTYPE": "auto", "STAGES": 3, "SEQPAR": "off", "DOT": "auto", "DOT_STATE": "auto",
          "MAXNREG_GRAD": 168}
GATE_PROGRAMS = 64  # chunk-axis programs of the gated tf32 fallback of the gradient kernel (x heads)
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


@triton.jit(do_not_specialize=["T"])
def _wkv7_fwd_kernel(
    r, w, k, v, a, b, o, h0, ht, states, ubuf, uexp, cu_seqlens, state_offsets, T, s_in, chunk_index, flag, counter,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr, SAVE_STATES: tl.constexpr, IS_VARLEN: tl.constexpr,
    INV_PREC: tl.constexpr, STORE_U: tl.constexpr, ONE_CHUNK: tl.constexpr, DOT: tl.constexpr, DOTS: tl.constexpr,
    CHECK: tl.constexpr, GATE: tl.constexpr, SCALE_U: tl.constexpr,
):
    """Grid (N * H, V // BV). Walks the chunks of one (sequence, head) in order with S [K, BV] in registers.

    SEQPAR (triton_seqpar.py): with ONE_CHUNK, grid (chunks * H, V // BV) and each program runs exactly one chunk
    from its fp32 start state in ``s_in`` ([NS, H, K, V], written by the state pass); SAVE_STATES then copies that
    start state into ``states`` and nothing is written after the chunk. With ONE_CHUNK off (s_in, chunk_index
    unused, STORE_U = SAVE_STATES) this is the sequential kernel, unchanged.
    CHECK (fp16 products): flag[0] = 1 if the state went non-finite; GATE: the tf32 fallback launched after it,
    which exits at once unless flag[0] is set (no host sync either way, see _fwd). SCALE_U (the fallback with an
    fp16 u buffer): u is stored scaled per column, its exponents in uexp [NS, H, V] (_store_scaled)."""
    i_nh, i_v = tl.program_id(0), tl.program_id(1)  # the large axis first: grid y is limited to 65535
    if GATE:
        if _gate(flag, counter, (i_nh == 0) & (i_v == 0)):
            return
    i_n, i_h = i_nh // H, i_nh % H
    t_lo = 0
    if ONE_CHUNK:  # SEQPAR: program_id(0) = chunk * H + head
        if IS_VARLEN:
            t_lo = tl.load(chunk_index + 2 * i_n + 1)
            i_n = tl.load(chunk_index + 2 * i_n)
        else:
            t_lo = i_n % tl.cdiv(T, BT)
            i_n = i_n // tl.cdiv(T, BT)
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = (tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos).to(tl.int32)
        s_off = tl.load(state_offsets + i_n).to(tl.int64)
    else:
        bos = (i_n * T).to(tl.int64)
        s_off = (i_n * (tl.cdiv(T, BT) + 1)).to(tl.int64)
    NT = tl.cdiv(T, BT)
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, K)
    o_v = i_v * BV + tl.arange(0, BV)
    s_ptrs = o_k[:, None] * V + o_v[None, :]  # [K, BV] inside one [K, V] state

    S = tl.zeros([K, BV], dtype=tl.float32)
    if ONE_CHUNK:  # SEQPAR: the chunk's start state from the state pass
        S += tl.load(s_in + ((s_off + t_lo) * H + i_h) * K * V + s_ptrs)
        NT = t_lo + 1
    elif USE_H0:
        S += tl.load(h0 + i_nh.to(tl.int64) * K * V + s_ptrs)
    for i_t in range(t_lo, NT):
        if SAVE_STATES:
            tl.store(states + ((s_off + i_t) * H + i_h) * K * V + s_ptrs, S.to(states.dtype.element_ty))
        t0 = i_t * BT
        m_t = (t0 + o_t) < T
        base = (bos + t0) * H * K + i_h * K
        a_s, r_s, b_i, k_i, b_e, k_e, eg, egp, eng, g_last, egm, A_ab, A_ak, A_rb, A_rk = _chunk_prep(
            r + base, w + base, k + base, a + base, b + base, m_t, o_t, H * K, K, DOT)
        vbase = (bos + t0) * H * V + i_h * V
        v_offs = o_t[:, None] * H * V + o_v[None, :]
        vv = tl.load(v + vbase + v_offs, mask=m_t[:, None], other=0).to(tl.float32)  # [BT, BV]
        Linv = _tri_inverse(A_ab, BT, INV_PREC)
        X = _mm(a_s * egm[None, :], S, DOTS) + _mm(A_ak, vv, DOT)  # [BT, BV]
        u = tl.dot(Linv, X, input_precision=INV_PREC)
        if STORE_U:  # the backward reads u instead of re-solving
            if SCALE_U:
                _store_scaled(ubuf + vbase + v_offs, u, m_t[:, None], uexp + ((s_off + i_t) * H + i_h) * V, o_v)
            else:
                tl.store(ubuf + vbase + v_offs, u.to(ubuf.dtype.element_ty), mask=m_t[:, None])
        out = _mm(r_s * egm[None, :], S, DOTS) + _mm(A_rb, u, DOT) + _mm(A_rk, vv, DOT)
        tl.store(o + vbase + v_offs, out.to(o.dtype.element_ty), mask=m_t[:, None])
        if CHECK:
            _flag_nonfinite(flag, out)
        S = S * tl.exp(g_last)[:, None] + _mm(tl.trans(b_e), u, DOTS) + _mm(tl.trans(k_e), vv, DOTS)
    if CHECK:  # (o is checked per chunk above)
        _flag_nonfinite(flag, S)
    if not ONE_CHUNK:  # SEQPAR: the state pass writes the final states
        if SAVE_STATES:
            tl.store(states + ((s_off + NT) * H + i_h) * K * V + s_ptrs, S.to(states.dtype.element_ty))
        if STORE_HT:
            tl.store(ht + i_nh.to(tl.int64) * K * V + s_ptrs, S)


@triton.jit(do_not_specialize=["T"])
def _wkv7_bwd_dstate_kernel(
    r, w, k, a, b, do, dht, dstates, dxbuf, dxexp, dv, dh0, cu_seqlens, state_offsets, T, gmax, flag, counter,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
    USE_DHT: tl.constexpr, STORE_DH0: tl.constexpr, IS_VARLEN: tl.constexpr, INV_PREC: tl.constexpr,
    DOT: tl.constexpr, DOTS: tl.constexpr, GSCALE: tl.constexpr, CHECK: tl.constexpr, GATE: tl.constexpr,
    SCALE_X: tl.constexpr,
):
    """Grid (N * H, V // BV). The reverse pass: carries dS [K, BV] (gradient of a chunk's end state) backwards,
    stores it for every chunk, and writes dv, which needs no forward state. Nothing here depends on S.
    With GSCALE, dO and dS_T are scaled on load (_grad_scale of gmax = max |dO|; dS and dX are stored scaled, for
    the gradient kernel) and dv, dh0 unscaled on store. CHECK / GATE as in the forward kernel. What could
    overflow in dv alone (A_rk or A_ak as fp16 operands) overflows in the forward too, whose flag the backward's
    starts from; dX beyond fp16 is caught by the gradient kernel. SCALE_X: dX stored scaled per column, its
    exponents in dxexp (as SCALE_U in the forward)."""
    i_nh, i_v = tl.program_id(0), tl.program_id(1)  # the large axis first: grid y is limited to 65535
    if GATE:
        if _gate(flag, counter, (i_nh == 0) & (i_v == 0)):
            return
    i_n, i_h = i_nh // H, i_nh % H
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = (tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos).to(tl.int32)
        s_off = tl.load(state_offsets + i_n).to(tl.int64)
    else:
        bos = (i_n * T).to(tl.int64)
        s_off = (i_n * (tl.cdiv(T, BT) + 1)).to(tl.int64)
    NT = tl.cdiv(T, BT)
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, K)
    o_v = i_v * BV + tl.arange(0, BV)
    s_ptrs = o_k[:, None] * V + o_v[None, :]

    gsc, ginv = 1.0, 1.0
    if GSCALE:
        gsc, ginv = _grad_scale(gmax)
    dS = tl.zeros([K, BV], dtype=tl.float32)
    if USE_DHT:
        dS += tl.load(dht + i_nh.to(tl.int64) * K * V + s_ptrs) * gsc
    for i_c in range(0, NT):
        i_t = NT - 1 - i_c
        tl.store(dstates + ((s_off + i_t) * H + i_h) * K * V + s_ptrs, dS.to(dstates.dtype.element_ty))
        t0 = i_t * BT
        m_t = (t0 + o_t) < T
        base = (bos + t0) * H * K + i_h * K
        a_s, r_s, b_i, k_i, b_e, k_e, eg, egp, eng, g_last, egm, A_ab, A_ak, A_rb, A_rk = _chunk_prep(
            r + base, w + base, k + base, a + base, b + base, m_t, o_t, H * K, K, DOT)
        vbase = (bos + t0) * H * V + i_h * V
        v_offs = o_t[:, None] * H * V + o_v[None, :]
        dO = tl.load(do + vbase + v_offs, mask=m_t[:, None], other=0).to(tl.float32) * gsc  # [BT, BV]
        Linv = _tri_inverse(A_ab, BT, INV_PREC)
        du = _mm(tl.trans(A_rb), dO, DOT) + _mm(b_e, dS, DOTS)
        dX = tl.dot(tl.trans(Linv), du, input_precision=INV_PREC)
        if SCALE_X:  # for the gradient kernel
            _store_scaled(dxbuf + vbase + v_offs, dX, m_t[:, None], dxexp + ((s_off + i_t) * H + i_h) * V, o_v)
        else:
            tl.store(dxbuf + vbase + v_offs, dX.to(dxbuf.dtype.element_ty), mask=m_t[:, None])
        dvv = _mm(tl.trans(A_rk), dO, DOT) + _mm(tl.trans(A_ak), dX, DOT) + _mm(k_e, dS, DOTS)
        tl.store(dv + vbase + v_offs, (dvv * ginv).to(dv.dtype.element_ty), mask=m_t[:, None])
        dS = dS * tl.exp(g_last)[:, None] + (_mm(tl.trans(r_s * egm[None, :]), dO, DOTS)
                                             + _mm(tl.trans(a_s * egm[None, :]), dX, DOTS))
    if CHECK:
        _flag_nonfinite(flag, dS)
    if STORE_DH0:
        tl.store(dh0 + i_nh.to(tl.int64) * K * V + s_ptrs, dS * ginv)


@triton.jit(do_not_specialize=["T", "n_chunks"])
def _wkv7_bwd_grad_kernel(
    r, w, k, v, a, b, do, states, dstates, ubuf, dxbuf, uexp, dxexp, dr, dw, dk, da, db, cu_seqlens, state_offsets,
    chunk_index, T, n_chunks, gmax, flag,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, IS_VARLEN: tl.constexpr,
    INV_PREC: tl.constexpr, DOT: tl.constexpr, DOTS: tl.constexpr, GSCALE: tl.constexpr, CHECK: tl.constexpr,
    GATE: tl.constexpr, SCALED_UX: tl.constexpr,
):
    """Grid (chunks, H): fully parallel. From the chunk's start state S, end-state gradient dS', u and dX (all
    stored by the sequential kernels) writes dr, dw, dk, da, db of the chunk (formulas in the module docstring).
    With GSCALE, dS' and dX arrive scaled, dO is scaled on load and the results unscaled on store (_grad_scale).
    CHECK: flag[0] = 1 if a result went non-finite (dw sums all four factor gradients: an inf or NaN in any reaches
    it, inf * 0 included). GATE, the tf32 fallback: grid (min(chunks, GATE_PROGRAMS), H), each program walking
    chunks with a stride, so that the launch costs little when the flag is clear (65536 programs that only read
    it took 42 us on the H100). SCALED_UX: u and dX come with per-column exponents (uexp, dxexp: _store_scaled)."""
    i_c, i_h = tl.program_id(0), tl.program_id(1)
    if GATE:  # (the dS pass's fallback counted it)
        if tl.load(flag) == 0:
            return
        for c in range(i_c, n_chunks, tl.num_programs(0)):
            _grad_chunk(c, i_h, r, w, k, v, a, b, do, states, dstates, ubuf, dxbuf, uexp, dxexp, dr, dw, dk, da, db,
                        cu_seqlens, state_offsets, chunk_index, T, gmax, flag,
                        H, K, V, BT, IS_VARLEN, INV_PREC, DOT, DOTS, GSCALE, CHECK, SCALED_UX)
    else:
        _grad_chunk(i_c, i_h, r, w, k, v, a, b, do, states, dstates, ubuf, dxbuf, uexp, dxexp, dr, dw, dk, da, db,
                    cu_seqlens, state_offsets, chunk_index, T, gmax, flag,
                    H, K, V, BT, IS_VARLEN, INV_PREC, DOT, DOTS, GSCALE, CHECK, SCALED_UX)


@triton.jit
def _grad_chunk(
    i_c, i_h, r, w, k, v, a, b, do, states, dstates, ubuf, dxbuf, uexp, dxexp, dr, dw, dk, da, db, cu_seqlens,
    state_offsets, chunk_index, T, gmax, flag,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, IS_VARLEN: tl.constexpr,
    INV_PREC: tl.constexpr, DOT: tl.constexpr, DOTS: tl.constexpr, GSCALE: tl.constexpr, CHECK: tl.constexpr,
    SCALED_UX: tl.constexpr,
):
    """The gradient kernel's work for chunk i_c of head i_h."""
    if IS_VARLEN:
        i_n = tl.load(chunk_index + 2 * i_c)
        i_t = tl.load(chunk_index + 2 * i_c + 1)
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = (tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos).to(tl.int32)
        s_off = tl.load(state_offsets + i_n).to(tl.int64)
    else:
        NT = tl.cdiv(T, BT)
        i_n = i_c // NT
        i_t = i_c % NT
        bos = (i_n * T).to(tl.int64)
        s_off = (i_n * (NT + 1)).to(tl.int64)
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, K)
    o_v = tl.arange(0, V)
    s_ptrs = ((s_off + i_t) * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :]
    t0 = i_t * BT
    m_t = (t0 + o_t) < T
    base = (bos + t0) * H * K + i_h * K
    a_s, r_s, b_i, k_i, b_e, k_e, eg, egp, eng, g_last, egm, A_ab, A_ak, A_rb, A_rk = _chunk_prep(
        r + base, w + base, k + base, a + base, b + base, m_t, o_t, H * K, K, DOT)
    vbase = (bos + t0) * H * V + i_h * V
    v_offs = o_t[:, None] * H * V + o_v[None, :]
    vv = tl.load(v + vbase + v_offs, mask=m_t[:, None], other=0).to(tl.float32)  # [BT, V]
    gsc, ginv = 1.0, 1.0
    if GSCALE:
        gsc, ginv = _grad_scale(gmax)
    dO = tl.load(do + vbase + v_offs, mask=m_t[:, None], other=0).to(tl.float32) * gsc  # [BT, V]
    strict = o_t[:, None] > o_t[None, :]
    incl = o_t[:, None] >= o_t[None, :]

    # u (forward) and dX (reverse pass) were stored by the sequential kernels: no triangular solve here
    if SCALED_UX:
        e_off = ((s_off + i_t) * H + i_h) * V
        u = _load_scaled(ubuf + vbase + v_offs, m_t[:, None], uexp + e_off, o_v)  # [BT, V]
        dX = _load_scaled(dxbuf + vbase + v_offs, m_t[:, None], dxexp + e_off, o_v)  # [BT, V]
    else:
        u = tl.load(ubuf + vbase + v_offs, mask=m_t[:, None], other=0).to(tl.float32)  # [BT, V]
        dX = tl.load(dxbuf + vbase + v_offs, mask=m_t[:, None], other=0).to(tl.float32)  # [BT, V]
    dA_ab = tl.where(strict, _mm(dX, tl.trans(u), DOT), 0.0)
    dA_ak = tl.where(strict, _mm(dX, tl.trans(vv), DOT), 0.0)
    dA_rb = tl.where(incl, _mm(dO, tl.trans(u), DOT), 0.0)
    dA_rk = tl.where(incl, _mm(dO, tl.trans(vv), DOT), 0.0)
    # phases ordered so that few tiles are live at once (registers bound this kernel): the gradient dS of the end
    # state and the start state S are loaded where they are used, and each result is stored as soon as it is known
    offs = o_t[:, None] * H * K + o_k[None, :]
    m = m_t[:, None]
    dS = tl.load(dstates + s_ptrs).to(tl.float32)  # [K, V] gradient of the chunk's end state
    egl = tl.exp(g_last)
    # S' = e^{g_C} (S + b_i^T u + k_i^T V): the e^{g_C} of dZ = e^{g_C} dS' is applied after the products, and
    # dg_C = rowsum(dS' * S') is assembled from the same products, so no extra [K, V] tile is live
    uS = _mm(u, tl.trans(dS), DOTS)  # [BT, K]
    vS = _mm(vv, tl.trans(dS), DOTS)  # [BT, K]
    egl_m = (egl / egm)[None, :]  # S' = e^{g_C} S + e^{g_C - g_m} (b_i^T u + k_i^T V)
    # b_e = b_i e^{g_C - g_m}, k_e likewise: from the tiles that are live anyway (fewer registers)
    dg_last = tl.sum(b_i * uS + k_i * vS, axis=0) * (egl / egm)  # [K] (+ e^{g_C} rowsum(dS S) below)
    d_bi = _mm(tl.trans(dA_ab), a_s, DOT) + _mm(tl.trans(dA_rb), r_s, DOT) + uS * egl_m
    d_ki = _mm(tl.trans(dA_ak), a_s, DOT) + _mm(tl.trans(dA_rk), r_s, DOT) + vS * egl_m
    tl.store(db + base + offs, (d_bi * eng * ginv).to(db.dtype.element_ty), mask=m)
    tl.store(dk + base + offs, (d_ki * eng * ginv).to(dk.dtype.element_ty), mask=m)
    dg = -(d_bi * b_i + d_ki * k_i)
    S = tl.load(states + s_ptrs).to(tl.float32)  # [K, V] the chunk's start state
    dg_last += egl * tl.sum(dS * S, axis=1)
    # the state enters as e^{g_m} S (factors relative to the mid-chunk decay, _chunk_prep)
    d_rs = _mm(dO, tl.trans(S), DOTS) * egm[None, :] + _mm(dA_rb, b_i, DOT) + _mm(dA_rk, k_i, DOT)
    d_as = _mm(dX, tl.trans(S), DOTS) * egm[None, :] + _mm(dA_ab, b_i, DOT) + _mm(dA_ak, k_i, DOT)
    tl.store(dr + base + offs, (d_rs * eg * ginv).to(dr.dtype.element_ty), mask=m)
    tl.store(da + base + offs, (d_as * egp * ginv).to(da.dtype.element_ty), mask=m)
    ga = d_as * a_s
    dg += d_rs * r_s + ga
    # reverse cumulative sum over the chunk: sum_{t >= s} dg_t
    dwc = tl.cumsum(dg, axis=0, reverse=True) + dg_last[None, :] - ga
    tl.store(dw + base + offs, (dwc * ginv).to(dw.dtype.element_ty), mask=m)
    if CHECK:
        _flag_nonfinite(flag, dwc)


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


def _fwd(r, w, k, v, a, b, h0, output_final_state, cu_seqlens, save, cfg=None, flag=None):
    """Forward launch(es). With ``save`` also returns what the backward reads: (chunk-start states [NS, H, K, V],
    u [B, T, H, V] in _ux_dtype, u's exponents [NS, H, V] or None: _exp_buffer). Returns (o, final state or None,
    saved or None, layout). With fp16 products the launch is followed by its gated tf32 fallback (CONFIG comment),
    always the sequential kernel. ``flag``: the check's int32 [1] zero tensor (allocated here when None; the
    autograd function keeps it for the backward)."""
    cfg = cfg or CONFIG
    flag, cfg32 = _fp16_check(cfg, r, flag)
    B, T, H, K = r.shape
    V = v.shape[-1]
    bt = cfg["BT"]
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    o = torch.empty_like(v, dtype=r.dtype)
    ht = r.new_empty(N, H, K, V, dtype=torch.float32) if output_final_state else None
    offsets, ns, n_chunks, chunk_index = _layout(cu_seqlens, B, T, bt)
    state_dtype = cfg["STATE_DTYPE"]
    if state_dtype == "auto":
        state_dtype = torch.float32 if r.dtype == torch.float32 else torch.bfloat16
    states = r.new_empty(ns, H, K, V, dtype=state_dtype) if save else None
    ubuf = torch.empty_like(v, dtype=_ux_dtype(cfg, r)) if save else None
    uexp = _exp_buffer(flag, ns, H, V, r.device) if save else None
    layout = (offsets, n_chunks, chunk_index)
    BV = _pick_bv(cfg["BV_FWD"], V, N * H, r.device)

    def launch(c, gate):
        LAST_KERNELS["fwd_fallback" if gate else "fwd"] = _wkv7_fwd_kernel[(N * H, V // BV)](
            r, w, k, v, a, b, o, h0, ht, states, ubuf, uexp, cu_seqlens, offsets, T, None, None, flag,
            _counter(r.device),
            H=H, K=K, V=V, BT=bt, BV=BV,
            USE_H0=h0 is not None, STORE_HT=output_final_state, SAVE_STATES=save, IS_VARLEN=cu_seqlens is not None,
            INV_PREC=c["INV_PREC"], STORE_U=save, ONE_CHUNK=False, DOT=_dot(c, r), DOTS=_dot(c, r, "DOT_STATE"),
            CHECK=flag is not None and not gate, GATE=gate, SCALE_U=gate and uexp is not None,
            num_warps=c["WARPS_FWD"], num_stages=c["STAGES"],
        )

    from .triton_seqpar import seqpar_fwd, use_seqpar

    if cfg.get("SEQPAR", "off") != "off" and use_seqpar(cfg, N, H, B * T, r.device, training=save):
        seqpar_fwd(r, w, k, v, a, b, o, h0, ht, states, ubuf, cu_seqlens, layout, cfg, flag)  # same outputs
    else:
        launch(cfg, gate=False)
    if flag is not None:
        launch(cfg32, gate=True)
    return o, ht, ((states, ubuf, uexp) if save else None), layout


def _bwd_dstate(r, w, k, a, b, layout, do, dht, need_dh0, cu_seqlens, state_dtype, cfg, gmax=None, flag=None,
                gate=False):
    """The reverse pass: ((dstates [NS, H, K, V], dX [B, T, H, V], dX's exponents or None), dv, dh0 or None).
    ``gmax``: max |dO| (fp32 [1]) for fp16 products; ``flag``: their check; ``gate``: the tf32 fallback."""
    B, T, H, K = r.shape
    V = do.shape[-1]
    offsets, n_chunks, chunk_index = layout
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    dv = torch.empty_like(do, dtype=r.dtype)
    dh0 = r.new_empty(N, H, K, V, dtype=torch.float32) if need_dh0 else None
    dstates = r.new_empty(n_chunks + N, H, K, V, dtype=state_dtype)
    dxbuf = torch.empty_like(do, dtype=_ux_dtype(cfg, r))
    dxexp = _exp_buffer(flag, n_chunks + N, H, V, r.device)
    return _bwd_dstate_into(r, w, k, a, b, layout, do, dht, cu_seqlens, cfg, (dstates, dxbuf, dxexp), dv, dh0, gmax,
                            flag, gate)


def _bwd_dstate_into(r, w, k, a, b, layout, do, dht, cu_seqlens, cfg, dsaved, dv, dh0, gmax, flag, gate):
    """_bwd_dstate into given buffers (the fallback rewrites those of the fp16 launch)."""
    B, T, H, K = r.shape
    V = do.shape[-1]
    offsets, n_chunks, chunk_index = layout
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    dstates, dxbuf, dxexp = dsaved
    BV = _pick_bv(cfg["BV_DS"], V, N * H, r.device)
    LAST_KERNELS["bwd_dstate_fallback" if gate else "bwd_dstate"] = _wkv7_bwd_dstate_kernel[(N * H, V // BV)](
        r, w, k, a, b, do, dht, dstates, dxbuf, dxexp, dv, dh0, cu_seqlens, offsets, T, gmax, flag,
        _counter(r.device)[1:],
        H=H, K=K, V=V, BT=cfg["BT"], BV=BV,
        USE_DHT=dht is not None, STORE_DH0=dh0 is not None, IS_VARLEN=cu_seqlens is not None,
        INV_PREC=cfg["INV_PREC"], DOT=_dot(cfg, r), DOTS=_dot(cfg, r, "DOT_STATE"), GSCALE=gmax is not None,
        CHECK=flag is not None and not gate, GATE=gate, SCALE_X=gate and dxexp is not None,
        num_warps=cfg["WARPS_DS"], num_stages=cfg["STAGES"],
    )
    return (dstates, dxbuf, dxexp), dv, dh0


def _bwd_grad(r, w, k, v, a, b, saved, dsaved, layout, do, cu_seqlens, cfg, gmax=None, flag=None, grads=None,
              gate=False):
    """The chunk-parallel gradients: (dr, dw, dk, da, db), into ``grads`` when given. ``gmax`` / ``flag`` / ``gate``
    as in _bwd_dstate (the same gmax: dS' and dX arrive scaled by it)."""
    B, T, H, K = r.shape
    V = v.shape[-1]
    offsets, n_chunks, chunk_index = layout
    (states, ubuf, uexp), (dstates, dxbuf, dxexp) = saved, dsaved
    dr, dw, dk, da, db = grads if grads is not None else (torch.empty_like(x) for x in (r, w, k, a, b))
    if n_chunks > 0:
        grid = (min(n_chunks, GATE_PROGRAMS) if gate else n_chunks, H)
        LAST_KERNELS["bwd_grad_fallback" if gate else "bwd_grad"] = _wkv7_bwd_grad_kernel[grid](
            r, w, k, v, a, b, do, states, dstates, ubuf, dxbuf, uexp, dxexp, dr, dw, dk, da, db, cu_seqlens, offsets,
            chunk_index, T, n_chunks, gmax, flag,
            H=H, K=K, V=V, BT=cfg["BT"], IS_VARLEN=cu_seqlens is not None,
            INV_PREC=cfg["INV_PREC"], DOT=_dot(cfg, r), DOTS=_dot(cfg, r, "DOT_STATE"), GSCALE=gmax is not None,
            CHECK=flag is not None and not gate, GATE=gate, SCALED_UX=gate and uexp is not None,
            num_warps=cfg["WARPS_GRAD"], **_maxnreg(cfg.get("MAXNREG_GRAD")),
        )
    return dr, dw, dk, da, db


def _bwd(r, w, k, v, a, b, saved, layout, do, dht, need_dh0, cu_seqlens, cfg=None, fwd_flag=None):
    """Both backward kernels: (dr, dw, dk, dv, da, db, dh0 or None); with fp16 products both are followed by their
    gated tf32 fallbacks, which rewrite every output if either fp16 launch, or the forward (``fwd_flag``), flagged
    a non-finite value."""
    cfg = cfg or CONFIG
    flag, cfg32 = _fp16_check(cfg, r, fwd_flag.clone() if fwd_flag is not None else None)
    gmax = _dout_max(do) if flag is not None else None
    dsaved, dv, dh0 = _bwd_dstate(r, w, k, a, b, layout, do, dht, need_dh0, cu_seqlens, saved[0].dtype, cfg, gmax,
                                  flag)
    grads = _bwd_grad(r, w, k, v, a, b, saved, dsaved, layout, do, cu_seqlens, cfg, gmax, flag)
    if flag is not None:  # the counter is bumped once per fallback: by the dS pass's first program
        _bwd_dstate_into(r, w, k, a, b, layout, do, dht, cu_seqlens, cfg32, dsaved, dv, dh0, None, flag, True)
        _bwd_grad(r, w, k, v, a, b, saved, dsaved, layout, do, cu_seqlens, cfg32, None, flag, grads, gate=True)
    dr, dw, dk, da, db = grads
    return dr, dw, dk, dv, da, db, dh0


class WKV7TritonFunction(torch.autograd.Function):
    """Autograd wrapper: the forward saves the chunk-start states and u, which the backward reads."""

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, initial_state, output_final_state, cu_seqlens, save):
        # ``save`` is decided by the caller: ctx.needs_input_grad stays True under torch.no_grad(), and saving the
        # states for a backward that never comes costs ~7% of the forward
        cfg = dict(CONFIG)
        flag, _ = _fp16_check(cfg, r)
        o, ht, saved, layout = _fwd(r, w, k, v, a, b, initial_state, output_final_state, cu_seqlens, save, cfg, flag)
        if save:
            offsets, n_chunks, chunk_index = layout
            ctx.save_for_backward(r, w, k, v, a, b, *saved, offsets, chunk_index, cu_seqlens)
            ctx.n_chunks = n_chunks
            ctx.cfg = cfg
            ctx.has_h0 = initial_state is not None
            ctx.fwd_flag = flag
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        r, w, k, v, a, b, states, ubuf, uexp, offsets, chunk_index, cu_seqlens = ctx.saved_tensors
        dht = dht.contiguous().float() if dht is not None else None
        dr, dw, dk, dv, da, db, dh0 = _bwd(r, w, k, v, a, b, (states, ubuf, uexp),
                                           (offsets, ctx.n_chunks, chunk_index),
                                           do.contiguous(), dht, ctx.has_h0, cu_seqlens, ctx.cfg, ctx.fwd_flag)
        return dr, dw, dk, dv, da, db, dh0, None, None, None


def wkv7_triton(
    r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """WKV-7 with the Triton kernels; same contract as ``reference.wkv7_naive`` (see dispatch.wkv7).

    Inputs [B, T, H, K] in bf16, fp16 or fp32 (K = V, a power of two >= 16); ``initial_state`` [N, H, K, V]
    (computed in fp32; its gradient is returned in its dtype); ``cu_seqlens`` [N+1] with B == 1 for packed
    sequences of any lengths. Returns (o [B, T, H, V] in r's dtype, final state [N, H, K, V] fp32 or None).
    """
    K, V = r.shape[-1], v.shape[-1]
    if K != triton.next_power_of_2(K) or V != triton.next_power_of_2(V) or min(K, V) < 16:
        raise ValueError(f"wkv7_triton: head sizes must be powers of two >= 16, got K={K}, V={V}")
    r, w, k, v, a, b = (x.contiguous() for x in (r, w, k, v, a, b))
    h0 = None
    if initial_state is not None:
        h0 = initial_state.float().contiguous()  # differentiable cast: the gradient flows back in the caller's dtype
    if cu_seqlens is not None:
        cu_seqlens = cu_seqlens.to(device=r.device, dtype=torch.int32).contiguous()
    save = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (r, w, k, v, a, b, initial_state))
    return WKV7TritonFunction.apply(r, w, k, v, a, b, h0, output_final_state, cu_seqlens, save)
