"""Turn generated answers into metric updates, per modality (what the reference of each sample is)."""

from __future__ import annotations

import numpy as np
import torch
import torchmetrics

# how many tokens a generated answer may take, per modality (answers are short words, transcripts, number lists)
MAX_NEW_TOKENS = {"image": 8, "audio": 48, "series": 96}


def references(samples: list[dict]) -> list:
    """The reference of each sample: the answer text, the transcript, or the target series (raw scale)."""
    refs = []
    for s in samples:
        meta = s.get("meta", {})
        if s["modality"] == "image":
            refs.append(meta.get("answer") or _first_answer(s))
        elif s["modality"] == "audio":
            refs.append(meta.get("transcript") or _first_answer(s))
        else:
            refs.append(np.asarray(meta["target"], dtype=np.float64))
    return refs


def _first_answer(sample: dict) -> str:
    turns = [t["content"] for t in sample["conversation"] if t["role"] == "assistant"]
    return turns[0] if turns else ""


def update_metrics(metrics: torchmetrics.MetricCollection, modality: str, samples: list[dict],
                   predictions: list[str]) -> dict[str, float]:
    """Feed one batch of predictions to ``metrics``; returns extra counts (e.g. unreadable forecast values)."""
    refs = references(samples)
    if modality in ("image", "audio"):
        metrics.update(predictions, refs)
        return {}
    from modrwkv.data.forecast_format import parse_forecast

    preds, targets, missing = [], [], 0
    for sample, text, target in zip(samples, predictions, refs):
        meta = sample["meta"]
        mean, std = meta["context_mean"], meta["context_std"]
        parsed = parse_forecast(text, len(target), mean, std)
        missing += parsed.n_missing
        # scored on the context-normalised scale, as forecasting benchmarks do (ETT/GIFT-Eval MSE)
        preds.append((parsed.values - mean) / std)
        targets.append((target - mean) / std)
    p = torch.tensor(np.concatenate(preds), dtype=torch.float32)
    t = torch.tensor(np.concatenate(targets), dtype=torch.float32)
    metrics.update(p, t)
    return {"missing_values": float(missing)}
