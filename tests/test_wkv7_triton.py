"""Triton WKV-7 kernels vs the fp64 reference, run on the CPU through Triton's interpreter (TRITON_INTERPRET=1).

Small sizes keep this under a minute on two cores. The same checks at real sizes on a GPU live in
tests/gpu/test_wkv7_gpu.py.
"""

from __future__ import annotations

import os

import pytest
import torch

# without a GPU, tests/conftest.py has selected Triton's interpreter before any kernel module was imported
from modrwkv.kernels.reference import wkv7_naive, wkv7_step_torch
from modrwkv.kernels.testing import wkv7_inputs
from modrwkv.kernels.triton_chunk import wkv7_triton
from modrwkv.kernels.triton_decode import wkv7_step_triton

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
DEVICE = "cpu" if INTERPRET else "cuda"
# the interpreter computes fp32 dots exactly in fp32; on a GPU the state products use tf32 tensor cores
TOL_FP32 = 1e-4 if INTERPRET else 5e-3


def make_inputs(B, T, H, K, seed, dtype=torch.float32):
    """[r, w, k, v, a, b] on DEVICE in RWKV-7's ranges (modrwkv.kernels.testing)."""
    return wkv7_inputs(B, T, H, K, seed, dtype, device=DEVICE).args


def rel(x, ref):
    x, ref = x.detach().double().cpu(), ref.detach().double().cpu()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def run_both(xs, h0, cu_seqlens, seed):
    """Forward + backward of the Triton kernel and of the fp64 reference with the same random cotangents."""
    xs1 = [x.clone().requires_grad_() for x in xs]
    h01 = h0.clone().requires_grad_() if h0 is not None else None
    o, ht = wkv7_triton(*xs1, initial_state=h01, output_final_state=True, cu_seqlens=cu_seqlens)
    g = torch.Generator().manual_seed(seed + 1)
    do = torch.randn(o.shape, generator=g).to(o)
    dht = torch.randn(ht.shape, generator=g).to(ht)
    torch.autograd.backward([o, ht], [do, dht])

    xs2 = [x.detach().double().cpu().requires_grad_() for x in xs]
    h02 = h0.detach().double().cpu().requires_grad_() if h0 is not None else None
    ro, rht = wkv7_naive(*xs2, initial_state=h02, output_final_state=True,
                         cu_seqlens=cu_seqlens.cpu() if cu_seqlens is not None else None)
    torch.autograd.backward([ro, rht], [do.double().cpu(), dht.double().cpu()])
    errs = {"o": rel(o, ro), "ht": rel(ht, rht)}
    errs.update({f"d{n}": rel(x1.grad, x2.grad) for n, x1, x2 in zip("rwkvab", xs1, xs2)})
    if h0 is not None:
        errs["dh0"] = rel(h01.grad, h02.grad)
    return errs


@pytest.mark.parametrize("B,T,H,K,use_h0", [(2, 37, 2, 16, True), (1, 16, 1, 32, False), (1, 50, 1, 16, False)])
def test_dense_fp32(B, T, H, K, use_h0):
    seed = int(torch.randint(0, 2**31 - 1, ()))  # fresh inputs every run; the seed is in the failure message
    xs = make_inputs(B, T, H, K, seed)
    h0 = torch.randn(B, H, K, K, generator=torch.Generator().manual_seed(seed + 2)).to(DEVICE) if use_h0 else None
    errs = run_both(xs, h0, None, seed)
    bad = {n: e for n, e in errs.items() if not e < TOL_FP32}
    assert not bad, f"seed {seed}: {errs}"


def test_varlen_fp32():
    seed = int(torch.randint(0, 2**31 - 1, ()))
    lengths = [5, 16, 0, 23, 1]  # not multiples of the chunk, an empty sequence, a single token
    cu = torch.tensor([0] + lengths).cumsum(0).to(DEVICE, torch.int32)
    xs = make_inputs(1, sum(lengths), 2, 16, seed)
    h0 = torch.randn(len(lengths), 2, 16, 16, generator=torch.Generator().manual_seed(seed + 2)).to(DEVICE)
    errs = run_both(xs, h0, cu, seed)
    bad = {n: e for n, e in errs.items() if not e < TOL_FP32}
    assert not bad, f"seed {seed}: {errs}"


def test_bf16_no_state():
    seed = int(torch.randint(0, 2**31 - 1, ()))
    xs = make_inputs(1, 40, 2, 16, seed, dtype=torch.bfloat16)
    o, ht = wkv7_triton(*xs)
    assert ht is None and o.dtype == torch.bfloat16
    ro, _ = wkv7_naive(*[x.double().cpu() for x in xs])
    assert rel(o, ro) < 1e-2, f"seed {seed}"  # bf16 rounding of the output dominates


