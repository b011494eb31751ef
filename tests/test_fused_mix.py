"""The fused token shift + mixes (kernels/token_mix.py, token_mix_matmul.py) against PyTorch, and in the blocks.

Runs the Triton kernels on CUDA when there is a GPU, else in Triton's CPU interpreter (conftest.py);
tests/gpu/test_fused_mix_gpu.py adds the 1.5B width on CUDA.
"""

from __future__ import annotations

import pytest
import torch

from modrwkv.backbone.config import RWKV7Config
from modrwkv.backbone.model import RWKV7
from modrwkv.kernels.testing import saved_activation_bytes
from modrwkv.kernels.token_mix import token_mix
from modrwkv.kernels.token_mix_matmul import token_mix_matmul

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def _on_device():
    with torch.device(DEVICE):  # tensors and models of these tests
        yield


def reference_mix(x, prev, cu_seqlens, mix):
    """Token shift per sequence and the lerps in PyTorch: (mixed (M, B, T, C), last (N, C)). An empty packed
    sequence passes its carried state (or zero) through as its last input."""
    B, T, C = x.shape
    if cu_seqlens is None:
        rows = [(b, 0, T) for b in range(B)]
    else:
        cu = cu_seqlens.tolist()
        rows = [(0, s, e) for s, e in zip(cu[:-1], cu[1:])]
    shifted, last = [], []
    for i, (b, s, e) in enumerate(rows):
        first = x.new_zeros(1, C) if prev is None else prev[i:i + 1].to(x.dtype)
        shifted.append(torch.cat([first, x[b, s:e - 1]]) if e > s else x.new_zeros(0, C))
        last.append(x[b, e - 1] if e > s else first[0])
    sh = torch.cat(shifted).view(B, T, C)
    return torch.stack([x + (sh - x) * m for m in mix]), torch.stack(last)


def grads(outs, inputs, seed=1):
    """Gradients of a random linear function of ``outs`` with respect to ``inputs`` (None where unused)."""
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o.float() * torch.randn(o.shape, generator=gen, device="cpu").to(o.device)).sum() for o in outs)
    live = [t for t in inputs if t is not None]
    got = iter(torch.autograd.grad(loss, live, allow_unused=True))
    return [None if t is None else next(got) for t in inputs]


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


CASES = {  # name: (B, T, C, cu_seqlens)
    "batch": (2, 37, 130, None),
    "varlen": (1, 45, 96, [0, 1, 1, 17, 18, 45]),  # a length-1 sequence, an empty one, uneven lengths
    "varlen_empty_last": (1, 40, 64, [0, 39, 40, 40]),
    "one_token": (3, 1, 64, None),
    "several_programs": (1, 600, 64, [0, 255, 256, 257, 600]),  # cuts at a backward program edge (256 rows)
}


def _inputs(case, with_prev, M, dtype=torch.float32):
    B, T, C, cu = CASES[case]
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32)
    n = B if cu is None else len(cu) - 1
    x = torch.randn(B, T, C, dtype=dtype, requires_grad=True)
    prev = torch.randn(n, C, dtype=dtype, requires_grad=True) if with_prev else None
    mix = torch.rand(M, C, dtype=dtype, requires_grad=True)
    return x, prev, cu_t, mix


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("with_prev", [True, False])
@pytest.mark.parametrize("M", [6, 1])
def test_token_mix_matches_torch(case, with_prev, M):
    x, prev, cu, mix = _inputs(case, with_prev, M)
    mixed, last = token_mix(x, prev, cu, mix)
    ref_mixed, ref_last = reference_mix(x, prev, cu, mix)
    assert mixed.shape == (M, *x.shape) and mixed.dtype == x.dtype
    torch.testing.assert_close(mixed, ref_mixed, rtol=0, atol=1e-6)
    torch.testing.assert_close(last, ref_last, rtol=0, atol=0)
    inputs = (x, prev, mix)
    for name, g, r in zip(("x", "prev", "mix"), grads((mixed, last), inputs), grads((ref_mixed, ref_last), inputs)):
        if r is None:
            continue
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"d{name}: {m}")


def test_token_mix_bf16():
    """bf16 in, fp32 inside, bf16 out; loose bounds: Triton's CPU interpreter rounds fp32 -> bf16 toward zero (a GPU
    rounds to nearest), which doubles the rounding error seen here."""
    x, prev, cu, mix = _inputs("varlen", True, 6, torch.bfloat16)
    mixed, last = token_mix(x, prev, cu, mix)
    ref_mixed, ref_last = reference_mix(*(t.detach().float() if t is not None else None for t in (x, prev)), cu,
                                        mix.detach().float())
    assert mixed.dtype == torch.bfloat16
    assert rel(mixed, ref_mixed) < 1e-2
    got = grads((mixed, last), (x, prev, mix))
    xf, pf, mf = (t.detach().float().requires_grad_() for t in (x, prev, mix))
    want = grads(reference_mix(xf, pf, cu, mf), (xf, pf, mf))
    for g, w in zip(got, want):
        assert g.dtype == torch.bfloat16 and rel(g, w) < 2e-2


@pytest.mark.parametrize("case", ["batch", "varlen"])
def test_token_mix_matmul_matches_torch(case):
    x, prev, cu, mix = _inputs(case, True, 3)
    C = x.shape[-1]
    weights = [torch.randn(C, d, requires_grad=True) for d in (C, 16, 24)]
    sources = [0, 2, 2]  # one mix feeding two products, one mix feeding none
    outs, last = token_mix_matmul(x, prev, cu, mix, weights, sources)
    ref_mixed, ref_last = reference_mix(x, prev, cu, mix)
    ref_outs = [ref_mixed[s] @ w for s, w in zip(sources, weights)]
    for o, r in zip(outs, ref_outs):
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5)
    inputs = (x, prev, mix, *weights)
    for g, r in zip(grads((*outs, last), inputs), grads((*ref_outs, ref_last), inputs)):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-4)


