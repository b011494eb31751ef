"""Triton WKV-7 kernels on a real GPU at real sizes, bf16, vs an fp64 reference (relative error <= 5e-3).

Skipped without CUDA. Run on the device machine: PYTHONPATH=src python -m pytest -q -m gpu tests/gpu/test_wkv7_gpu.py
"""

from __future__ import annotations

import pytest
import torch

from modrwkv.kernels.chunked import wkv7_chunked
from modrwkv.kernels.reference import wkv7_naive, wkv7_step_torch
from modrwkv.kernels.testing import wkv7_inputs

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TOL = 5e-3


def make_inputs(B, T, H, K, seed, dtype=torch.bfloat16):
    """[r, w, k, v, a, b] on the GPU in RWKV-7's ranges (modrwkv.kernels.testing)."""
    return wkv7_inputs(B, T, H, K, seed, dtype, device="cuda").args


def rel(x, ref):
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()


def compare(xs, h0, cu, reference, seed):
    from modrwkv.kernels.triton_chunk import wkv7_triton

    g = torch.Generator(device="cuda").manual_seed(seed + 1)
    n = xs[0].shape[0] if cu is None else cu.numel() - 1
    H, K = xs[0].shape[2], xs[0].shape[3]
    do = torch.randn(xs[3].shape, device="cuda", generator=g).to(xs[3].dtype)
    dht = torch.randn(n, H, K, K, device="cuda", generator=g)
    xin = [x.clone().requires_grad_() for x in xs] + ([h0.clone().requires_grad_()] if h0 is not None else [])
    o, ht = wkv7_triton(*xin[:6], initial_state=xin[6] if h0 is not None else None, output_final_state=True,
                        cu_seqlens=cu)
    grads = torch.autograd.grad([o, ht], xin, [do, dht])
    ref_in = [x.double().requires_grad_() for x in xin]
    ro, rht = reference(*ref_in[:6], initial_state=ref_in[6] if h0 is not None else None, output_final_state=True,
                        cu_seqlens=cu)
    ref_g = torch.autograd.grad([ro, rht], ref_in, [do.double(), dht.double()])
    errs = {"o": rel(o, ro), "ht": rel(ht, rht)}
    errs.update({f"d{n}": rel(a, b) for n, a, b in zip(["r", "w", "k", "v", "a", "b", "h0"], grads, ref_g)})
    assert all(e <= TOL for e in errs.values()), f"seed {seed}: {errs}"
    return errs


@pytest.mark.parametrize("B,T,H", [(2, 4096, 8), (1, 2055, 16)])
def test_dense_bf16(B, T, H):
    seed = int(torch.randint(0, 2**31 - 1, ()))
    xs = make_inputs(B, T, H, 64, seed)
    h0 = torch.randn(B, H, 64, 64, device="cuda")
    print(compare(xs, h0, None, wkv7_chunked, seed))


def test_dense_bf16_vs_naive():
    """The chunked fp64 reference is itself checked against the naive recurrence here (moderate length)."""
    seed = int(torch.randint(0, 2**31 - 1, ()))
    xs = make_inputs(2, 333, 4, 64, seed)
    print(compare(xs, None, None, wkv7_naive, seed))


def test_varlen_bf16():
    seed = int(torch.randint(0, 2**31 - 1, ()))
    lengths = [1, 17, 1000, 0, 2500, 33, 15]
    cu = torch.tensor([0] + lengths, device="cuda").cumsum(0).to(torch.int32)
    xs = make_inputs(1, sum(lengths), 8, 64, seed)
    h0 = torch.randn(len(lengths), 8, 64, 64, device="cuda")
    print(compare(xs, h0, cu, wkv7_chunked, seed))


@pytest.mark.parametrize("seqpar", ["off", "on"])
def test_varlen_many_sequences(monkeypatch, seqpar):
    """More (sequence, head) pairs than a CUDA grid's y axis holds (65535): 2100 short sequences x 32 heads, and in
    the sequence-parallel output pass 8 x 4096-token chunks x 32 heads. Launch axes must put these in grid x."""
    from modrwkv.kernels import triton_chunk as tc

    monkeypatch.setitem(tc.CONFIG, "SEQPAR", seqpar)
    seed = int(torch.randint(0, 2**31 - 1, ()))
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 5, (2100,), generator=g).tolist()
    cu = torch.tensor([0] + lengths, device="cuda").cumsum(0).to(torch.int32)
    xs = make_inputs(1, sum(lengths), 32, 64, seed)
    print(compare(xs, None, cu, wkv7_chunked, seed))
    if seqpar == "on":
        xs = make_inputs(8, 4096, 32, 64, seed)
        o_par, _ = tc.wkv7_triton(*xs)
        monkeypatch.setitem(tc.CONFIG, "SEQPAR", "off")
        o_seq, _ = tc.wkv7_triton(*xs)
        # each within ~2.5e-3 of the reference; the sequence-parallel state maps use tf32, not fp16/bf16 products
        assert rel(o_par, o_seq) < 5e-3, rel(o_par, o_seq)


@pytest.mark.parametrize("cu_lengths", [None, [1, 3000, 0, 5000, 17]])
def test_seqpar_bf16(monkeypatch, cu_lengths):
    """The sequence-parallel forward and state-gradient pass (CONFIG["SEQPAR"] = "on", triton_seqpar.py) at the
    size they are for: one long sequence of few heads (B=1 T=8192 H=8), dense and varlen, with initial states."""
    from modrwkv.kernels import triton_chunk as tc

    monkeypatch.setitem(tc.CONFIG, "SEQPAR", "on")
    tc.LAST_KERNELS.pop("seqpar_b", None)
    tc.LAST_KERNELS.pop("seqpar_bwd_b", None)
    seed = int(torch.randint(0, 2**31 - 1, ()))
    cu = None
    if cu_lengths is not None:
        cu = torch.tensor([0] + cu_lengths, device="cuda").cumsum(0).to(torch.int32)
    xs = make_inputs(1, 8192 if cu is None else sum(cu_lengths), 8, 64, seed)
    h0 = torch.randn(1 if cu is None else len(cu_lengths), 8, 64, 64, device="cuda")
    print(compare(xs, h0, cu, wkv7_chunked, seed))
    assert "seqpar_b" in tc.LAST_KERNELS and "seqpar_bwd_b" in tc.LAST_KERNELS, "the sequence-parallel path did not run"


@pytest.mark.parametrize("N", [1, 16, 64])
def test_decode_bf16(N):
    from modrwkv.kernels.triton_decode import wkv7_step_triton

    seed = int(torch.randint(0, 2**31 - 1, ()))
    xs = [x[:, 0] for x in make_inputs(N, 1, 32, 64, seed)]
    st = torch.randn(N, 32, 64, 64, device="cuda")
    o, s = wkv7_step_triton(*xs, st)
    ro, rs = wkv7_step_torch(*[x.double() for x in xs], st.double())
    assert rel(o, ro) <= TOL and rel(s, rs) <= 1e-5, f"seed {seed}"
