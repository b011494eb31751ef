"""WKV-7: the RWKV-7 recurrence, with a PyTorch reference, a chunked PyTorch form and Triton kernels.

``wkv7`` is the one entry point; ``wkv7_step`` advances a state by one token (decoding).
"""

from .dispatch import wkv7, wkv7_step
from .reference import LOG_DECAY_MIN, wkv7_naive

__all__ = ["wkv7", "wkv7_step", "wkv7_naive", "LOG_DECAY_MIN"]
