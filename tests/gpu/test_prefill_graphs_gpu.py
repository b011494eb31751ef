"""Graph-replayed prefill (`PrefillGraphs`) against one plain forward over the whole prompt, on a real GPU.

Skipped without CUDA. On the device: PYTHONPATH=src python -m pytest -q -m gpu tests/gpu/test_prefill_graphs_gpu.py
"""

from __future__ import annotations

import pytest
import torch

from modrwkv.backbone import RWKV7, RWKV7Config
from modrwkv.generation.prefill_graphs import GRAPH_MAX, PrefillGraphs

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _backbone(dtype) -> RWKV7:
    torch.manual_seed(0)
    with torch.device("cuda"):
        bb = RWKV7(RWKV7Config.from_name("tiny", vocab_size=512))
    with torch.no_grad():
        for p in bb.parameters():  # BlinkDL's init zeroes block outputs: perturb every weight
            p.add_(torch.randn_like(p) * 0.1)
    return bb.to(dtype).eval()


def _close(a, b, tol):
    err = ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-6)).item()
    assert err < tol, err


@torch.no_grad()
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-4), (torch.bfloat16, 3e-2)])
def test_graph_prefill_equals_one_forward(dtype, tol):
    bb = _backbone(dtype)
    graphs = PrefillGraphs(bb, eager_chunk=GRAPH_MAX)
    g = torch.Generator().manual_seed(1)
    for T in (1, 37, 608, GRAPH_MAX + 77, 2 * GRAPH_MAX):  # graphs only, eager + graphs, eager only
        emb = torch.randn(1, T, bb.config.n_embd, generator=g).to("cuda", dtype)
        for with_state in (False, True):
            state = None
            if with_state:
                _, state = bb.forward_hidden(torch.randn(1, 9, bb.config.n_embd, generator=g).to("cuda", dtype),
                                             return_state=True)
            hidden, want = bb.forward_hidden(emb, state=state, return_state=True)
            kept = None if state is None else state.clone()
            last, got = graphs(emb, state)
            _close(last, hidden[:, -1], tol)
            for x, y in zip((got.att_shift, got.wkv, got.ffn_shift), (want.att_shift, want.wkv, want.ffn_shift)):
                _close(x, y, tol)
            if state is not None:  # the caller's state is not modified
                assert torch.equal(state.wkv, kept.wkv) and torch.equal(state.att_shift, kept.att_shift)
    # 1, 37, 608 = 576 + 32, 77 = 64 + 13 (after 2048 eager tokens): each length recorded once
    assert graphs.captures == len({1, 37, 576, 32, 64, 13})


@torch.no_grad()
def test_in_place_weight_update_is_seen_new_tensors_rerecord():
    bb = _backbone(torch.float32)
    graphs = PrefillGraphs(bb)
    emb = torch.randn(1, 40, bb.config.n_embd, device="cuda")
    graphs(emb)
    bb.blocks[1].att.receptance.weight.mul_(0.5)  # in place: the recorded graphs read it
    hidden, _ = bb.forward_hidden(emb, return_state=True)
    _close(graphs(emb)[0], hidden[:, -1], 2e-4)
    before = graphs.captures
    bb.blocks[1].att.receptance.weight = torch.nn.Parameter(bb.blocks[1].att.receptance.weight * 2)
    hidden, _ = bb.forward_hidden(emb, return_state=True)
    _close(graphs(emb)[0], hidden[:, -1], 2e-4)
    assert graphs.captures == before + 1  # 40 tokens: one piece, recorded again over the new tensor


@torch.no_grad()
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-4), (torch.bfloat16, 3e-2)])
def test_a_length_read_again_is_one_recorded_forward(dtype, tol):
    bb = _backbone(dtype)
    graphs = PrefillGraphs(bb, exact=1)
    g = torch.Generator().manual_seed(2)
    for T, captures in ((630, 2), (630, 3), (630, 3), (100, 5), (100, 5)):  # 576 + 54, then 630; 100: 64 + 36
        emb = torch.randn(1, T, bb.config.n_embd, generator=g).to("cuda", dtype)
        hidden, want = bb.forward_hidden(emb, return_state=True)
        last, got = graphs(emb)
        _close(last, hidden[:, -1], tol)
        for x, y in zip((got.att_shift, got.wkv, got.ffn_shift), (want.att_shift, want.wkv, want.ffn_shift)):
            _close(x, y, tol)
        assert graphs.captures == captures, (T, graphs.captures)
    assert graphs.exact_lengths == {630}  # one slot: 100 keeps its two pieces
