"""The benchmark registry: each name -> its modality, reader, scorer and answer length.

A scorer takes the records and the generated answers and returns ``{metric: value}``; accuracies are in percent
(as the paper's tables), error rates (WER/CER) in percent, MSE/MAE as they are.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from . import readers_signal as sig
from . import readers_vision as vis
from .asr_metric import cer, wer
from .choice_metric import (
    LETTERS,
    circular_accuracy,
    infer_option,
    mmmu_open_correct,
    parse_mmmu_choice,
    parse_mmmu_open,
    parse_sqa_letter,
)
from .forecast_metric import scaled_errors
from .pope_metric import pope_scores
from .records import Record
from .vqa_metric import gqa_match, textvqa_accuracy, vqa_accuracy


@dataclass(frozen=True)
class Benchmark:
    """name; modality (image | audio | series); read(root, **options) -> records; score(records, answers) -> metrics;
    max_new_tokens: the answer budget."""

    name: str
    modality: str
    read: Callable[..., list[Record]]
    score: Callable[[list[Record], list[str]], dict[str, float]]
    max_new_tokens: int

    def __post_init__(self):
        from modrwkv.modalities import get_modality

        object.__setattr__(self, "modality", get_modality(self.modality).name)  # canonical name, or a clear error


def _mean(values) -> float:
    values = list(values)
    return 100.0 * sum(values) / len(values) if values else 0.0


def score_vqav2(records, answers):
    return {"accuracy": _mean(vqa_accuracy(a, r.ref["answers"]) for r, a in zip(records, answers))}


def score_textvqa(records, answers):
    return {"accuracy": _mean(textvqa_accuracy(a, r.ref["answers"]) for r, a in zip(records, answers))}


def score_gqa(records, answers):
    return {"accuracy": _mean(gqa_match(a, r.ref["answer"]) for r, a in zip(records, answers))}


def score_sqa(records, answers):
    parsed = [parse_sqa_letter(a, r.ref["n_options"]) for r, a in zip(records, answers)]
    return {"accuracy": _mean(p == r.ref["answer"] for r, p in zip(records, parsed)),
            "unparsed": float(sum(p is None for p in parsed))}


def score_pope(records, answers):
    """Per split (random/popular/adversarial) and their mean: accuracy, precision, recall, f1 (percent),
    yes_ratio (a fraction)."""
    by_split = defaultdict(lambda: ([], []))
    for r, a in zip(records, answers):
        by_split[r.ref["split"]][0].append(a)
        by_split[r.ref["split"]][1].append(r.ref["label"])
    out, per = {}, []
    for split, (preds, labels) in by_split.items():
        s = pope_scores(preds, labels)
        s = {k: v if k == "yes_ratio" else 100.0 * v for k, v in s.items()}
        out.update({f"{split}_{k}": v for k, v in s.items()})
        per.append(s)
    out.update({k: float(np.mean([s[k] for s in per])) for k in per[0]})
    return out


def score_mmbench(records, answers):
    results = [(r.ref["question"], infer_option(a, r.ref["choices"]) == r.ref["answer"])
               for r, a in zip(records, answers)]
    return {k: 100.0 * v for k, v in circular_accuracy(results).items()}


def score_mmmu(records, answers, seed: int = 42):
    rng = random.Random(seed)  # the reference's random guess for unparsable multiple-choice answers, seeded
    correct = []
    for r, a in zip(records, answers):
        if r.ref["question_type"] == "multiple-choice":
            letters = list(LETTERS[:len(r.ref["options"])])
            pred = parse_mmmu_choice(a, letters, dict(zip(letters, r.ref["options"])), rng)
            correct.append(pred == r.ref["answer"])
        else:
            correct.append(mmmu_open_correct(r.ref["answer"], parse_mmmu_open(a)))
    return {"accuracy": _mean(correct)}


def score_wer(records, answers):
    return {"wer": 100.0 * wer(answers, [r.ref["transcript"] for r in records])}


def score_cer(records, answers):
    return {"cer": 100.0 * cer(answers, [r.ref["transcript"] for r in records])}


def score_forecast(records, answers):
    """MSE/MAE on the train split's scale; ``missing``: predicted values that could not be read (filled with the
    context mean, a normalised 0, as training's validation does)."""
    from modrwkv.data.forecast_format import context_stats, parse_forecast

    preds, missing = [], 0
    for r, a in zip(records, answers):
        mean, std = context_stats(np.asarray(r.source, dtype=np.float32))
        parsed = parse_forecast(a, len(r.ref["target"]), mean, std)
        preds.append(parsed.values)
        missing += parsed.n_missing
    out = scaled_errors(preds, [r.ref["target"] for r in records], [r.ref["train_std"] for r in records])
    return {**out, "missing": float(missing)}


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    Benchmark("vqav2", "image", vis.read_vqav2, score_vqav2, 16),
    Benchmark("textvqa", "image", vis.read_textvqa, score_textvqa, 16),
    Benchmark("gqa", "image", vis.read_gqa, score_gqa, 16),
    Benchmark("sqa_img", "image", vis.read_scienceqa, score_sqa, 8),
    Benchmark("pope", "image", vis.read_pope, score_pope, 8),
    Benchmark("mmbench", "image", vis.read_mmbench, score_mmbench, 8),
    Benchmark("mmmu", "image", vis.read_mmmu, score_mmmu, 32),
    Benchmark("librispeech_clean", "audio", partial(sig.read_librispeech, split="test-clean"), score_wer, 128),
    Benchmark("librispeech_other", "audio", partial(sig.read_librispeech, split="test-other"), score_wer, 128),
    Benchmark("aishell1_dev", "audio", partial(sig.read_aishell1, split="dev"), score_cer, 64),
    Benchmark("aishell1_test", "audio", partial(sig.read_aishell1, split="test"), score_cer, 64),
    *[Benchmark(name, "series", partial(sig.read_forecast, name=name), score_forecast, 96 * 8)
      for name in sig.FORECAST_FILES],
]}


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark ``name``; a clear error listing the names otherwise."""
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; expected one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def read_benchmark(name: str, root: str | Path, **options) -> list[Record]:
    """Read benchmark ``name`` from its folder (``options``: the reader's keyword arguments, e.g. limit)."""
    return get_benchmark(name).read(Path(root), **options)
