"""ASR error rates: corpus WER on Whisper's English normaliser (LibriSpeech), corpus CER for Mandarin (Aishell-1)."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from torchmetrics.functional.text import char_error_rate, word_error_rate


@lru_cache(maxsize=1)
def _english_normalizer():
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize_english(text: str) -> str:
    """Whisper's EnglishTextNormalizer (spellings, numbers, contractions, fillers, punctuation)."""
    return _english_normalizer()(text)


def normalize_mandarin(text: str) -> str:
    """Characters only: whitespace and punctuation (any Unicode P* category) removed, Latin letters upper-cased."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).upper()
                   if not c.isspace() and not unicodedata.category(c).startswith("P"))


def wer(predictions: list[str], references: list[str]) -> float:
    """Corpus word error rate (total edits / total reference words) after Whisper's English normalisation."""
    refs = [normalize_english(r) for r in references]
    preds = [normalize_english(p) for p in predictions]
    return float(word_error_rate(preds, refs))


def cer(predictions: list[str], references: list[str]) -> float:
    """Corpus character error rate on Mandarin text (spaces and punctuation removed)."""
    return float(char_error_rate([normalize_mandarin(p) for p in predictions],
                                 [normalize_mandarin(r) for r in references]))
