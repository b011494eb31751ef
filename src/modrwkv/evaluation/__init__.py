"""Evaluation: torchmetrics metrics per modality and generation-based evaluation."""

from .metrics import AnswerAccuracy, build_metrics, normalize_answer, normalize_transcript

__all__ = ["AnswerAccuracy", "build_metrics", "normalize_answer", "normalize_transcript"]