@pytest.mark.parametrize("dot", ["auto", "tf32"])
def test_bf16_gradients_varlen(monkeypatch, dot):
    """bf16 inputs keep the saved chunk states in bf16 (STATE_DTYPE "auto"): values and gradients stay near bf16
    rounding of the outputs, with the default fp16/bf16 products ("auto") and with tf32 products."""
    from modrwkv.kernels import triton_chunk as tc

    monkeypatch.setitem(tc.CONFIG, "DOT", dot)
    monkeypatch.setitem(tc.CONFIG, "DOT_STATE", dot)
    seed = int(torch.randint(0, 2**31 - 1, ()))
    lengths = [20, 33]
    cu = torch.tensor([0] + lengths).cumsum(0).to(DEVICE, torch.int32)
    xs = make_inputs(1, sum(lengths), 2, 16, seed, dtype=torch.bfloat16)
    h0 = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(seed + 2)).to(DEVICE)
    errs = run_both(xs, h0, cu, seed)
    bad = {n: e for n, e in errs.items() if not e < 1e-2}
    assert not bad, f"seed {seed}: {errs}"


def _fwd_bwd_errors(xs, do, dht=None, h0=None):
    """Triton forward + backward against the fp64 reference: relative errors of o and every input gradient."""
    xs1 = [x.clone().requires_grad_() for x in xs]
    o, ht = wkv7_triton(*xs1, initial_state=h0, output_final_state=True)
    grads = torch.autograd.grad([o, ht] if dht is not None else [o], xs1, [do, dht] if dht is not None else [do])
    xs2 = [x.detach().double().requires_grad_() for x in xs]
    ro, rht = wkv7_naive(*xs2, initial_state=None if h0 is None else h0.double(), output_final_state=True)
    ref = torch.autograd.grad([ro, rht] if dht is not None else [ro], xs2,
                              [do.double(), dht.double()] if dht is not None else [do.double()])
    errs = {"o": rel(o, ro)}
    errs.update({f"d{n}": rel(a, b) for n, a, b in zip("rwkvab", grads, ref)})
    return errs


def test_fp16_products_tiny_gradients(monkeypatch):
    """bf16 inputs use fp16 intra-chunk products (CONFIG DOT "auto"); the output gradient is rescaled before them
    (max |dO| = 2^-4), so gradients far below fp16's range (1e-9 here) keep their precision."""
    from modrwkv.kernels import triton_chunk as tc

    monkeypatch.setitem(tc.CONFIG, "DOT", "auto")
    assert tc._dot(tc.CONFIG, torch.zeros(1, dtype=torch.bfloat16)).startswith("fp16")
    seed = int(torch.randint(0, 2**31 - 1, ()))
    xs = make_inputs(1, 45, 2, 32, seed, dtype=torch.bfloat16)
    do = (1e-9 * torch.randn(1, 45, 2, 32, generator=torch.Generator().manual_seed(seed))).to(DEVICE, torch.bfloat16)
    errs = _fwd_bwd_errors(xs, do)
    assert all(e < 1e-2 for e in errs.values()), f"seed {seed}: {errs}"  # (max() would pass a NaN)


