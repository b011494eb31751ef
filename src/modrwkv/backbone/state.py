"""The recurrent state of an RWKV-7 model: what decoding carries from one token to the next."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RWKV7State:
    """Per-layer state for N sequences.

    att_shift: [L, N, C] last time-mix input (token shift); wkv: [L, N, H, K, V] fp32 ([K, V] as fla, the transpose of
    BlinkDL's); ffn_shift: [L, N, C] last channel-mix input.
    """

    att_shift: torch.Tensor
    wkv: torch.Tensor
    ffn_shift: torch.Tensor

    @property
    def num_sequences(self) -> int:
        return self.wkv.shape[1]

    def clone(self) -> RWKV7State:
        return RWKV7State(self.att_shift.clone(), self.wkv.clone(), self.ffn_shift.clone())

    def copy_(self, other: RWKV7State) -> RWKV7State:
        """Copy ``other``'s values into this state's tensors (their addresses stay: static buffers of CUDA graphs)."""
        for dst, src in zip((self.att_shift, self.wkv, self.ffn_shift), (other.att_shift, other.wkv, other.ffn_shift)):
            dst.copy_(src)
        return self

    def zero_(self) -> RWKV7State:
        for t in (self.att_shift, self.wkv, self.ffn_shift):
            t.zero_()
        return self

    def select(self, index) -> RWKV7State:
        """The state of some sequences (an int, a slice, a list or a tensor of indices)."""
        if isinstance(index, int):
            index = [index]
        return RWKV7State(self.att_shift[:, index], self.wkv[:, index], self.ffn_shift[:, index])

    def expand(self, n: int) -> RWKV7State:
        """Repeat a one-sequence state n times (e.g. to answer n questions from one cached prefix)."""
        if self.num_sequences != 1:
            raise ValueError(f"expand needs a one-sequence state, got {self.num_sequences}")
        return RWKV7State(*(x.expand(x.shape[0], n, *x.shape[2:]).clone() for x in
                            (self.att_shift, self.wkv, self.ffn_shift)))

    @staticmethod
    def cat(states: list[RWKV7State]) -> RWKV7State:
        return RWKV7State(torch.cat([s.att_shift for s in states], 1), torch.cat([s.wkv for s in states], 1),
                          torch.cat([s.ffn_shift for s in states], 1))

    def to(self, device=None, dtype=None) -> RWKV7State:
        """Move; ``dtype`` applies to the shift states only (the WKV state stays fp32, or fp64 if it is)."""
        return RWKV7State(self.att_shift.to(device=device, dtype=dtype), self.wkv.to(device=device),
                          self.ffn_shift.to(device=device, dtype=dtype))
