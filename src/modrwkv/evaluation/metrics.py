"""Metrics per modality, as torchmetrics objects: answer accuracy (VQA), WER/CER (ASR), MSE/MAE (forecasting).

Text is normalised before scoring (the public ModRWKV scorer printed CER as WER on raw text: we normalise and
report both, by name).
"""

from __future__ import annotations

import re
import string

import torch
import torchmetrics
from torchmetrics.text import CharErrorRate, WordErrorRate

_ARTICLES = {"a", "an", "the"}
_NUMBER_WORDS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                 "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize_answer(text: str) -> str:
    """VQA-style normalisation: lower case, no punctuation or articles, number words as digits."""
    words = _PUNCT.sub(" ", text.lower()).split()
    return " ".join(_NUMBER_WORDS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_transcript(text: str) -> str:
    """ASR normalisation: lower case, punctuation removed (apostrophes kept), single spaces."""
    text = re.sub(r"[^\w\s']", " ", text.lower())
    return " ".join(text.split())


class AnswerAccuracy(torchmetrics.Metric):
    """Exact match of normalised answers (the single-reference form of VQA accuracy)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("correct", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, preds: list[str], targets: list[str]) -> None:
        for p, t in zip(preds, targets):
            self.correct += float(normalize_answer(p) == normalize_answer(t))
            self.total += 1.0

    def compute(self) -> torch.Tensor:
        return self.correct / self.total.clamp_min(1.0)


class NormalizedWER(WordErrorRate):
    """Word error rate on normalised transcripts."""

    def update(self, preds, target) -> None:
        super().update([normalize_transcript(p) for p in preds], [normalize_transcript(t) for t in target])


class NormalizedCER(CharErrorRate):
    """Character error rate on normalised transcripts."""

    def update(self, preds, target) -> None:
        super().update([normalize_transcript(p) for p in preds], [normalize_transcript(t) for t in target])


def build_metrics(modality: str) -> torchmetrics.MetricCollection:
    """The metrics of a modality (the registry's): image -> accuracy; audio -> wer, cer; series -> mse, mae."""
    from ..modalities import get_modality

    spec = get_modality(modality)
    if not spec.generative:
        raise ValueError(f"no metrics for modality {modality!r}; it is evaluated by its loss only")
    return torchmetrics.MetricCollection(spec.metrics())
