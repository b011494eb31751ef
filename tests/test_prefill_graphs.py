"""How `PrefillGraphs` splits a prompt (the graphs themselves need CUDA: tests/gpu/test_prefill_graphs_gpu.py)."""

from __future__ import annotations

import pytest

from modrwkv.generation.prefill_graphs import GRAPH_MAX, PIECE, piece_lengths


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