@pytest.mark.parametrize("where", ["forward", "output", "backward"])
def test_fp16_overflow_recomputed_in_tf32(monkeypatch, where):
    """Values beyond fp16's range: the fp16 launch flags the non-finite result and the gated tf32 launch after it
    recomputes (counted on the device), so the results still match the reference instead of being inf/NaN."""
    from modrwkv.kernels import triton_chunk as tc

    monkeypatch.setitem(tc.CONFIG, "DOT", "fp16")
    monkeypatch.setattr(tc, "GATE_PROGRAMS", 2)  # the gradient fallback's programs walk 3 chunks with a stride
    before = tc.overflow_fallbacks()
    seed = int(torch.randint(0, 2**31 - 1, ()))
    g = torch.Generator().manual_seed(seed)
    xs = make_inputs(1, 40, 2, 16, seed, dtype=torch.bfloat16)
    do = torch.randn(1, 40, 2, 16, generator=g).to(DEVICE, torch.bfloat16)
    dht = None
    if where == "forward":  # large values and slow decay: the state, and u with it, pass 65504
        xs[3] = (xs[3].float() * 3000).to(torch.bfloat16)
        xs[2] = (xs[2].float() * 30).to(torch.bfloat16)
        xs[1] = (xs[1].float() * 0.01).to(torch.bfloat16)
    elif where == "output":  # r beyond fp16 (r never enters the state): only the output overflows
        xs[0] = (xs[0].float() * 1e5).to(torch.bfloat16)
    else:  # a final-state gradient 1e9 x dO: the state gradient overflows the backward's fp16 products
        dht = 1e9 * torch.randn(1, 2, 16, 16, generator=g).to(DEVICE)
    errs = _fwd_bwd_errors(xs, do, dht)
    after = tc.overflow_fallbacks()
    counter = "forward" if where == "output" else where  # that of the launch that fell back
    assert after[counter] == before.get(counter, 0) + 1, (before, after)  # ({} before any launch)
    assert all(e < 2e-2 for e in errs.values()), f"seed {seed}: {errs}"
    # and a call in range does not fall back
    _fwd_bwd_errors(make_inputs(1, 40, 2, 16, seed, dtype=torch.bfloat16), do)
    assert tc.overflow_fallbacks() == after
    # training logs the counts at each validation end
    from modrwkv.training.module import ModRWKVModule

    module = ModRWKVModule(torch.nn.Linear(3, 1), modality="text", optim={"lr": 1e-3})
    logged = {}
    module.log_dict = lambda metrics, **kwargs: logged.update(metrics)
    module._log_wkv7_fallbacks()
    assert logged[f"wkv7/fp16_fallbacks_{counter}"] == after[counter]
    # u and dX live in fp16 buffers: the fallback must have stored them scaled (values beyond 65504 here)
    with torch.no_grad():
        _, _, (_, ubuf, uexp), layout = tc._fwd(*xs, None, False, None, True, dict(tc.CONFIG))
        if where == "forward":
            assert ubuf.dtype == torch.float16 and uexp.max() > 0 and torch.isfinite(ubuf).all()
        elif where == "backward":
            flag = torch.ones(1, dtype=torch.int32, device=xs[0].device)  # as if an fp16 launch had overflowed
            (_, dxbuf, dxexp), _, _ = tc._bwd_dstate(*xs[:3], *xs[4:], layout, do, dht.float(), False, None,
                                                    torch.bfloat16, dict(tc.CONFIG), None, flag, gate=True)
            assert dxbuf.dtype == torch.float16 and dxexp.max() > 0 and torch.isfinite(dxbuf).all()


@pytest.mark.parametrize("K", [16, 64])
def test_decode_step(K):
    seed = int(torch.randint(0, 2**31 - 1, ()))
    xs = [x[:, 0] for x in make_inputs(3, 1, 2, K, seed)]  # [N, H, K]
    state = torch.randn(3, 2, K, K, generator=torch.Generator().manual_seed(seed)).to(DEVICE)
    o, s = wkv7_step_triton(*xs, state)
    ro, rs = wkv7_step_torch(*[x.double().cpu() for x in xs], state.double().cpu())
    assert rel(o, ro) < 1e-5 and rel(s, rs) < 1e-5, f"seed {seed}"  # no dots here: plain fp32 on any device
    assert s.dtype == torch.float32 and o.dtype == xs[0].dtype


def test_bench_ablations_patch_the_range_safety(monkeypatch):
    """bench/wkv7.py's sweep switches ("_no_check", "_ux") measure what the fp16 range safety costs: they must reach
    the host code the kernels' launches go through, and undo themselves."""
    from pathlib import Path

    from modrwkv.kernels import triton_chunk as tc

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    import wkv7 as bench_wkv7

    x = torch.zeros(1, dtype=torch.bfloat16)
    cfg = dict(tc.CONFIG, DOT="auto")
    with bench_wkv7._ablations(tc, {"_no_check": True, "_ux": "float32"}):
        assert tc._fp16_check(cfg, x) == (None, None)
        assert tc._fp16_check(cfg, x, torch.zeros(1, dtype=torch.int32)) == (None, None)  # the forward's call
        assert tc._ux_dtype(cfg, x) == torch.float32
        # and the whole launch path runs under them (the sweep times exactly this)
        xs = [t.requires_grad_() for t in make_inputs(1, 20, 1, 16, seed=3, dtype=torch.bfloat16)]
        o, _ = tc.wkv7_triton(*xs)
        o.float().sum().backward()
        assert torch.isfinite(o.float()).all() and all(torch.isfinite(t.grad.float()).all() for t in xs)
    assert tc._fp16_check(cfg, x)[0] is not None
    assert tc._ux_dtype(cfg, x) == torch.float16
