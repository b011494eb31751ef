"""The chunked PyTorch WKV-7 equals the naive recurrence: values and gradients, awkward shapes, varlen, states."""

import pytest
import torch

from modrwkv.kernels import wkv7
from modrwkv.kernels.testing import wkv7_inputs


def make_inputs(B, T, H, K, dtype=torch.float64, requires_grad=False):
    """[r, w, k, v, a, b] in RWKV-7's ranges (modrwkv.kernels.testing), from torch's global generator."""
    xs = wkv7_inputs(B, T, H, K, dtype=dtype, w_floor=1e-3).args
    if requires_grad:
        xs = [x.detach().requires_grad_() for x in xs]
    return xs


@pytest.mark.parametrize("T", [1, 15, 16, 37, 64])
def test_chunked_equals_naive_values(T):
    xs = make_inputs(2, T, 3, 8)
    s0 = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    o1, s1 = wkv7(*xs, initial_state=s0, output_final_state=True, backend="naive")
    o2, s2 = wkv7(*xs, initial_state=s0, output_final_state=True, backend="chunk")
    torch.testing.assert_close(o2, o1, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s2, s1, rtol=1e-10, atol=1e-10)


def test_chunked_fp32_close_to_fp64_reference():
    xs = make_inputs(2, 100, 2, 64)
    ref, sref = wkv7(*xs, output_final_state=True, backend="naive")
    o, s = wkv7(*(x.float() for x in xs), output_final_state=True, backend="chunk")
    assert o.dtype == torch.float32 and s.dtype == torch.float32
    assert ((o.double() - ref).norm() / ref.norm()).item() < 1e-5
    assert ((s.double() - sref).norm() / sref.norm()).item() < 1e-5


def test_gradcheck_chunked_with_initial_state():
    xs = make_inputs(1, 19, 1, 4, requires_grad=True)
    s0 = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)

    def fn(r, w, k, v, a, b, s0):
        o, s = wkv7(r, w, k, v, a, b, initial_state=s0, output_final_state=True, backend="chunk")
        return o, s

    assert torch.autograd.gradcheck(fn, (*xs, s0), eps=1e-6, atol=1e-5)


def test_gradcheck_chunked_varlen():
    xs = make_inputs(1, 23, 1, 4, requires_grad=True)
    s0 = torch.randn(3, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    cu = torch.tensor([0, 5, 22, 23])

    def fn(r, w, k, v, a, b, s0):
        return wkv7(r, w, k, v, a, b, initial_state=s0, output_final_state=True, cu_seqlens=cu, backend="chunk")

    assert torch.autograd.gradcheck(fn, (*xs, s0), eps=1e-6, atol=1e-5)


def test_gradients_chunked_equal_naive():
    xs = make_inputs(2, 41, 2, 8, requires_grad=True)
    s0 = torch.randn(2, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    grads = []
    for backend in ("naive", "chunk"):
        o, s = wkv7(*xs, initial_state=s0, output_final_state=True, backend=backend)
        go = torch.randn(o.shape, dtype=o.dtype, generator=torch.Generator().manual_seed(1))
        gs = torch.ones_like(s)
        grads.append(torch.autograd.grad((o * go).sum() + (s * gs).sum(), [*xs, s0]))
    for g_naive, g_chunk in zip(*grads):
        torch.testing.assert_close(g_chunk, g_naive, rtol=1e-9, atol=1e-9)


def test_varlen_equals_sequences_one_by_one():
    lengths = [7, 16, 1, 33]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    xs = make_inputs(1, sum(lengths), 2, 8)
    s0 = torch.randn(len(lengths), 2, 8, 8, dtype=torch.float64)
    for backend in ("naive", "chunk"):
        o, s = wkv7(*xs, initial_state=s0, output_final_state=True, cu_seqlens=cu, backend=backend)
        for i, (lo, hi) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
            oi, si = wkv7(*(x[:, lo:hi] for x in xs), initial_state=s0[i : i + 1], output_final_state=True,
                          backend="naive")
            torch.testing.assert_close(o[:, lo:hi], oi, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(s[i : i + 1], si, rtol=1e-10, atol=1e-10)


def test_state_carries_across_calls():
    """Running [0, T) at once equals running [0, t) then [t, T) from the carried state."""
    xs = make_inputs(2, 40, 2, 8)
    o, s = wkv7(*xs, output_final_state=True, backend="chunk")
    o1, s1 = wkv7(*(x[:, :13] for x in xs), output_final_state=True, backend="chunk")
    o2, s2 = wkv7(*(x[:, 13:] for x in xs), initial_state=s1, output_final_state=True, backend="chunk")
    torch.testing.assert_close(torch.cat([o1, o2], 1), o, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s2, s, rtol=1e-10, atol=1e-10)


def test_bad_input_is_a_clear_error():
    xs = make_inputs(2, 8, 2, 4)
    with pytest.raises(ValueError, match="varlen"):
        wkv7(*xs, cu_seqlens=torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="initial_state"):
        wkv7(*xs, initial_state=torch.zeros(3, 2, 4, 4))
    with pytest.raises(ValueError, match="backend"):
        wkv7(*xs, backend="cuda-magic")
    with pytest.raises(ValueError, match="k has shape"):
        wkv7(xs[0], xs[1], xs[2][:, :4], *xs[3:])
