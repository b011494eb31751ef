"""The RWKV-7 (x070) backbone: config, model, checkpoints and the World tokenizer."""

from .config import NAMED_SIZES, RWKV7Config
from .model import RWKV7
from .state import RWKV7State
from .tokenizer import WorldTokenizer

__all__ = ["NAMED_SIZES", "RWKV7", "RWKV7Config", "RWKV7State", "WorldTokenizer"]
