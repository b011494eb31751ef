"""Readers of the speech and forecasting benchmarks' official local formats -> ``Record`` lists."""

from __future__ import annotations

from pathlib import Path

from modrwkv.data.spoken_words import PROMPT as ASR_PROMPT

from .records import BenchmarkFilesMissing, Record, require


def _limit(records: list[Record], limit: int | None) -> list[Record]:
    return records if limit is None else records[:limit]


def read_librispeech(root: Path, split: str = "test-clean", limit: int | None = None) -> list[Record]:
    """LibriSpeech: ``<root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` with the ``.flac`` files
    beside them (``root`` may also be the ``LibriSpeech`` folder's parent)."""
    root = Path(root)
    if (root / "LibriSpeech" / split).is_dir():
        root = root / "LibriSpeech"
    name = f"librispeech_{split.removeprefix('test-')}"
    (folder,) = require(root, name, split, layout=f"{split}/<speaker>/<chapter>/*.trans.txt + *.flac")
    out = []
    for trans in sorted(folder.rglob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            utt, _, text = line.strip().partition(" ")
            if utt:
                out.append(Record(utt, "audio", trans.parent / f"{utt}.flac", ASR_PROMPT, {"transcript": text}))
    if not out:
        raise BenchmarkFilesMissing(f"benchmark {name}: no *.trans.txt lines under {folder}")
    return _limit(out, limit)


def read_aishell1(root: Path, split: str = "test", limit: int | None = None) -> list[Record]:
    """Aishell-1: ``transcript/aishell_transcript_v0.8.txt`` ("<utt> <words separated by spaces>") and
    ``wav/<split>/<speaker>/<utt>.wav``; utterances of ``split`` without a transcript line are skipped (as the
    release's own recipes do). ``root`` may also be the folder holding ``data_aishell/``."""
    if (Path(root) / "data_aishell").is_dir():
        root = Path(root) / "data_aishell"
    tf, wavs = require(root, f"aishell1_{split}", "transcript/aishell_transcript_v0.8.txt", f"wav/{split}",
                       layout=f"transcript/aishell_transcript_v0.8.txt, wav/{split}/<speaker>/*.wav")
    text = {}
    for line in tf.read_text(encoding="utf-8").splitlines():
        utt, _, words = line.strip().partition(" ")
        if utt:
            text[utt] = words.strip()
    out = [Record(w.stem, "audio", w, ASR_PROMPT, {"transcript": text[w.stem]})
           for w in sorted(wavs.rglob("*.wav")) if w.stem in text]
    if not out:
        raise BenchmarkFilesMissing(f"benchmark aishell1_{split}: no wav under {wavs} has a transcript in {tf}")
    return _limit(out, limit)


# the forecasting CSVs under their usual names (Autoformer's all_six_datasets) and their split scheme
FORECAST_FILES = {"ett_h1": "ETTh1.csv", "ett_h2": "ETTh2.csv", "ett_m1": "ETTm1.csv", "ett_m2": "ETTm2.csv",
                  "ecl": "electricity.csv", "weather": "weather.csv", "traffic": "traffic.csv"}


def read_forecast(root: Path, name: str, context_len: int = 720, horizon: int = 96, stride: int = 1,
                  columns: list[str] | None = None, split: str = "test", limit: int | None = None) -> list[Record]:
    """A forecasting CSV (``FORECAST_FILES[name]``) -> univariate windows of ``split`` per column.

    Splits and scaling are the standard ones (``modrwkv.data.convert_ett.split_borders``: ETT 12/4/4 months,
    others 70/10/20 %); refs carry the target and the column's train-split std. ``limit``: windows per column.
    """
    from modrwkv.data.convert_ett import read_series_csv, split_borders
    from modrwkv.data.forecasting import ForecastConfig

    (csv,) = require(root, name, FORECAST_FILES[name], layout=FORECAST_FILES[name])
    series = read_series_csv(csv, columns)
    n_rows = len(next(iter(series.values())))
    scheme = "ett_hour" if name.startswith("ett_h") else "ett_minute" if name.startswith("ett_m") else "ratio"
    borders = split_borders(n_rows, context_len, scheme)
    prompt = ForecastConfig(context_len=context_len, horizon=horizon).prompt()
    out = []
    for col, values in series.items():
        b_train, e_train = borders["train"]
        std = float(values[b_train:e_train].std()) or 1.0
        begin, end = borders[split]
        starts = range(begin, end - context_len - horizon + 1, stride)
        for s in list(starts)[:limit]:
            ctx, target = values[s:s + context_len], values[s + context_len:s + context_len + horizon]
            out.append(Record(f"{name}-{col}-{s}", "series", ctx, prompt, {"target": target, "train_std": std}))
    if not out:
        raise BenchmarkFilesMissing(f"benchmark {name}: {csv} has no {split} window of {context_len}+{horizon} rows")
    return out
