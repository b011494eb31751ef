"""The Triton decode-layer kernels (kernels/triton_decode_layer.py) and the fused GEMV kernels
(kernels/triton_decode_gemv.py) against the PyTorch expressions they replace, then
`FusedDecoder(kernels="triton")` against `RWKV7.step` and `FastDecoder(step="triton")` against the eager loop.

On the CPU the kernels run in Triton's interpreter (tests/conftest.py); tests/gpu/test_generate_gpu.py runs the
same step against the torch step on a GPU, inside a CUDA graph.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from modrwkv.backbone.fused import FusedDecoder, resolve_kernels
from modrwkv.backbone.layers import LOG_DECAY_SCALE
from modrwkv.generation import FastDecoder, decode
from modrwkv.generation.fast import FastOptions
from modrwkv.kernels.reference import wkv7_step_torch
from modrwkv.kernels.triton_decode_gemv import (
    ACT_NONE,
    ACT_RELU_SQUARE,
    ACT_SIGMOID,
    ACT_TANH,
    MIX_BLOCK_N,
    lora_wkv_,
    mix_proj_,
    mix_table,
    proj_residual_,
)
from modrwkv.kernels.triton_decode_layer import lora_act_, mix_, relu_square_, wkv_

from .test_generate_fast import _backbone

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
DEVICE = "cpu" if INTERPRET else "cuda"


def _rand(*shape, scale=1.0, seed=None):
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    return (torch.randn(*shape, generator=g) * scale).to(DEVICE)


def _close(got, want, tol=2e-5):
    got, want = got.double().cpu(), want.double().cpu()
    err = ((got - want).norm() / want.norm().clamp_min(1e-30)).item()
    assert err < tol, f"relative error {err:.2e} >= {tol:.0e}"


@pytest.mark.parametrize("N,C,J,layer0", [(1, 128, 6, True), (3, 96, 6, False), (3, 200, 1, False)])
def test_mix_kernel_equals_layer_norms_and_shift_mixes(N, C, J, layer0):
    x, shift, mix = _rand(N, C, scale=2.0), _rand(N, C), torch.rand(J, C, device=DEVICE)
    ln_w, ln_b, ln0_w, ln0_b = _rand(C), _rand(C), _rand(C), _rand(C)
    shift0 = shift.clone()
    mixed, x_out = mix_(x, shift, ln_w, ln_b, mix, (ln0_w, ln0_b) if layer0 else None)
    x_ref = F.layer_norm(x, (C,), ln0_w, ln0_b, 1e-5) if layer0 else x
    xa = F.layer_norm(x_ref, (C,), ln_w, ln_b, 1e-5)
    _close(x_out, x_ref)
    _close(mixed, xa + (shift0 - xa) * mix[:, None])
    _close(shift, xa)  # the next token's shift state, in place
    assert mixed.shape == (J, N, C) and (x_out is x) == (not layer0)


@pytest.mark.parametrize("N,D", [(1, 32), (3, 40)])
def test_lora_activations_and_relu_square(N, D):
    h = _rand(4, N, D, scale=3.0)
    want = torch.stack([h[0], torch.tanh(h[1]), h[2], torch.sigmoid(h[3])])
    assert lora_act_(h) is h
    _close(h, want, 1e-6)
    f = _rand(N, 3 * D + 5)
    want = torch.relu(f) ** 2
    _close(relu_square_(f), want, 1e-6)


def _wkv_reference(rkv, up, p, v_first, state, first: bool, H: int):
    """fused.py's _pre (after the products) and _post (before the output product) in PyTorch."""
    N, C = rkv.shape[1:]
    r, k, v = rkv.unbind(0)
    lv, lw, la, g = up.unbind(0)
    w = LOG_DECAY_SCALE * torch.sigmoid(p["w0"] + lw)
    if first:
        v_first = v
    else:
        v = v + (v_first - v) * torch.sigmoid(p["v0"] + lv)
    a = torch.sigmoid(p["a0"] + la)
    kk = F.normalize((k * p["k_k"]).view(N, H, -1), dim=-1, eps=1e-12).view(N, C)
    k = k * (1 + (a - 1) * p["k_a"])
    o, new_state = wkv7_step_torch(*(t.reshape(N, H, -1) for t in (r, w, k, v, -kk, kk * a)), state)
    y = F.group_norm(o.reshape(N, C), H, p["ln_x_w"], p["ln_x_b"], 64e-5)
    bonus = ((r * k * p["r_k"]).view(N, H, -1).sum(-1, keepdim=True) * v.view(N, H, -1)).view(N, C)
    return (y + bonus) * g, new_state, v_first


