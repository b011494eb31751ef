"""Turn generated answers into metric updates: what the reference of each sample is and how it is compared.

Each modality's registry entry (``modrwkv.modalities``) names its scorer (``score_text`` or ``score_forecast``),
the meta key of its reference and its generation budget (``max_new_tokens``).
"""

from __future__ import annotations

import numpy as np
import torch
import torchmetrics

from ..modalities import ModalitySpec, get_modality


def _first_answer(sample: dict) -> str:
    turns = [t["content"] for t in sample["conversation"] if t["role"] == "assistant"]
    return turns[0] if turns else ""


def score_text(metrics: torchmetrics.MetricCollection, spec: ModalitySpec, samples: list[dict],
               predictions: list[str]) -> dict[str, float]:
    """Text answers against the reference text (``meta[spec.reference]``, else the assistant's first answer)."""
    refs = [s.get("meta", {}).get(spec.reference) or _first_answer(s) for s in samples]
    metrics.update(predictions, refs)
    return {}


def score_forecast(metrics: torchmetrics.MetricCollection, spec: ModalitySpec, samples: list[dict],
                   predictions: list[str]) -> dict[str, float]:
    """Parsed number lists against the target series (``meta[spec.reference]``, raw scale), scored on the
    context-normalised scale as forecasting benchmarks do (ETT/GIFT-Eval MSE); returns the unreadable values."""
    from modrwkv.data.forecast_format import parse_forecast

    preds, targets, missing = [], [], 0
    for sample, text in zip(samples, predictions):
        meta = sample["meta"]
        target = np.asarray(meta[spec.reference], dtype=np.float64)
        mean, std = meta["context_mean"], meta["context_std"]
        parsed = parse_forecast(text, len(target), mean, std)
        missing += parsed.n_missing
        preds.append((parsed.values - mean) / std)
        targets.append((target - mean) / std)
    p = torch.tensor(np.concatenate(preds), dtype=torch.float32)
    t = torch.tensor(np.concatenate(targets), dtype=torch.float32)
    metrics.update(p, t)
    return {"missing_values": float(missing)}


def update_metrics(metrics: torchmetrics.MetricCollection, modality: str, samples: list[dict],
                   predictions: list[str]) -> dict[str, float]:
    """Feed one batch of predictions to ``metrics``; returns extra counts (e.g. unreadable forecast values)."""
    return get_modality(modality).score(metrics, samples, predictions)
