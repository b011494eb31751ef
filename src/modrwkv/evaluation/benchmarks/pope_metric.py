"""POPE (object hallucination) scores as LLaVA's ``eval_pope.py`` computes them: the first sentence of an answer is
"no" if it has the word "no", "No" or "not", else "yes"; "yes" is the positive class."""

from __future__ import annotations


def pope_yes(answer: str) -> bool:
    """Whether an answer reads as "yes" (LLaVA's rule: anything without "no"/"No"/"not" in its first sentence)."""
    text = answer.split(".")[0] if "." in answer else answer
    words = text.replace(",", "").split(" ")
    return not ("No" in words or "not" in words or "no" in words)


def pope_scores(predictions: list[str], labels: list[str]) -> dict[str, float]:
    """accuracy, precision, recall, f1 and yes_ratio (share of "yes" answers) of answers against "yes"/"no" labels."""
    if len(predictions) != len(labels) or not labels:
        raise ValueError(f"pope_scores needs as many predictions as labels (got {len(predictions)}, {len(labels)})")
    pred = [pope_yes(p) for p in predictions]
    gold = [str(label).strip().lower() != "no" for label in labels]  # the reference maps "no" -> 0, else 1
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(not p and g for p, g in zip(pred, gold))
    tn = len(gold) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (tp + tn) / len(gold), "precision": precision, "recall": recall, "f1": f1,
            "yes_ratio": sum(pred) / len(pred)}