@pytest.mark.parametrize("N,H,first", [(1, 2, True), (3, 3, False), (3, 1, True)])
def test_wkv_kernel_equals_the_torch_step(N, H, first):
    K = 64
    C = H * K
    rkv, up = _rand(3, N, C), _rand(4, N, C)
    p = {name: _rand(C, scale=0.5) for name in ("w0", "a0", "v0", "k_k", "k_a", "r_k", "ln_x_w", "ln_x_b")}
    state = _rand(N, H, K, K, scale=0.3)  # a non-zero state carried from earlier tokens
    v_first = torch.empty(N, C, device=DEVICE) if first else _rand(N, C)
    y_ref, s_ref, vf_ref = _wkv_reference(rkv, up, p, v_first.clone(), state.clone(), first, H)
    y = wkv_(rkv, up, p, v_first, state, first, LOG_DECAY_SCALE)
    _close(y, y_ref)
    _close(state, s_ref)  # advanced in place
    _close(v_first, vf_ref)  # written at the first layer, left as it was after
    with pytest.raises(ValueError, match="fp32"):
        wkv_(rkv, up, p, v_first, state.double(), first, LOG_DECAY_SCALE)


def test_mix_table_covers_each_segment_in_blocks():
    t = mix_table([(0, 70, 0, ACT_NONE), (96, 16, 3, ACT_TANH)], 32, DEVICE).tolist()
    assert t == [[0, 32, 0, 0], [32, 32, 0, 0], [64, 6, 0, 0], [96, 16, 3, ACT_TANH]]


@pytest.mark.parametrize("M", [1, 3])
def test_mix_proj_kernel_equals_layer_norm_mix_product_and_activation(M):
    C, J = 200, 3
    x, shift, mix = _rand(M, C, scale=2.0), _rand(M, C), torch.rand(J, C, device=DEVICE)
    ln_w, ln_b = _rand(C), _rand(C)
    w = _rand(3 * 40 + 24, C, scale=0.2)
    # rows 0-39 mix 0 plain, 40-79 mix 1 tanh, 80-119 mix 2 sigmoid, 120-135 mix 0 relu^2; rows 136-143 unlisted
    segs = [(0, 40, 0, ACT_NONE), (40, 40, 1, ACT_TANH), (80, 40, 2, ACT_SIGMOID), (120, 16, 0, ACT_RELU_SQUARE)]
    out, xa = mix_proj_(x, shift, ln_w, ln_b, mix, w, mix_table(segs, MIX_BLOCK_N, DEVICE))
    xa_ref = F.layer_norm(x, (C,), ln_w, ln_b, 1e-5)
    _close(xa, xa_ref)
    acts = (lambda t: t, torch.tanh, torch.sigmoid, lambda t: torch.relu(t) ** 2)
    for start, n, j, act in segs:
        want = acts[act]((xa_ref + (shift - xa_ref) * mix[j]) @ w[start:start + n].T)
        _close(out[:, start:start + n], want)


@pytest.mark.parametrize("M,copy", [(1, True), (3, False)])
def test_proj_residual_kernel_adds_the_product_and_copies(M, copy):
    N, K = 72, 300
    xin, w, resid = _rand(M, K), _rand(N, K, scale=0.1), _rand(M, N)
    src, dst = _rand(M, N), torch.zeros(M, N, device=DEVICE)
    out = proj_residual_(xin, w, resid, copy=(src, dst) if copy else None)
    _close(out, resid + xin @ w.T)
    assert torch.equal(dst, src) == copy


@pytest.mark.parametrize("M,first", [(1, True), (2, False)])
def test_lora_wkv_kernel_equals_the_up_projections_then_the_wkv_kernel(M, first):
    H, K, D = 2, 64, 48
    C = H * K
    ranks = (16, 24, 8, 48)  # v, w, a, g: rows past each rank are garbage and must not be read
    h = _rand(M, 3 * C + 4 * D)
    for i, r in enumerate(ranks):
        h[:, 3 * C + i * D + r:3 * C + (i + 1) * D] = float("nan")
    lora2 = _rand(4, D, C, scale=0.3)
    for i, r in enumerate(ranks):
        lora2[i, r:] = 0.0
    p = {name: _rand(C, scale=0.5) for name in ("w0", "a0", "v0", "k_k", "k_a", "r_k", "ln_x_w", "ln_x_b")}
    state = _rand(M, H, K, K, scale=0.3)
    v_first = torch.empty(M, C, device=DEVICE) if first else _rand(M, C)
    xa, shift = _rand(M, C), torch.zeros(M, C, device=DEVICE)
    up = torch.stack([h[:, 3 * C + i * D:3 * C + i * D + r] @ lora2[i, :r] for i, r in enumerate(ranks)])
    rkv = h[:, :3 * C].reshape(M, 3, C).transpose(0, 1).contiguous()
    s_ref, vf_ref = state.clone(), v_first.clone()
    y_ref = wkv_(rkv, up, p, vf_ref, s_ref, first, LOG_DECAY_SCALE)
    y = lora_wkv_(h, lora2, ranks, p, v_first, state, xa, shift, first, LOG_DECAY_SCALE)
    _close(y, y_ref)
    _close(state, s_ref)
    _close(v_first, vf_ref)
    assert torch.equal(shift, xa)


def _model(dtype):
    return _backbone().to(dtype).to(DEVICE)


@torch.no_grad()
def _prefill(bb, n: int, t: int = 5):
    """Next-token logits (n, V) and the state after t random tokens per sequence."""
    ids = torch.randint(0, bb.config.vocab_size, (n, t), generator=torch.Generator().manual_seed(1))
    logits, state = bb(ids.to(DEVICE), return_state=True)
    return logits[:, -1], state


