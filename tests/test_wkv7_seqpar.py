"""The sequence-parallel WKV-7 forward (triton_seqpar.py, CONFIG["SEQPAR"] = "on") vs the fp64 reference and vs the
sequential forward's saved tensors, on the CPU through Triton's interpreter (TRITON_INTERPRET=1). The backward is
triton_chunk's, unchanged, fed by the seqpar forward's saved states and u.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

if not torch.cuda.is_available():
    # no GPU: Triton's interpreter; only works if no kernel module was imported before (see test_wkv7_triton.py)
    os.environ.setdefault("TRITON_INTERPRET", "1")
    for _name in ("modrwkv.kernels.triton_chunk", "modrwkv.kernels.triton_seqpar"):
        _mod = sys.modules.get(_name)
        if _mod is not None and type(_mod._wkv7_fwd_kernel).__name__ != "InterpretedFunction":
            pytest.skip("Triton kernels were imported before TRITON_INTERPRET=1 was set; export it before pytest",
                        allow_module_level=True)

triton = pytest.importorskip("triton")

from modrwkv.kernels import triton_chunk as tc  # noqa: E402
from modrwkv.kernels.reference import wkv7_naive  # noqa: E402
from modrwkv.kernels.triton_seqpar import seqpar_wanted  # noqa: E402

from .test_wkv7_triton import DEVICE, INTERPRET, TOL_FP32, make_inputs, rel, run_both  # noqa: E402


@pytest.fixture
def seqpar(monkeypatch):
    """SEQPAR on for the test; the kernels record their launches, so the test can check the path was taken."""
    monkeypatch.setitem(tc.CONFIG, "SEQPAR", "on")
    for name in ("seqpar_a", "seqpar_b", "seqpar_c"):
        tc.LAST_KERNELS.pop(name, None)
    yield
    assert "seqpar_b" in tc.LAST_KERNELS, "the sequence-parallel path did not run"


def _check(errs, seed, tol=TOL_FP32):
    bad = {n: e for n, e in errs.items() if not e < tol}
    assert not bad, f"seed {seed}: {errs}"


@pytest.mark.parametrize("B,T,H,K,use_h0", [(2, 37, 2, 16, True), (1, 50, 1, 32, False)])
def test_dense_fp32(seqpar, B, T, H, K, use_h0):
    seed = int(torch.randint(0, 2**31 - 1, ()))  # fresh inputs every run; the seed is in the failure message
    xs = make_inputs(B, T, H, K, seed)
    h0 = torch.randn(B, H, K, K, generator=torch.Generator().manual_seed(seed + 2)).to(DEVICE) if use_h0 else None
    _check(run_both(xs, h0, None, seed), seed)


def test_varlen_fp32(seqpar):
    seed = int(torch.randint(0, 2**31 - 1, ()))
    lengths = [5, 16, 0, 23, 1]  # not multiples of the chunk, an empty sequence, a single token
    cu = torch.tensor([0] + lengths).cumsum(0).to(DEVICE, torch.int32)
    xs = make_inputs(1, sum(lengths), 2, 32, seed)  # K = 32: two V-blocks of 16 in the state pass
    h0 = torch.randn(len(lengths), 2, 32, 32, generator=torch.Generator().manual_seed(seed + 2)).to(DEVICE)
    _check(run_both(xs, h0, cu, seed), seed)


def test_bf16_gradients_varlen(seqpar):
    """bf16 inputs: the saved states are bf16 (copied by the output pass from the fp32 state pass)."""
    seed = int(torch.randint(0, 2**31 - 1, ()))
    lengths = [20, 0, 33]
    cu = torch.tensor([0] + lengths).cumsum(0).to(DEVICE, torch.int32)
    xs = make_inputs(1, sum(lengths), 2, 16, seed, dtype=torch.bfloat16)
    h0 = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(seed + 2)).to(DEVICE)
    _check(run_both(xs, h0, cu, seed), seed, tol=1e-2)


def test_inference_no_state(seqpar):
    """No grad, no initial or final state: nothing saved, the states live only in the fp32 scratch buffer."""
    seed = int(torch.randint(0, 2**31 - 1, ()))
    xs = make_inputs(1, 40, 2, 16, seed)
    with torch.no_grad():
        o, ht = tc.wkv7_triton(*xs)
    assert ht is None and o.dtype == torch.float32
    ro, _ = wkv7_naive(*[x.double().cpu() for x in xs])
    assert rel(o, ro) < TOL_FP32, f"seed {seed}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_saved_tensors_match_sequential(dtype):
    """What the backward reads (chunk-start and final states, u), o and the final state equal the sequential
    forward's up to fp32 rounding (tf32 on a GPU; bf16 states: up to one bf16 rounding)."""
    seed = int(torch.randint(0, 2**31 - 1, ()))
    lengths = [17, 0, 32, 3]
    cu = torch.tensor([0] + lengths).cumsum(0).to(DEVICE, torch.int32)
    xs = make_inputs(1, sum(lengths), 2, 16, seed, dtype=dtype)
    h0 = torch.randn(4, 2, 16, 16, generator=torch.Generator().manual_seed(seed + 2)).to(DEVICE)
    outs = {}
    for mode in ("off", "on"):
        cfg = dict(tc.CONFIG, SEQPAR=mode)
        o, ht, (states, ubuf, _), layout = tc._fwd(*xs, h0, True, cu, True, cfg)
        outs[mode] = (o, ht, states, ubuf)
    # fp32: exact fp32 products in the interpreter; on a GPU both paths use tf32 products, grouped differently
    tol = (1e-5 if INTERPRET else 1e-3) if dtype == torch.float32 else 8e-3
    for name, x, y in zip(("o", "ht", "states", "u"), outs["on"], outs["off"]):
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert rel(x, y) < tol, f"seed {seed}: {name} {rel(x, y):.2e}"
    assert outs["on"][2].dtype == (torch.float32 if dtype == torch.float32 else torch.bfloat16)


def test_auto_heuristic():
    assert seqpar_wanted("on", 10_000, 1, 132) and not seqpar_wanted("off", 1, 1e6, 132)
    # the H100 timings (bench/RESULTS.md): only the inference forward of one long sequence gains
    assert seqpar_wanted("auto", 32, 32768, 132)  # B=1 H=32 T=32768: 6.33 vs 8.30 ms
    assert not seqpar_wanted("auto", 32, 32768, 132, training=True)  # fwd+bwd: 25.6 vs 22.3 ms
    assert not seqpar_wanted("auto", 64, 16384, 132)  # B=2 H=32 T=16384: 6.15 vs 5.23 ms
    assert not seqpar_wanted("auto", 256, 4096, 132)  # B=8 H=32 T=4096: 6.19 vs 1.86 ms
    assert not seqpar_wanted("auto", 32, 1000, 132)  # short sequences: three launches are not worth it
    with pytest.raises(ValueError):
        seqpar_wanted("yes", 1, 1, 1)