def test_bad_inputs_are_named():
    x, prev, cu, mix = _inputs("batch", True, 6)
    with pytest.raises(ValueError, match=r"mix must be \(M, C\)"):
        token_mix(x, prev, None, mix[:, :5])
    with pytest.raises(ValueError, match=r"prev must be \(N, C\)"):
        token_mix(x, prev[:1], None, mix)
    with pytest.raises(ValueError, match="sources"):
        token_mix_matmul(x, prev, None, mix, [torch.randn(x.shape[-1], 4)], [6])
    with pytest.raises(ValueError, match="backbone.module.fused_mix must be true or false"):
        RWKV7(RWKV7Config.from_name("tiny", n_layer=1, vocab_size=50), fused_mix="yes")


def test_cpu_without_interpreter_says_what_to_set(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with torch.device("cpu"):
        x, prev, cu, mix = _inputs("batch", False, 1)
    with pytest.raises(RuntimeError, match="fused_mix=false"):
        token_mix(x, prev, cu, mix)


def _tiny_model():
    cfg = RWKV7Config.from_name("tiny", n_layer=2, vocab_size=50)
    model = RWKV7(cfg, wkv_backend="chunk")
    with torch.no_grad():  # the init zeroes some mix vectors and LoRAs: random values exercise every path
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _run_model(model, fused, embeds, cu, state):
    model.fused_mix = fused
    model.zero_grad(set_to_none=True)
    hidden, new = model.forward_hidden(embeds, cu_seqlens=cu, state=state, return_state=True)
    outs = (hidden, new.att_shift, new.wkv, new.ffn_shift)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    g = grads(outs, [embeds, *params], seed=2)
    return [o.detach() for o in outs], dict(zip(["embeds", *names], g))


def test_model_fused_equals_unfused():
    """Two blocks (layer 0's v_first and a later layer's value residual), packed input with a carried state."""
    model = _tiny_model()
    cu = torch.tensor([0, 1, 20, 33], dtype=torch.int32)
    embeds = torch.randn(1, 33, model.config.n_embd, requires_grad=True)
    state = model.empty_state(3)
    for t in (state.att_shift, state.ffn_shift):
        t.normal_()
    outs_f, grads_f = _run_model(model, True, embeds, cu, state)
    outs_e, grads_e = _run_model(model, False, embeds, cu, state)
    for a, b in zip(outs_f, outs_e):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for name, g in grads_e.items():
        if g is None:
            assert grads_f[name] is None, name
        else:
            assert rel(grads_f[name], g) < 1e-5, name


def _block_inputs(cfg, T=29):
    x = torch.randn(2, T, cfg.n_embd, requires_grad=True)
    v_first = torch.randn(2, T, cfg.n_embd)
    return x, v_first


def test_compiled_block_fused_is_one_op_and_matches_eager():
    """Block 1 compiled (aot_eager: AOT autograd traces the custom ops' fake and backward) equals eager, and the
    fused operator adds no graph break: as many graphs as the unfused block (split only at the WKV-7 kernel)."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    model = _tiny_model()
    blk = model.blocks[1]
    x, v_first = _block_inputs(model.config)
    params = list(blk.parameters())

    def run(fn, fused):
        out = fn(x, v_first, None, None, None, None, "chunk", fused)
        return [out[0].detach(), *grads((out[0], out[2], out[4]), [x, *params], seed=3)]

    frames = {}
    for fused in (False, True):
        counter = CompileCounterWithBackend("aot_eager")
        compiled = torch.compile(blk.forward, backend=counter, dynamic=True)
        got, want = run(compiled, fused), run(blk.forward, fused)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
        frames[fused] = counter.frame_count
    assert frames[True] == frames[False], frames
    torch._dynamo.reset()


def test_fused_block_saves_fewer_activations():
    model = _tiny_model()
    blk = model.blocks[1]
    x, v_first = _block_inputs(model.config, T=64)
    params = list(blk.parameters())
    used = {}
    for fused in (False, True):
        used[fused] = saved_activation_bytes(lambda f=fused: blk(x, v_first, None, None, None, None, "chunk", f),
                                             {p.untyped_storage().data_ptr() for p in params})
    print(f"saved activations of one block (B=2, T=64, C=128, fp32): unfused {used[False]} B, fused {used[True]} B")
    # the six time-mix mixes and the shift difference (7 x B*T*C) become x; the channel mix keeps x, not xx + mix
    BTC = x.numel() * x.element_size()
    assert used[True] <= used[False] - 6 * BTC, used


def test_token_mix_matmul_under_autocast_has_linear_dtypes():
    """Under autocast the products run in the autocast dtype (as F.linear would) and the fp32 inputs get fp32
    gradients."""
    x, prev, cu, mix = _inputs("varlen", True, 2)
    w = torch.randn(x.shape[-1], 8, requires_grad=True)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        (out,), last = token_mix_matmul(x, prev, cu, mix, [w], [1])
        ref = torch.nn.functional.linear(reference_mix(x, prev, cu, mix)[0][1], w.t())
    assert out.dtype == ref.dtype == torch.bfloat16 and last.dtype == torch.float32
    assert rel(out, ref) < 2e-2
    for t, g in zip((x, prev, mix, w), grads((out,), (x, prev, mix, w))):
        assert g.dtype == t.dtype == torch.float32
