"""The RWKV "World" tokenizer (rwkv_vocab_v20230424): greedy longest match over UTF-8 bytes.

Encoding uses the Rust implementation from the PyPI package ``pyrwkv-tokenizer``; decoding concatenates the tokens'
bytes from the vocabulary file that package ships (so a token sequence that splits a UTF-8 character still decodes).
"""

from __future__ import annotations

import ast
from functools import cached_property
from pathlib import Path

END_OF_TEXT = 0
VOCAB_SIZE = 65536


class WorldTokenizer:
    """``encode(str) -> list[int]``, ``decode(list[int]) -> str``; ids 1..256 are single bytes, 0 is end-of-text."""

    def __init__(self):
        try:
            import pyrwkv_tokenizer
        except ImportError as e:  # pragma: no cover - a dependency of the package
            raise ImportError("the World tokenizer needs `pip install pyrwkv-tokenizer`") from e
        self._rust = pyrwkv_tokenizer.RWKVTokenizer()
        self.vocab_file = Path(pyrwkv_tokenizer.__file__).with_name("rwkv_vocab_v20230424.txt")
        self.vocab_size = VOCAB_SIZE

    def __reduce__(self):
        # the Rust tokenizer cannot be pickled: rebuild it (DataLoader workers, checkpoints)
        return (WorldTokenizer, ())

    def encode(self, text: str) -> list[int]:
        return list(self._rust.encode(text))

    @cached_property
    def _id_to_bytes(self) -> dict[int, bytes]:
        table = {}
        for line in self.vocab_file.read_text(encoding="utf-8").splitlines():
            idx, rest = line.split(" ", 1)
            token_repr, length = rest.rsplit(" ", 1)
            token = ast.literal_eval(token_repr)
            token = token.encode("utf-8") if isinstance(token, str) else token
            if len(token) != int(length):
                raise ValueError(f"corrupt vocabulary line in {self.vocab_file}: {line!r}")
            table[int(idx)] = token
        return table

    def decode_bytes(self, ids: list[int]) -> bytes:
        table = self._id_to_bytes
        return b"".join(table.get(int(i), b"") for i in ids)

    def decode(self, ids: list[int]) -> str:
        """Concatenate the tokens' bytes; invalid UTF-8 (a cut-off character) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")
