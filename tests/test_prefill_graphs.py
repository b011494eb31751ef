"""How `PrefillGraphs` splits a prompt and chains the pieces (the graphs themselves need CUDA:
tests/gpu/test_prefill_graphs_gpu.py)."""

from __future__ import annotations

import pytest
import torch

from modrwkv.generation import prefill_graphs
from modrwkv.generation.prefill_graphs import GRAPH_MAX, PIECE, PrefillGraphs, piece_lengths

from .graph_fakes import use_fake_graphs


@pytest.mark.parametrize("total", [0, 1, 2, 37, 63, 64, 65, 630, 1023, 1024, 2047])
def test_at_most_two_pieces_a_multiple_of_the_piece_then_the_rest(total):
    pieces = piece_lengths(total)
    assert sum(pieces) == total and all(p > 0 for p in pieces) and len(pieces) <= 2
    if total >= PIECE:
        assert pieces[0] % PIECE == 0
    assert not pieces or (pieces[-1] < PIECE) == (total % PIECE != 0)


def test_the_lengths_are_bounded():
    lengths = {n for t in range(GRAPH_MAX) for n in piece_lengths(t)}
    assert len(lengths) == GRAPH_MAX // PIECE + PIECE - 2


def test_negative_total_is_refused():
    with pytest.raises(ValueError, match="total must be >= 0"):
        piece_lengths(-1)


def _backbone():
    from modrwkv.backbone import RWKV7, RWKV7Config

    torch.manual_seed(0)
    bb = RWKV7(RWKV7Config(n_layer=2, n_embd=64, head_size=32, vocab_size=50, dim_w_lora=8, dim_a_lora=8,
                           dim_v_lora=8, dim_g_lora=8)).double()
    with torch.no_grad():
        for p in bb.parameters():  # BlinkDL's init zeroes block outputs: perturb every weight
            p.add_(torch.randn_like(p) * 0.3)
    return bb


def _close(got, want):
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-11), (got - want).abs().max()


@torch.no_grad()
def test_pieces_chain_their_state_and_equal_one_forward(monkeypatch):
    """The prefill logic on the CPU with re-run stand-ins for the graphs (tests/graph_fakes.py), in fp64: the pieces
    (eager + two recorded pieces) chain the state through the static buffer into the result of one forward, and the
    caller's state is left alone."""
    use_fake_graphs(monkeypatch, prefill_graphs)
    bb = _backbone()
    graphs = PrefillGraphs(bb, eager_chunk=GRAPH_MAX)
    g = torch.Generator().manual_seed(1)
    for T in (5, 64 + 13, GRAPH_MAX + 64 + 3, 2 * GRAPH_MAX):
        emb = torch.randn(1, T, 64, generator=g, dtype=torch.float64)
        for with_state in (False, True):
            state = bb.forward_hidden(torch.randn(1, 7, 64, generator=g, dtype=torch.float64),
                                      return_state=True)[1] if with_state else None
            kept = None if state is None else state.clone()
            hidden, want = bb.forward_hidden(emb, state=state, return_state=True)
            last, got = graphs(emb, state)
            _close(last, hidden[:, -1])
            for name in ("att_shift", "wkv", "ffn_shift"):
                _close(getattr(got, name), getattr(want, name))
            if state is not None:
                assert all(torch.equal(getattr(state, n), getattr(kept, n)) for n in ("att_shift", "wkv", "ffn_shift"))
            if T % GRAPH_MAX:
                assert got.wkv.data_ptr() != graphs._state.wkv.data_ptr()  # a copy: the next prompt overwrites it
    assert graphs.captures == len({5, 64, 13, 3})


@torch.no_grad()
def test_new_weight_tensors_drop_the_graphs(monkeypatch):
    use_fake_graphs(monkeypatch, prefill_graphs)
    bb = _backbone()
    graphs = PrefillGraphs(bb)
    emb = torch.randn(1, 70, 64, dtype=torch.float64)
    graphs(emb)
    assert graphs.captures == 2
    bb.blocks[0].att.receptance.weight.mul_(0.5)  # in place: kept
    graphs(emb)
    assert graphs.captures == 2
    bb.blocks[0].att.receptance.weight = torch.nn.Parameter(bb.blocks[0].att.receptance.weight * 2)
    _close(graphs(emb)[0], bb.forward_hidden(emb)[0][:, -1])
    assert graphs.captures == 4  # both piece lengths recorded again


@torch.no_grad()
def test_a_length_read_twice_gets_one_piece_the_first_exact_ones_only(monkeypatch):
    use_fake_graphs(monkeypatch, prefill_graphs)
    bb = _backbone()
    graphs = PrefillGraphs(bb, exact=1)
    g = torch.Generator().manual_seed(3)
    recorded = set()
    plan = [(77, {64, 13}), (77, {77}), (77, set()), (78, {14}), (78, set()), (128, {128}), (128, set())]
    for T, new in plan:  # the graphs each call records; 78 comes back too, but the one exact slot is taken by 77
        emb = torch.randn(1, T, 64, generator=g, dtype=torch.float64)
        hidden, want = bb.forward_hidden(emb, return_state=True)
        last, got = graphs(emb)
        _close(last, hidden[:, -1])
        _close(got.wkv, want.wkv)
        assert {n for n, _ in graphs.graphs} == recorded | new, T
        recorded |= new
        assert graphs.captures == len(recorded)
    assert graphs.exact_lengths == {77}
    never = PrefillGraphs(bb)  # exact=0: always the pieces
    assert [never.lengths(77) for _ in range(3)] == [[64, 13]] * 3
    with pytest.raises(ValueError, match="exact must be an integer >= 0"):
        PrefillGraphs(bb, exact=-1)
