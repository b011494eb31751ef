"""backbone.module.recompute_elementwise (backbone/recompute.py): the same values and gradients with fewer saved
activations, eager and compiled, with and without the fused token mix; and `relu_square_linear` on its own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from modrwkv.backbone.config import RWKV7Config
from modrwkv.backbone.factory import build_backbone
from modrwkv.backbone.model import RWKV7
from modrwkv.backbone.recompute import recomputed, relu_square_linear
from modrwkv.kernels.testing import saved_activation_bytes


def _model(dtype=torch.float64, seed=None) -> RWKV7:
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, ())) if seed is None else seed)
    model = RWKV7(RWKV7Config.from_name("tiny", vocab_size=120)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():  # BlinkDL's init zeroes block outputs: perturb every weight
            p.add_(torch.randn_like(p) * 0.1)
    return model


def _values_and_grads(model, ids, cu_seqlens, state):
    model.zero_grad(set_to_none=True)
    logits, new_state = model(ids, cu_seqlens=cu_seqlens, state=state, return_state=True)
    (logits.square().mean() + new_state.wkv.square().mean()).backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("fused_mix,block_checkpoints", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("packed", [False, True])
def test_recompute_gives_the_same_values_and_gradients(fused_mix, block_checkpoints, packed):
    """Also inside the backbone's whole-block checkpoints (grad_checkpointing: nested checkpoints)."""
    model = _model()
    model.fused_mix = fused_mix
    model.grad_checkpointing = block_checkpoints
    if packed:  # a length-1 sequence and uneven lengths, each from a carried state
        ids, cu = torch.randint(0, 120, (1, 41)), torch.tensor([0, 1, 19, 41])
    else:
        ids, cu = torch.randint(0, 120, (2, 23)), None
    state = model.empty_state(3 if packed else 2, dtype=torch.float64)
    for t in (state.att_shift, state.wkv, state.ffn_shift):
        t.normal_()
    model.recompute_elementwise = False
    want, want_grads = _values_and_grads(model, ids, cu, state)
    model.recompute_elementwise = True
    got, got_grads = _values_and_grads(model, ids, cu, state)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for name, g in want_grads.items():
        if g is None:  # layer 0's value-residual LoRA is unused either way
            assert got_grads[name] is None, name
        else:
            torch.testing.assert_close(got_grads[name], g, rtol=1e-10, atol=1e-12, msg=name)


def _block_saved_bytes(model, recompute: bool, T: int = 64) -> int:
    blk = model.blocks[1]
    C = model.config.n_embd
    x = torch.randn(2, T, C, dtype=torch.float32, requires_grad=True)
    v_first = torch.randn(2, T, C, dtype=torch.float32, requires_grad=True)
    skip = {t.untyped_storage().data_ptr() for t in (*blk.parameters(), v_first)}
    return saved_activation_bytes(
        lambda: blk(x, v_first, None, None, None, None, "chunk", model.fused_mix, recompute), skip)


@pytest.mark.parametrize("fused_mix", [False, True])
def test_recompute_saves_fewer_activations(fused_mix):
    model = _model(torch.float32, seed=0)
    model.fused_mix = fused_mix
    kept = {rec: _block_saved_bytes(model, rec) for rec in (False, True)}
    BTC = 2 * 64 * model.config.n_embd * 4  # one (B, T, C) fp32 activation
    ffn = 2 * 64 * model.config.dim_ffn * 4  # one (B, T, dim_ffn) one: relu(k)^2
    # relu(k)^2, and at least five (B, T, C) intermediates of the LoRA chain and of GroupNorm + bonus + gate
    assert kept[True] <= kept[False] - ffn - 5 * BTC, kept


def test_recompute_in_compiled_blocks_matches_eager_and_saves_less():
    """Compiled (AOTAutograd's min-cut partitioner, run eagerly on the CPU), the recomputed stretches still give the
    eager gradients, and the partitioner keeps less with them than without."""
    eager = _model(torch.float64, seed=3)
    compiled = _model(torch.float64, seed=3)
    compiled.compile_blocks(backend="aot_eager_decomp_partition")
    compiled.recompute_elementwise = True
    ids, cu = torch.randint(0, 120, (1, 50)), torch.tensor([0, 20, 50])
    want, want_grads = _values_and_grads(eager, ids, cu, None)
    got, got_grads = _values_and_grads(compiled, ids, cu, None)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for name, g in want_grads.items():
        if g is not None:
            torch.testing.assert_close(got_grads[name], g, rtol=1e-9, atol=1e-12, msg=name)
    model = _model(torch.float32, seed=0)
    model.compile_blocks(backend="aot_eager_decomp_partition")
    kept = {rec: _block_saved_bytes(model, rec) for rec in (False, True)}
    assert kept[True] <= kept[False] - 2 * 64 * model.config.dim_ffn * 4, kept  # relu(k)^2 at least
    torch._dynamo.reset()


@pytest.mark.parametrize("needs", [(True, True), (True, False), (False, True)])
def test_relu_square_linear_matches_autograd(needs):
    k = torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=needs[0])
    w = torch.randn(8, 16, dtype=torch.float64, requires_grad=needs[1])
    dout = torch.randn(3, 5, 8, dtype=torch.float64)
    live = [t for t in (k, w) if t.requires_grad]
    want = torch.autograd.grad((F.linear(torch.relu(k) ** 2, w) * dout).sum(), live)
    out = relu_square_linear(k, w)
    torch.testing.assert_close(out, F.linear(torch.relu(k) ** 2, w), rtol=0, atol=0)
    got = torch.autograd.grad((out * dout).sum(), live)
    for g, e in zip(got, want):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


def test_relu_square_linear_under_autocast_has_linear_dtypes():
    k = torch.randn(4, 16, dtype=torch.bfloat16, requires_grad=True)  # as a Linear under autocast gives it
    w = torch.randn(8, 16, requires_grad=True)  # fp32 master weights
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = relu_square_linear(k, w)
        ref = F.linear(torch.relu(k) ** 2, w)
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref)
    out.float().sum().backward()
    assert k.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.float32
    assert torch.isfinite(k.grad).all() and torch.isfinite(w.grad).all()


def test_without_autograd_nothing_is_checkpointed():
    calls = []

    def fn(t):
        calls.append(torch.is_grad_enabled())
        return torch.sin(t)  # saves its input: the backward unpacks it, which recomputes

    t = torch.randn(3, requires_grad=True)
    with torch.no_grad():
        recomputed(True, fn, t)
    recomputed(True, fn, t).sum().backward()  # the checkpoint runs fn again in the backward
    assert calls == [False, True, True]


def test_recompute_option_is_checked_and_built_from_config():
    with pytest.raises(ValueError, match="backbone.module.recompute_elementwise must be true or false"):
        build_backbone("tiny", recompute_elementwise="yes")
    assert build_backbone("tiny", recompute_elementwise=True).recompute_elementwise is True
