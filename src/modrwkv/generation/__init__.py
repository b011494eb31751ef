"""Generation: token selection, the eager decode loop, and the fast (fused step + CUDA graph) decoder."""

from .eager import decode
from .fast import FastDecoder, bucket_size
from .inputs import check_options
from .sampling import make_generator, sample_tokens, select_next

__all__ = ["FastDecoder", "bucket_size", "check_options", "decode", "make_generator", "sample_tokens",
           "select_next"]