# bf16: the kernels round where the eager step rounds, so the two agree closely (not bit for bit: fp32 sums in
# another order can move a rounding). Batches 1 and 3 take the fused GEMV kernels, gemv_max_batch=0 the cuBLAS
# products between the decode-layer kernels.
@pytest.mark.parametrize("batch,gemv_max_batch", [(1, 4), (3, 4), (3, 0)])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 2e-3)])
def test_triton_step_equals_rwkv7_step_over_several_tokens(dtype, tol, batch, gemv_max_batch):
    bb = _model(dtype)
    _, state = _prefill(bb, batch)  # non-zero states
    dec = FusedDecoder(bb, kernels="triton", gemv_max_batch=gemv_max_batch)
    assert (dec.kernels, dec.gemv_max_batch) == ("triton", gemv_max_batch)
    ref, got = state.clone(), state.clone()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _ in range(4):
            ids = torch.randint(0, bb.config.vocab_size, (batch,), generator=g).to(DEVICE)
            want, ref = bb.step(ids, state=ref)
            logits = dec.step_(ids, got)
            assert logits.dtype == dtype
            _close(logits.float(), want.float(), tol)
            for name in ("att_shift", "wkv", "ffn_shift"):
                _close(getattr(got, name).float(), getattr(ref, name).float(), tol)


@pytest.mark.parametrize("gemv", [0, 4])
def test_fast_decoder_triton_step_greedy_equals_eager_and_follows_weight_updates(gemv):
    bb = _model(torch.float32)
    logits, state = _prefill(bb, 3)
    want = decode(bb, logits, state.clone(), 10, stop_token=-1)
    dec = FastDecoder(bb, check_every=4, step="triton", gemv_max_batch=gemv)
    assert dec.decode(logits, state, 10, stop_token=-1) == want
    assert dec.fused.kernels == "triton"
    with torch.no_grad():  # in place (an optimiser step): the stacked copies are refreshed
        for blk in bb.blocks:
            blk.att.value.weight.mul_(-1.5)
            blk.att.g2.add_(0.5)
    want2 = decode(bb, logits, state.clone(), 10, stop_token=-1)
    assert want2 != want and dec.decode(logits, state, 10, stop_token=-1) == want2


@pytest.mark.parametrize("gemv", [0, 4])
def test_fast_decoder_triton_step_greedy_equals_eager_in_bf16(gemv):
    bb = _model(torch.bfloat16)
    logits, state = _prefill(bb, 2)
    want = decode(bb, logits, state.clone(), 12, stop_token=-1)
    dec = FastDecoder(bb, check_every=6, step="triton", gemv_max_batch=gemv)
    assert dec.decode(logits, state, 12, stop_token=-1) == want


def test_kernel_choice_and_bad_options():
    bb = _backbone()  # fp64
    assert resolve_kernels("auto", bb) == "torch"  # the CPU (and fp64): the torch step
    with pytest.raises(ValueError, match="kernels='triton' cannot run: the weights are torch.float64"):
        FusedDecoder(bb, kernels="triton")
    with pytest.raises(ValueError, match="kernels must be one of"):
        FusedDecoder(bb, kernels="cuda")
    bf = bb.float()
    with pytest.raises(ValueError, match="compile=True applies to the torch step"):
        resolve_kernels("triton", bf, compile=True)
    assert resolve_kernels("auto", bf, compile=True) == "torch"
    with pytest.raises(ValueError, match="generation.step must be one of"):
        FastOptions(step="fast")
    with pytest.raises(ValueError, match="generation.compile=true compiles the torch step"):
        FastOptions(step="triton", compile=True)
    with pytest.raises(ValueError, match="step must be one of"):
        FastDecoder(bf, step="cuda")
    with pytest.raises(ValueError, match="gemv_max_batch must be an integer from 0 to 16"):
        FastOptions(gemv_max_batch=17)
    for bad in (-1, 17):
        with pytest.raises(ValueError, match="gemv_max_batch must be an integer from 0 to 16"):
            FusedDecoder(bf, kernels="triton", gemv_max_batch=bad)
    assert FusedDecoder(bf, kernels="torch").gemv_max_batch == 0  # the torch step has no GEMV kernels


def test_model_generate_with_the_triton_step_and_a_new_decoder_when_the_options_change():
    import copy

    from .test_generate import N_NEW, _sample
    from .test_generate import _model as _modrwkv

    model = copy.deepcopy(_modrwkv("tiny-wavenet", "mlp")).float()  # the triton step takes fp32/bf16/fp16
    sample = _sample("series")
    eager = model.generate(sample, max_new_tokens=N_NEW, fast=False)
    model.generation = FastOptions(fast=True, step="triton")
    assert model.generate(sample, max_new_tokens=N_NEW) == eager
    assert model._fast_decoder.fused.kernels == "triton"
    model.generation = FastOptions(fast=True, step="torch")  # no clear_generation_cache(): rebuilt all the same
    assert model.generate(sample, max_new_tokens=N_NEW) == eager
    assert model._fast_decoder.fused.kernels == "torch"
