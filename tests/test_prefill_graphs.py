"""How `PrefillGraphs` splits a prompt (the graphs themselves need CUDA: tests/gpu/test_prefill_graphs_gpu.py)."""

from __future__ import annotations

import pytest

from modrwkv.generation.prefill_graphs import piece_lengths


@pytest.mark.parametrize("total", [0, 1, 2, 3, 37, 608, 1023, 1024, 2047])
def test_pieces_are_the_binary_expansion_longest_first(total):
    pieces = piece_lengths(total)
    assert sum(pieces) == total
    assert pieces == sorted(pieces, reverse=True)
    assert len(set(pieces)) == len(pieces) == bin(total).count("1")
    assert all(p & (p - 1) == 0 for p in pieces)


def test_negative_total_is_refused():
    with pytest.raises(ValueError, match="total must be >= 0"):
        piece_lengths(-1)
