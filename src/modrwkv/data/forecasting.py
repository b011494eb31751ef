"""Forecasting windows as chat samples: context window in, normalised future values out as text.

``sample["series"]`` is the raw context (float32 [context_len]); ``meta["target"]`` the raw future values; the
assistant answer is the target normalised by the context's mean/std (see ``forecast_format``).

Real series are split by time (train / val / test regions of each series, as in the ETT benchmarks: targets of
different splits never overlap; a window's context may reach back into the previous region). Synthetic series are
fresh draws whose random stream depends on the split, so splits never share a synthetic series.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from modrwkv.data.forecast_format import context_stats, format_forecast
from modrwkv.data.schema import make_sample
from modrwkv.data.series_sources import SYNTHETIC_KINDS, statsmodels_series, synthetic_series

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ForecastConfig:
    """Window shape, answer format and the mix of real/synthetic series."""

    context_len: int = 48
    horizon: int = 8
    decimals: int = 2
    real_fraction: float = 0.5  # share of windows cut from the statsmodels series; the rest are synthetic
    synthetic_kinds: tuple[str, ...] = SYNTHETIC_KINDS
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)  # of each real series' time axis

    def prompt(self) -> str:
        return f"<series>\nPredict the next {self.horizon} values."


def make_forecast_sample(key: str, context, target, config: ForecastConfig, meta: dict | None = None) -> dict:
    """One forecasting sample from a raw context and target (shared by the generator and the ETT converter)."""
    context = np.asarray(context, dtype=np.float32)
    target = np.asarray(target, dtype=np.float32)
    mean, std = context_stats(context)
    answer = format_forecast(target, mean, std, config.decimals)
    meta = dict(meta or {})
    meta.update(target=[float(v) for v in target], horizon=len(target), context_mean=mean, context_std=std)
    conversation = [{"role": "user", "content": config.prompt()}, {"role": "assistant", "content": answer}]
    return make_sample(key, "series", context, conversation, meta)


def _split_starts(n: int, split: str, cfg: ForecastConfig) -> range:
    """Window starts whose targets lie inside ``split``'s time region of a series of length ``n``."""
    f_train, f_val, _ = cfg.split_fractions
    bounds = {"train": (0, f_train), "val": (f_train, f_train + f_val), "test": (f_train + f_val, 1.0)}
    lo, hi = (int(round(b * n)) for b in bounds[split])
    first = max(0, lo - cfg.context_len)
    last = hi - cfg.context_len - cfg.horizon
    return range(first, last + 1)


def generate_forecast_windows(n: int, seed: int = 0, split: str = "train",
                              config: ForecastConfig | None = None) -> Iterator[dict]:
    """Yield ``n`` forecasting samples for ``split``, deterministic given ``seed``, ``split`` and ``config``.

    meta: ``target`` (raw), ``horizon``, ``context_mean``, ``context_std``, ``source`` (``statsmodels/<name>`` or
    ``synthetic/<kind>``), ``start`` (index of the context's first point; real series only), ``split``.
    """
    cfg = config or ForecastConfig()
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if cfg.context_len < 2 or cfg.horizon < 1:
        raise ValueError("need context_len >= 2 and horizon >= 1")
    rng = np.random.default_rng([seed, SPLITS.index(split), 7919])
    real = {}
    if cfg.real_fraction > 0:
        for name, values in statsmodels_series().items():
            starts = _split_starts(len(values), split, cfg)
            if len(starts):
                real[name] = (values, starts)
        if not real:
            raise ValueError(f"no statsmodels series is long enough for context {cfg.context_len} + horizon "
                             f"{cfg.horizon} in split {split!r}; lower them or set real_fraction=0")
    # Sample a dataset first, then one of its columns, so macrodata's 12 columns do not drown the rest.
    groups: dict[str, list[str]] = {}
    for name in real:
        groups.setdefault(name.split("/")[0], []).append(name)
    group_names = sorted(groups)
    length = cfg.context_len + cfg.horizon
    for i in range(n):
        key = f"forecast-{split}-{seed}-{i:07d}"
        if real and rng.random() < cfg.real_fraction:
            group = groups[group_names[rng.integers(len(group_names))]]
            name = group[rng.integers(len(group))]
            values, starts = real[name]
            s = int(starts[rng.integers(len(starts))])
            window = values[s: s + length]
            meta = {"source": f"statsmodels/{name}", "start": s, "split": split}
        else:
            kind = cfg.synthetic_kinds[rng.integers(len(cfg.synthetic_kinds))]
            window = synthetic_series(kind, length, rng)
            meta = {"source": f"synthetic/{kind}", "split": split}
        yield make_forecast_sample(key, window[: cfg.context_len], window[cfg.context_len:], cfg, meta)
