"""The sequence-parallel WKV-7 forward and state-gradient pass (triton_seqpar.py, CONFIG["SEQPAR"] = "on") vs the
fp64 reference and vs what the sequential kernels store for the gradient kernel, on the CPU through Triton's
interpreter (TRITON_INTERPRET=1). Segments of 1 and 2 chunks, so that short inputs span several segments, partial
last segments and partial last chunks.
"""

from __future__ import annotations

import pytest
import torch

from modrwkv.kernels import triton_chunk as tc
from modrwkv.kernels.reference import wkv7_naive
from modrwkv.kernels.triton_seqpar import seqpar_wanted

from .test_wkv7_triton import DEVICE, INTERPRET, TOL_FP32, make_inputs, rel, run_both


@pytest.fixture(params=[1, 2])
def seqpar(monkeypatch, request):
    """SEQPAR on with segments of 1 or 2 chunks; the kernels record their launches, so the test can check that
    both sequence-parallel passes ran."""
    monkeypatch.setitem(tc.CONFIG, "SEQPAR", "on")
    monkeypatch.setitem(tc.CONFIG, "SEQPAR_SEG", request.param)
    for name in ("seqpar_b", "seqpar_bwd_b"):
        tc.LAST_KERNELS.pop(name, None)
    yield request.param
    assert "seqpar_b" in tc.LAST_KERNELS, "the sequence-parallel forward did not run"


def _check(errs, seed, tol=TOL_FP32):
    bad = {n: e for n, e in errs.items() if not e < tol}
    assert not bad, f"seed {seed}: {errs}"
    assert "seqpar_bwd_b" in tc.LAST_KERNELS, "the sequence-parallel state-gradient pass did not run"


@pytest.mark.parametrize("B,T,H,K,use_h0", [(2, 37, 2, 16, True), (1, 100, 1, 32, False)])
def test_dense_fp32(seqpar, B, T, H, K, use_h0):
    seed = int(torch.randint(0, 2**31 - 1, ()))  # fresh inputs every run; the seed is in the failure message
    xs = make_inputs(B, T, H, K, seed)
    h0 = torch.randn(B, H, K, K, generator=torch.Generator().manual_seed(seed + 2)).to(DEVICE) if use_h0 else None
    _check(run_both(xs, h0, None, seed), seed)


def test_varlen_fp32(seqpar):
    seed = int(torch.randint(0, 2**31 - 1, ()))
    lengths = [5, 16, 0, 23, 1, 70]  # not multiples of the chunk, an empty sequence, a single token, 5 chunks
    cu = torch.tensor([0] + lengths).cumsum(0).to(DEVICE, torch.int32)
    xs = make_inputs(1, sum(lengths), 2, 32, seed)  # K = 32: two V-blocks of 16 in the state pass
    h0 = torch.randn(len(lengths), 2, 32, 32, generator=torch.Generator().manual_seed(seed + 2)).to(DEVICE)
    _check(run_both(xs, h0, cu, seed), seed)


def test_bf16_gradients_varlen(seqpar):
    """bf16 inputs: bf16 saved states, fp16 products with the dO scale and the overflow check."""
    seed = int(torch.randint(0, 2**31 - 1, ()))
    lengths = [20, 0, 53]
    cu = torch.tensor([0] + lengths).cumsum(0).to(DEVICE, torch.int32)
    xs = make_inputs(1, sum(lengths), 2, 16, seed, dtype=torch.bfloat16)
    h0 = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(seed + 2)).to(DEVICE)
    _check(run_both(xs, h0, cu, seed), seed, tol=1e-2)


def test_inference_no_state(seqpar):
    """No grad, no initial or final state: nothing saved."""
    seed = int(torch.randint(0, 2**31 - 1, ()))
    xs = make_inputs(1, 40, 2, 16, seed)
    with torch.no_grad():
        o, ht = tc.wkv7_triton(*xs)
    assert ht is None and o.dtype == torch.float32
    ro, _ = wkv7_naive(*[x.double().cpu() for x in xs])
    assert rel(o, ro) < TOL_FP32, f"seed {seed}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_saved_tensors_match_sequential(dtype):
    """What the gradient kernel reads equals the sequential kernels' up to rounding (tf32 on a GPU; bf16 states:
    up to one bf16 rounding): the forward's o, final state, chunk-start states and u, and the state-gradient
    pass's per-chunk state gradients, dX, dv and dh0 (with a final-state gradient, and the dO scale for bf16)."""
    seed = int(torch.randint(0, 2**31 - 1, ()))
    lengths = [17, 0, 32, 3, 80]
    cu = torch.tensor([0] + lengths).cumsum(0).to(DEVICE, torch.int32)
    xs = make_inputs(1, sum(lengths), 2, 16, seed, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 2)
    h0 = torch.randn(5, 2, 16, 16, generator=g).to(DEVICE)
    do = torch.randn(xs[3].shape, generator=g).to(DEVICE, dtype)
    dht = torch.randn(5, 2, 16, 16, generator=g).to(DEVICE)
    outs = {}
    for mode in ("off", "on"):
        cfg = dict(tc.CONFIG, SEQPAR=mode, SEQPAR_SEG=2)
        flag, _ = tc._fp16_check(cfg, xs[0])
        gmax = tc._dout_max(do) if flag is not None else None
        o, ht, (states, ubuf, _), layout = tc._fwd(*xs, h0, True, cu, True, cfg, flag)
        (dstates, dx, _), dv, dh0 = tc._bwd_dstate(*xs[:3], *xs[4:], layout, do, dht, True, cu, states.dtype, cfg,
                                                   gmax, flag)
        n = layout[1] + len(lengths)  # only the per-chunk slots of dstates are written
        valid = torch.ones(n, dtype=torch.bool)
        valid[(layout[0] + torch.tensor(lengths).add(15).div(16, rounding_mode="floor")).long()] = False
        outs[mode] = (o, ht, states, ubuf, dstates[valid.to(dstates.device)], dx, dv, dh0)
        assert flag is None or int(flag) == 0
    # fp32: exact fp32 products in the interpreter; on a GPU both paths use tf32 products, grouped differently
    tol = (1e-5 if INTERPRET else 1e-3) if dtype == torch.float32 else 8e-3
    for name, x, y in zip(("o", "ht", "states", "u", "dstates", "dX", "dv", "dh0"), outs["on"], outs["off"]):
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert rel(x, y) < tol, f"seed {seed}: {name} {rel(x, y):.2e}"
    assert outs["on"][2].dtype == (torch.float32 if dtype == torch.float32 else torch.bfloat16)


def test_auto_heuristic():
    assert seqpar_wanted("on", 10_000, 1, 132) and not seqpar_wanted("off", 1, 1e6, 132)
    assert seqpar_wanted("auto", 32, 32768, 132)  # B=1 H=32 T=32768: 32 pairs for 132 multiprocessors
    assert seqpar_wanted("auto", 64, 16384, 132)  # B=2 H=32 T=16384
    assert not seqpar_wanted("auto", 256, 4096, 132)  # B=8 H=32 T=4096: the sequential kernels fill the GPU
    assert not seqpar_wanted("auto", 32, 1000, 132)  # short sequences: the extra launches are not worth it
    assert not seqpar_wanted("auto", 128, 16384, 132)  # 128 pairs: about one per multiprocessor
    with pytest.raises(ValueError):
        seqpar_wanted("yes", 1, 1, 1)
